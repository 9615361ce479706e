"""Flower's engines, for real: the simulation runtime (`flwr run`), an existing Ray head, and the
deployment engine (flower-superlink + 3 flower-supernode, TLS and SuperNode authentication on).

Every test starts what it needs on loopback and checks that every process it started is gone.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from fleet.config import FleetConfig
from fleet.flower.runtime import RUN_END_MARKER
from fleet.processes import ProcessGroup, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _tiny(num_clients: int = 3) -> dict:
    return {
        "fleet": {"name": "engines", "dataset": "digits", "num_clients": num_clients, "seed": 0, "backend": "ray",
                  "cpus": 2},
        "analog": {"device": {"type": "ReRAMSoftBounds"}, "algorithm": {"type": "TikiTaka"},
                   "forward": {"out_noise": 0.02}},
        "edge": {"model": {"latent_dim": 16},
                 "wire": {"bits": 8},
                 "training": {"epochs": 3, "batch_size": 8, "lr": 0.03}},
        "classifier": {"hidden": [64], "epochs": 15, "lr": 0.05},
    }


def _cli(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_TELEMETRY_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "fleet.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


def _quiet(output: str) -> None:
    """No Flower/Ray banner or log line: only the project's progress bars and table."""
    low = output.lower()
    assert "deprecated" not in low, output[-2000:]
    assert "warning" not in low and "(raylet)" not in low and "clientappactor" not in low, output[-2000:]


def test_demo_runs_on_the_supported_simulation_path_without_banners(tmp_path):
    cfg = tmp_path / "tiny.toml"
    data = _tiny(2)
    data["edge"]["training"]["epochs"] = 1
    cfg.write_text(tomli_w.dumps(data))
    out = tmp_path / "demo"
    proc = _cli(["demo", "--config", str(cfg), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    _quiet(proc.stdout + proc.stderr)
    assert "client-001" in proc.stdout and "edge: train AE + upload" in proc.stderr   # table, relayed bars
    report = json.loads((out / "report.json").read_text())
    assert report["latent"]["rows_stored"] == report["latent"]["rows_sent"] > 0
    # Flower's own output was kept, not shown: the run log holds the simulation runtime's lines, to the
    # ServerApp's last one (the Ray actors' lines are there only when an actor printed something)
    run_log = (out / "flower" / "run.log").read_text()
    assert "Starting Flower Simulation" in run_log and RUN_END_MARKER in run_log
    assert "Starting Flower Simulation" not in proc.stdout + proc.stderr
    logs = sorted((out / "flower").glob("*.log"))
    assert {p.name for p in logs} >= {"run.log", "superlink.log"}
    for log in logs:                                 # plain text: Flower's colour escapes are gone
        assert "\x1b[" not in log.read_text(), log.name


def test_fleet_attaches_to_an_existing_ray_head(tmp_path):
    port = free_port()
    head = ProcessGroup()
    ray_tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"ae-rh-{os.getpid()}"   # short: socket path limit
    try:
        head.start([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                    "--node-ip-address", "127.0.0.2", "--port", str(port), "--temp-dir", str(ray_tmp),
                    "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                   log=tmp_path / "ray-head.log",
                   env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in (tmp_path / "ray-head.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "ray-head.log").read_text()[-2000:]
            time.sleep(0.5)
        head_pids = head.snapshot()
        cfg = tmp_path / "tiny.toml"
        data = _tiny(2)
        data["edge"]["training"]["epochs"] = 1
        cfg.write_text(tomli_w.dumps(data))
        proc = _cli(["fleet", "--config", str(cfg), "--out", str(tmp_path / "run"),
                     "--ray-address", f"127.0.0.2:{port}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        _quiet(proc.stdout + proc.stderr)
        report = json.loads((tmp_path / "run" / "report.json").read_text())
        assert len(report["latent"]["clients"]) == 2 and report["latent"]["store_matches"]
        # the virtual clients ran as worker processes of *this* head: its session logs are named
        # after the pids that the run log gives for its ClientAppActors
        import re

        actor_pids = set(re.findall(r"ClientAppActor pid=(\d+)", (tmp_path / "run" / "flower" / "run.log").read_text()))
        worker_logs = {p.stem.rsplit("-", 1)[-1] for p in ray_tmp.glob("session_*/logs/worker-*")}
        # workers start on a head only once a driver attaches to it; the actor pid lines are the
        # stronger check but reach run.log only when Ray forwards the actors' output in time
        assert worker_logs, "no worker ran on the Ray head: the fleet did not attach to it"
        assert actor_pids <= worker_logs, (actor_pids, worker_logs)
        assert head.alive() >= {head.pids[0]}
    finally:
        stopped = head.stop()
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert head.alive() == set() and head.pids[0] in stopped and len(head_pids) >= 5   # gcs, raylet, ...


def _quickstart(num_clients: int = 3) -> dict:
    """configs/quickstart.toml as shipped (MNIST 5k, pretrained + anchors, analog on both sides), at
    test size: 3 clients, 2 CPUs, fewer epochs everywhere (the same config runs both ways)."""
    import tomllib

    data = tomllib.loads((ROOT / "configs" / "quickstart.toml").read_text())
    data["fleet"].update(num_clients=num_clients, cpus=2)
    data["alignment"]["pretrain_epochs"] = QS_PRETRAIN_EPOCHS
    data["edge"]["training"]["epochs"] = QS_EDGE_EPOCHS
    data["classifier"]["epochs"] = QS_CLASSIFIER_EPOCHS
    return data


QS_PRETRAIN_EPOCHS, QS_EDGE_EPOCHS, QS_CLASSIFIER_EPOCHS = 10, 1, 15
AUDIT = Path(__file__).resolve().parent / "device_audit"     # its sitecustomize audits the devices' paths


@pytest.mark.timeout(1800)      # a deployment and a simulation of the quickstart fleet, 3 clients
def test_readme_real_devices_on_loopback_quickstart_matches_simulation(tmp_path):
    """The README's real-device steps, verbatim but on loopback, with configs/quickstart.toml
    (pretrained + anchors): certs, the server command, one `flower-supernode` per device. Each
    device lives in a folder of its own (its copies of the CA and its key, its state, its working
    directory) and is audited: any open or listing of the server's run folder or certificates fails
    and is logged. Then the same config simulated, and the reports compared."""
    from fleet.processes import family
    from fleet.flower.simulation import run_fleet

    data = _quickstart(3)
    server_root, devices = tmp_path / "server", tmp_path / "devices"
    server_root.mkdir()
    cfg = server_root / "fleet.toml"
    cfg.write_text(tomli_w.dumps(data))
    pki, out, port = server_root / "pki", server_root / "run", free_port()
    assert _cli(["deploy", "certs", "--out", str(pki), "--nodes", "3"]).returncode == 0
    audit_log = tmp_path / "device-audit.log"
    # the devices' shell: this environment active (flower-supernode starts flower-superexec from PATH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(AUDIT), str(ROOT)]), "FLWR_TELEMETRY_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "AE_DEVICE_FORBIDDEN": str(server_root), "AE_DEVICE_AUDIT_LOG": str(audit_log)}
    server_env = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_TELEMETRY_ENABLED": "0"}
    group = ProcessGroup()
    try:
        server = group.start([sys.executable, "-m", "fleet.cli", "deploy", "server", "--pki", str(pki),
                              "--config", str(cfg), "--out", str(out), "--superlink-port", str(port)],
                             log=tmp_path / "server.log", env=server_env, cwd=ROOT)
        deadline = time.monotonic() + 600          # the devices start once the server says it waits
        while "waiting for 3 SuperNodes" not in (tmp_path / "server.log").read_text():
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        for i in range(3):
            dev = devices / f"dev-{i}"
            (dev / "pki").mkdir(parents=True)
            for name in ("ca.crt", f"node-{i}.key"):        # copied to the device, as the README says
                (dev / "pki" / name).write_bytes((pki / name).read_bytes())
            group.start([str(Path(sys.executable).parent / "flower-supernode"), "--superlink", f"127.0.0.1:{port}",
                         "--root-certificates", "pki/ca.crt", "--auth-supernode-private-key", f"pki/node-{i}.key",
                         "--node-config", f"partition-id={i} num-partitions=3 state-dir='{dev / 'state'}'",
                         "--port", str(free_port())], log=dev / "supernode.log", env=env, cwd=dev)
        deadline, server_family = time.monotonic() + 1500, set()
        while server.poll() is None:
            server_family |= family([server.pid])      # latent service, SuperLink and their helpers
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(1)
        log = (tmp_path / "server.log").read_text()
        assert server.returncode == 0, log[-3000:] + audit_log.read_text()[-2000:]
        assert "TLS, SuperNode authentication on" in log and "client-002" in log
        assert len(server_family) >= 3 and not (family(sorted(server_family)) & server_family)  # all stopped
    finally:
        group.stop()
    assert group.alive() == set()
    # the path audit ran in every device's ClientApp, and nothing of the server's was touched
    audit = audit_log.read_text()
    assert sum("ARMED" in ln and "flwr-clientapp" in ln for ln in audit.splitlines()) >= 3, audit[-2000:]
    assert "BLOCKED" not in audit, audit[-2000:]
    report = json.loads((out / "report.json").read_text())
    eng = report["engine"]
    assert eng["kind"] == "deployment" and eng["supernodes"] == 3 and eng["tls"] and eng["node_auth"]
    link_log = (out / "flower" / "superlink.log").read_text()
    assert "insecure" not in link_log.lower() and "authentication is disabled" not in link_log
    for i in range(3):                                     # each device kept its state in its own folder
        assert (devices / f"dev-{i}" / "state" / f"client-{i:03d}" / "encoder.pt").is_file()
    assert not (out / "clients").exists()                  # ...and none of it on the server
    dep = report["latent"]
    # the pretrained weights crossed the wire once per device, in its train message
    pre = dep["pretrained"]
    assert [c["init_bytes_down"] for c in dep["clients"]] == [pre["wire_bytes"]] * 3
    assert pre["bytes"] < pre["wire_bytes"] < 1.05 * pre["bytes"] and dep["bytes_down"] == 3 * pre["wire_bytes"]
    assert [c["stored_anchor_rows"] for c in dep["clients"]] == [data["alignment"]["public_set"]] * 3

    sim = run_fleet(FleetConfig.from_dict(data), tmp_path / "sim")
    ref = sim["latent"]
    assert dep["store_matches"] and ref["store_matches"]
    for a, b in zip(dep["clients"], ref["clients"]):       # same partitions, same encoders, same bytes
        assert (a["client_id"], a["rows"], a["wire_bytes"], a["init_bytes_down"]) == \
            (b["client_id"], b["rows"], b["wire_bytes"], b["init_bytes_down"])
        assert abs(a["recon_mse"] - b["recon_mse"]) < 2e-3
    assert abs(dep["accuracy"] - ref["accuracy"]) <= 0.03, (dep["accuracy"], ref["accuracy"])
    assert dep["accuracy"] > 0.5                           # 10 classes: chance is 0.1
