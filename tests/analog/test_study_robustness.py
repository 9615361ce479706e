"""The robustness study (--quick, the analog-only models, 8 chips per time instead of 2: the drift
claims are means over chips, and 2 chips leave them to chance): the claims it is built to measure."""
import dataclasses

import pytest
import torch

from analog.studies.robustness import run_study
from analog.studies.robustness_config import RobustnessConfig
from analog.studies.robustness_report import CLEAR_MARGIN, DRIFT_LOSS, checks, tables


@pytest.fixture(scope="module")
def results():
    torch.set_num_threads(1)
    cfg = dataclasses.replace(RobustnessConfig.quick(), models=("digits-mlp", "mnist-mlp", "mnist-cnn"),
                              time_seeds=tuple(range(8)))       # +2.5 CPU-s: deploying is cheap next to training
    out = run_study(cfg, show_progress=False)
    out["checks"] = checks(out)
    return out


def test_accuracy_falls_as_eta_grows(results):
    for name, e in results["models"].items():
        for training in ("digital", "hwa"):
            s = e[training]["eta"]
            assert s["std"][0] < 1e-12                                                     # eta 0: no chip noise
            if training == "digital":                                                      # ideal periphery too:
                assert s["mean"][0] == pytest.approx(e[training]["test_accuracy"], abs=1e-9)   # nothing changes
            drop = 0.05 if training == "digital" else 0.02          # HWA is trained to lose less
            assert s["mean"][-1] < s["mean"][0] - drop, (name, training, s["mean"])       # eta = 1 costs accuracy
            for a, b, sa, sb in zip(s["mean"], s["mean"][1:], s["std"], s["std"][1:]):
                assert b <= a + 2 * max(sa, sb) + 0.01, (name, training, s["mean"])       # falls within noise


def _drift(e, training, t_seconds):
    t = e[training]["time"]
    i = t["uncompensated"]["t_seconds"].index(t_seconds)
    first = t["uncompensated"]["mean"][0]
    return first, t["uncompensated"]["mean"][i], t["compensated"]["mean"][i], t["compensated"]["std"][i]


def test_compensation_recovers_accuracy_at_one_day(results):
    # Trained for 4 epochs, drift costs these models at most ~1 point at 1 day (within the chip spread,
    # less than the 5-6 points of 2-epoch models): compensation must not cost accuracy there, must
    # recover some on average, and at least half of any loss >= DRIFT_LOSS.
    gains = []
    for name, e in results["models"].items():
        for training in ("digital", "hwa"):
            first, raw, comp, sd = _drift(e, training, 86400.0)
            gains.append(comp - raw)
            assert comp >= raw - max(2 * sd, 0.005), (name, training, first, raw, comp)
            if first - raw >= DRIFT_LOSS:
                assert comp - raw >= 0.5 * (first - raw), (name, training, first, raw, comp)
    assert sum(gains) > 0, gains


def test_compensation_recovers_a_share_of_a_years_drift(results):
    # Global drift compensation undoes the drift every device shares (one factor per layer), not the
    # device-to-device spread of the drift exponents, so it recovers a share of a year's loss, not
    # all of it: 40% summed over these models with 8 chips per time (50% with 2 chips on one machine,
    # 49.6% on another: the "at least half" this test used to assert was chance). No model may lose
    # from it beyond the chip spread, and the share must be clearly above zero.
    lost, recovered = [], []
    for name, e in results["models"].items():
        for training in ("digital", "hwa"):
            first, raw, comp, sd = _drift(e, training, 365 * 86400.0)
            lost.append(first - raw)
            recovered.append(comp - raw)
            assert comp >= raw - max(2 * sd, 0.005), (name, training, first, raw, comp)
    assert max(lost) >= 0.02, lost               # a year's drift does cost accuracy (the CNN), so this tested it
    assert sum(recovered) >= 0.25 * sum(lost), (lost, recovered)


def test_hwa_beats_digital_by_a_clear_margin_where_weight_noise_costs_accuracy(results):
    # HWA trains at eta 0.5 (at or above the noise it is to survive). The point, eta = 0.1, is
    # measured but cannot carry a clear margin: digital training loses < 1.5 points there (asserted),
    # so HWA has nothing to win. At eta = 1, where digital training loses >= 5 points, HWA is ahead on
    # every model and by CLEAR_MARGIN on average (measured, train seeds 0 / 1 / 2: +0.036 / +0.050 /
    # +0.022 on average; HWA with its training noise switched off: -0.015, -0.001, -0.004, on seed 0).
    gaps = []
    for name, e in results["models"].items():
        d, h = e["digital"]["eta"], e["hwa"]["eta"]
        low, top = d["eta"].index(0.1), d["eta"].index(1.0)
        assert d["mean"][0] - d["mean"][low] < 0.015, (name, d["mean"])
        assert h["mean"][low] >= d["mean"][low] - 0.015, (name, d["mean"], h["mean"])
        assert d["mean"][0] - d["mean"][top] >= 0.05, (name, d["mean"])
        gaps.append(h["mean"][top] - d["mean"][top])
    assert min(gaps) > 0 and sum(gaps) / len(gaps) >= CLEAR_MARGIN, gaps
    kinds = {c["check"] for c in results["checks"]}
    assert f"HWA beats digital at eta=0.1 by >= {CLEAR_MARGIN}" in kinds           # reported, held or not
    assert f"HWA beats digital at eta=1 by >= {CLEAR_MARGIN}" in kinds


def test_report_tables_and_checks(results):
    text = tables(results)
    assert "Accuracy vs weight noise eta" in text and "1 year" in text and "Checks" in text
    kinds = {c["check"] for c in results["checks"]}
    assert any(k.startswith("HWA beats digital at eta=0.1") for k in kinds)
    assert any(k.startswith("Rasch et al.") for k in kinds)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="models"):
        RobustnessConfig(models=("resnet",))
    with pytest.raises(ValueError, match="etas"):
        RobustnessConfig(etas=(-0.1,))
    with pytest.raises(ValueError, match="unknown key"):
        RobustnessConfig.from_dict({"epoch": 3})
    assert RobustnessConfig.from_dict(RobustnessConfig.quick().to_dict()) == RobustnessConfig.quick()
