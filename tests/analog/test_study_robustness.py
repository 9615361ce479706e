"""The robustness study (--quick, the analog-only models): the claims it is built to measure."""
import dataclasses

import pytest
import torch

from analog.studies.robustness import run_study
from analog.studies.robustness_config import RobustnessConfig
from analog.studies.robustness_report import DRIFT_LOSS, checks, tables


@pytest.fixture(scope="module")
def results():
    torch.set_num_threads(1)
    cfg = dataclasses.replace(RobustnessConfig.quick(), models=("digits-mlp", "mnist-mlp", "mnist-cnn"))
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
            assert s["mean"][-1] < s["mean"][0] - 0.05, (name, training, s["mean"])       # eta = 1 costs accuracy
            for a, b, sa, sb in zip(s["mean"], s["mean"][1:], s["std"], s["std"][1:]):
                assert b <= a + 2 * max(sa, sb) + 0.01, (name, training, s["mean"])       # falls within noise


def test_compensation_recovers_accuracy_at_one_day(results):
    losses = []
    for name, e in results["models"].items():
        for training in ("digital", "hwa"):
            t = e[training]["time"]
            i = t["uncompensated"]["t_seconds"].index(86400.0)
            first, raw, comp = t["uncompensated"]["mean"][0], t["uncompensated"]["mean"][i], t["compensated"]["mean"][i]
            losses.append(first - raw)
            if first - raw >= DRIFT_LOSS:
                assert comp - raw >= 0.5 * (first - raw), (name, training, first, raw, comp)
    assert max(losses) >= 0.03                   # drift does cost accuracy somewhere (the CNN), so this tested it


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
