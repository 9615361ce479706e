"""End to end against the real server process on loopback: two edge clients (one on analog tiles, one
digital) train, upload through the CLI, re-run without duplicating rows, then measure honest held-out
accuracy through Classify after the server trains its classifier."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from edge_client.config import EdgeConfig
from edge_client.runner import evaluate_with_server, train_and_upload
from edge_client.summary import UploadSummary
from protos.client import LatentClient
from protos import latent_service_pb2 as pb
from protos import latent_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]


ADMIN = "e2e-admin-token"


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FLWR_TELEMETRY_ENABLED="0", OMP_NUM_THREADS="1")
    return env


@pytest.fixture()
def server(tmp_path):
    port_file = tmp_path / "port"
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "fleet.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--store", str(tmp_path / "store"), "--port-file", str(port_file),
                             "--admin-token", ADMIN],
                            cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.1)
        yield f"127.0.0.1:{int(port_file.read_text())}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _client(addr: str, tmp: Path, cid: str, part: str, *extra: str) -> dict:
    out = tmp / f"{cid}-{len(list(tmp.glob(cid + '*.json')))}.json"
    cmd = [sys.executable, "-m", "fleet.cli", "client", "--server", addr, "--client-id", cid,
           "--dataset", "mnist5k", "--partition-id", part.split("/")[0], "--num-partitions", part.split("/")[1],
           "--latent-dim", "16", "--bits", "8",
           "--max-samples", "250", "--state-dir", str(tmp / cid), "--out", str(out), "--quiet", *extra]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(out.read_text())


def test_clients_upload_dedupe_and_classify(server, tmp_path):
    # analog tiles (the default config); batch 4 x 4 epochs gives the pulsed SGD enough steps on 200 digits
    a = _client(server, tmp_path, "edge-a", "0/2", "--epochs", "4", "--batch-size", "4")
    b = _client(server, tmp_path, "edge-b", "1/2", "--epochs", "3", "--digital")
    assert a["analog"] and not b["analog"]
    for s in (a, b):
        assert s["rows"] == s["n_train"] == s["rows_stored"] and s["n_train"] + s["n_test"] == 250
        assert abs(s["n_test"] - 50) <= 3  # stratified 20% split, rounded per class
        assert s["recon_mse"] < 0.8 * s["recon_mse_initial"]
        assert s["bytes_per_sample"] == 16 + 4 and s["compression_pixels"] == 49.0
        assert s["wire_bytes"] > s["payload_bytes"] and not s["uploads"][0]["duplicate"]
    assert not (tmp_path / "edge-a" / "encoder.pt").stat().st_size == 0
    assert oct((tmp_path / "edge-a" / "token").stat().st_mode & 0o777) == "0o600"

    # the same run again (in-process, the config the CLI built) re-sends the same bytes under the same
    # upload_id: stored once
    cfg_b = EdgeConfig(analog=None, data={"dataset": "mnist5k", "max_samples": 250}, model={"latent_dim": 16},
                       wire={"bits": 8}, training={"epochs": 3})
    b2 = train_and_upload(cfg_b, server, "edge-b", 1, 2, None, tmp_path / "edge-b", progress=False)
    assert b2.recon_mse == b["recon_mse"] and list(b2.scale) == b["scale"]  # seeded: the very same run
    assert b2.uploads[0].duplicate and b2.uploads[0].upload_id == b["uploads"][0]["upload_id"]
    assert UploadSummary.from_json(json.dumps(b)).wire == b2.wire   # the CLI's summary file reads back
    with LatentClient(server) as c:
        st = c.status(admin_token=ADMIN)
    rows = {cl.client_id: cl.rows for cl in st.clients}
    assert rows == {"edge-a": a["rows"], "edge-b": b["rows"]} and st.total_rows == a["rows"] + b["rows"]

    with grpc.insecure_channel(server) as ch:
        # option (b) of docs/design.md §1.3: a learned per-client embedding beside z, since the two
        # independently trained encoders have latent spaces of their own
        req = pb.TrainClassifierRequest(config_toml='client_conditioning = "embedding"\nepochs = 60\n',
                                        admin_token=ADMIN)
        trained = pb_grpc.LatentServiceStub(ch).TrainClassifier(req, timeout=120)
    assert trained.classifier.version >= 1 and trained.classifier.trained_rows > 0

    accs = {}
    cfg_a = EdgeConfig(data={"dataset": "mnist5k", "max_samples": 250}, model={"latent_dim": 16}, wire={"bits": 8},
                       training={"epochs": 4})
    # --evaluate-only needs no training flag: the config and the partition come from the state folder
    out = tmp_path / "edge-a-eval.json"
    only = [sys.executable, "-m", "fleet.cli", "client", "--server", server, "--client-id", "edge-a",
            "--state-dir", str(tmp_path / "edge-a"), "--quiet", "--evaluate-only"]
    res = subprocess.run(only + ["--out", str(out)], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ev = json.loads(out.read_text())["evaluation"]
    assert json.loads(out.read_text())["partition"] == "0/2"
    clash = subprocess.run(only + ["--partition-id", "1"], cwd=ROOT, env=_env(), capture_output=True,
                           text=True, timeout=300)
    assert clash.returncode == 2 and clash.stderr.strip().splitlines() == [
        "analog-edge client: --partition-id: got 1, but the state folder was trained with 0"]
    assert ev["n_test"] == a["n_test"] and 0 <= ev["correct"] <= ev["n_test"]
    accs["edge-a"] = ev["accuracy"]
    ev_again = evaluate_with_server(cfg_a, server, "edge-a", 0, 2, None, tmp_path / "edge-a")
    assert abs(ev_again.accuracy - ev["accuracy"]) <= 0.1  # the saved analog encoder, reloaded (noisy reads)
    with pytest.raises(ValueError, match="model.latent_dim: got 8, but .* was trained with 16"):
        evaluate_with_server(cfg_b.replace({"model.latent_dim": 8}), server, "edge-b", 1, 2, None,
                             tmp_path / "edge-b")
    ev = evaluate_with_server(cfg_b, server, "edge-b", 1, 2, None, tmp_path / "edge-b")
    assert ev.n_test == b["n_test"] and set(ev.per_class_accuracy) <= set(range(10))
    accs["edge-b"] = ev.accuracy
    # each client's own held-out digits, encoded with its own encoder: well above chance (0.1)
    print("held-out accuracy per client", accs)
    assert min(accs.values()) > 0.3, accs


def test_cli_reports_bad_input_and_unreachable_server(tmp_path):
    base = [sys.executable, "-m", "fleet.cli", "client", "--client-id", "edge-x", "--state-dir", str(tmp_path)]
    bad = subprocess.run(base + ["--server", "127.0.0.1:1", "--latent-dim", "0"], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "latent_dim: got 0" in bad.stderr
    part = subprocess.run(base + ["--server", "127.0.0.1:1", "--partition-id", "5", "--num-partitions", "3"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert part.returncode == 2 and "--partition-id: got 5, must be in [0, 2]" in part.stderr
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "edge.toml"
    cfg.write_text("[edge.link]\nmax_attempts = 2\nbackoff_initial_s = 0.01\nrpc_timeout_s = 3.0\n")
    down = subprocess.run(base + ["--server", f"127.0.0.1:{port}", "--config", str(cfg), "--dataset", "digits",
                                  "--max-samples", "60", "--epochs", "1", "--digital", "--quiet"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert down.returncode == 3 and "UNAVAILABLE after 2 attempt" in down.stderr.strip().splitlines()[-1]
    assert "Register" in down.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "encoder.pt").exists()       # it failed before training, not after


def test_evaluate_only_without_a_state_folder_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fleet.cli", "client", "--server", "127.0.0.1:1",
                           "--client-id", "edge-x", "--state-dir", str(tmp_path / "none"), "--evaluate-only"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"analog-edge client: state_dir: {tmp_path / 'none' / 'state.json'} not found; run train_and_upload first"]
