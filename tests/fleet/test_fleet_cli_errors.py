"""Careless input to `fleet` / `sweep`, run as a user runs them (a real subprocess): one line that
names the key, exit code 2, no traceback, and no output folder left behind."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FLWR_TELEMETRY_ENABLED="0", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "fleet.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("command", ["fleet", "sweep"])
def test_missing_dataset_path_is_named_before_any_work(tmp_path, command):
    missing = tmp_path / "no_such_data.npz"
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(f'[fleet]\ndataset = "{missing}"\nbackend = "ray"\nnum_clients = 2\n')
    line = _one_line(_run(command, "--config", str(cfg), "--out", str(tmp_path / "out")))
    assert line == (f"analog-edge: error: fleet.dataset: got '{missing}', neither a built-in dataset "
                    f"(mnist5k, digits) nor an existing file or folder")
    assert not (tmp_path / "out").exists()


def test_missing_edge_data_path_names_that_key(tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text('[edge.data]\npath = "nowhere/images.idx"\n')
    line = _one_line(_run("fleet", "--config", str(cfg), "--out", str(tmp_path / "out")))
    assert line.startswith("analog-edge: error: edge.data.path: got 'nowhere/images.idx', neither a built-in")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    (["--devices", "Foo"], "--devices: got 'Foo', must be one of AsymmetricLinear, "),
    (["--algorithms", "Foo"], "--algorithms: got 'Foo', must be one of AGAD, AnalogSGD, "),   # the registry's names
    (["--latent-dims", "-8,16"], "--latent-dims: got -8, must be >= 1"),
    (["--bits", "8,5"], "--bits: got 5, must be one of 32, 16, 8, 4"),
])
def test_sweep_rejects_bad_grid_names_in_one_line(tmp_path, flags, message):
    line = _one_line(_run("sweep", *flags, "--out", str(tmp_path / "out")))
    assert line.startswith("analog-edge: error: " + message), line
    assert not (tmp_path / "out").exists()


def test_fedavg_on_the_local_backend_is_refused_before_the_latent_run(tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text('[fleet]\ndataset = "digits"\nnum_clients = 2\nbackend = "local"\n')
    line = _one_line(_run("fleet", "--config", str(cfg), "--mode", "both", "--out", str(tmp_path / "out")))
    assert line == ("analog-edge: error: fleet.mode: got 'both' with backend 'local'; FedAvg runs through "
                    "Flower's FedAvg strategy, so use --backend ray (or --mode latent)")
    assert not (tmp_path / "out").exists()
