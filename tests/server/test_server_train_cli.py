"""`analog-edge train-classifier` and `serve` run by hand as real subprocesses: a missing store is one line and
creates nothing; the classifier is analog unless --digital, and the run says which it is; a port in use
is one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_server_classifier import _blobs, _fill

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "fleet.cli", "train-classifier", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_missing_store_is_one_line_and_creates_nothing(tmp_path):
    missing = tmp_path / "no" / "such" / "store"
    proc = _run("--store", str(missing))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("analog-edge train-classifier: --store: got ")
    assert str(missing) in lines[0] and "latents.sqlite3" in lines[0]
    assert not (tmp_path / "no").exists()          # nothing created on the way to failing
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("train_cli") / "s"
    _fill(d, {"a": _blobs(120, 0), "b": _blobs(120, 1)})
    return d


def _trained(store, *args):
    proc = _run("--store", str(store), "--epochs", "2", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_default_is_analog_on_the_reference_tile_and_says_so(store):
    result, err = _trained(store)
    assert result["mode"] == "analog" and result["config"]["analog"]["device"]["type"] == "ConstantStep"
    assert "analog classifier: ConstantStep / AnalogSGD tiles from the reference tile" in err


def test_fleet_config_shares_its_analog_table_with_the_classifier(store, tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text('[analog]\ndevice = { type = "ReRAMSoftBounds" }\n\n[classifier]\nhidden = [8]\n')
    result, err = _trained(store, "--config", str(cfg))
    assert result["mode"] == "analog" and result["config"]["analog"]["device"]["type"] == "ReRAMSoftBounds"
    assert result["config"]["hidden"] == [8]
    assert f"analog classifier: ReRAMSoftBounds / AnalogSGD tiles from {cfg} [analog]" in err


def test_digital_flag_trains_a_digital_classifier_and_says_so(store, tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text('[analog]\ndevice = { type = "ReRAMSoftBounds" }\n\n[classifier]\nhidden = [8]\n')
    result, err = _trained(store, "--config", str(cfg), "--digital")
    assert result["mode"] == "digital" and "analog" not in result["config"]
    assert "train-classifier: digital classifier (--digital)" in err


def test_serve_on_a_port_in_use_is_one_line_without_grpc_core_output(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("GRPC_VERBOSITY", None)
        proc = subprocess.run([sys.executable, "-m", "fleet.cli", "serve", "--port", str(port),
                               "--store", str(tmp_path / "s")], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"analog-edge serve: port: could not bind 127.0.0.1:{port}: the port is in use or the address is "
        f"not this machine's (--port 0 picks a free one)"]
