"""`analog-edge study robustness`: flags are validated up front with one-line errors."""
import os
import subprocess
import sys


def _run(*args):
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0")
    return subprocess.run([sys.executable, "-m", "fleet.cli", "study", "robustness", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_bad_flags_give_one_line_errors(tmp_path):
    bad = _run("--models", "resnet", "--out", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "models" in bad.stderr and "resnet" in bad.stderr
    assert not (tmp_path / "results.json").exists()
    cfg = tmp_path / "r.toml"
    cfg.write_text("[robustness]\netas = [0.0, -1.0]\n")
    bad = _run("--config", str(cfg), "--out", str(tmp_path))
    assert bad.returncode == 2 and "etas" in bad.stderr
    assert _run("--threads", "0").returncode == 2
    bad = _run("--seed", "-1", "--out", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.strip() == "error: --seed: got -1, must be >= 0"
    assert not (tmp_path / "results.json").exists()


def test_seed_sets_the_train_seed_and_changes_the_trained_model(tmp_path):
    import json

    accs = {}
    for seed in (0, 3):
        out = tmp_path / f"s{seed}"
        done = _run("--quick", "--models", "digits-mlp", "--seed", str(seed), "--no-progress", "--out", str(out))
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads((out / "config.json").read_text())["train_seed"] == seed
        res = json.loads((out / "results.json").read_text())
        assert res["config"]["train_seed"] == seed
        accs[seed] = res["models"]["digits-mlp"]
    assert accs[0] != accs[3]                                    # another init and data order
