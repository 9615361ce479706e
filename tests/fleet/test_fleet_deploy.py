"""The deployment phase: a trained fleet programmed onto PCM-like inference chips, evaluated over time."""
import hashlib
import subprocess
import sys

import pytest

from fleet.config import ConfigError, FleetConfig, InferenceConfig, parse_duration

pytestmark = pytest.mark.slow


def _fleet(**deploy) -> FleetConfig:
    return FleetConfig.from_dict({
        "fleet": {"name": "deploy", "dataset": "digits", "num_clients": 2, "seed": 0, "backend": "local",
                  "digital": True},
        "edge": {"model": {"latent_dim": 16},
                 "wire": {"bits": 8},
                 "training": {"epochs": 4, "batch_size": 16, "lr": 0.05}},
        "classifier": {"hidden": [64], "epochs": 20, "lr": 0.05},
        "inference": {"times": ["1s", "1d", "1y"], **deploy},
    })


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.pt"))}


def test_fleet_on_inference_chips_over_time(tmp_path):
    from fleet.inference import run_inference
    from fleet.flower.simulation import run_fleet

    fleet = _fleet()
    report = run_fleet(fleet, tmp_path)
    dep = report["deploy"]
    assert [(r["time"], r["compensation"]) for r in dep["rows"]] == [
        (t, c) for t in ("1s", "1d", "1y") for c in (False, True)]
    assert dep["n_test"] == report["latent"]["n_test"]
    # the harness measures the trained fleet: same accuracy as the clients' own evaluation
    assert dep["trained_accuracy"] == pytest.approx(report["latent"]["accuracy"], abs=1e-9)
    acc = {(r["time"], r["compensation"]): r["accuracy"] for r in dep["rows"]}
    assert acc[("1s", True)] > 0.5                                  # a working fleet on the chips
    assert acc[("1y", False)] < acc[("1s", False)]                  # a year of drift costs accuracy
    assert acc[("1y", True)] > acc[("1y", False)]                   # compensation gets some of it back
    assert (tmp_path / "deploy_accuracy_vs_time.png").stat().st_size > 10_000
    assert "deployment on PCM-like inference chips" in (tmp_path / "table.txt").read_text()
    # seeded chips: the same seed gives the same table; the saved models are not changed
    before = _digest(tmp_path)
    again = run_inference(fleet, tmp_path)
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in dep["rows"]]
    assert _digest(tmp_path) == before
    other = run_inference(_fleet(seed=7), tmp_path)
    assert [r["accuracy"] for r in other["rows"]] != [r["accuracy"] for r in dep["rows"]]


def test_deploy_config_and_flag_are_validated():
    assert parse_duration("x", "1h") == 3600.0 and parse_duration("x", "1y") == 365 * 86400.0
    assert parse_duration("x", 20) == 20.0
    with pytest.raises(ConfigError, match="inference.times: got '1x'"):
        InferenceConfig(times=["1x"])
    with pytest.raises(ConfigError, match="inference.inference_times: unknown key"):
        FleetConfig.from_dict({"inference": {"inference_times": ["1h"]}})
    with pytest.raises(ConfigError, match=r"^deploy: moved; the inference-chip table is now \[inference\]"):
        FleetConfig.from_dict({"deploy": {"inference_times": ["1h"]}})
    assert not FleetConfig().inference.enabled
    cfg = _fleet()
    assert FleetConfig.from_dict(cfg.to_dict()).inference == cfg.inference
    bad = subprocess.run([sys.executable, "-m", "fleet.cli", "fleet", "--inference-times", "1h,soon"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "--inference-times: got 'soon'" in bad.stderr and bad.stderr.strip().count("\n") == 0
