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
from fleet.flower_runtime import RUN_END_MARKER
from fleet.processes import ProcessGroup, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _tiny(num_clients: int = 3) -> dict:
    return {
        "fleet": {"name": "engines", "dataset": "digits", "num_clients": num_clients, "seed": 0, "backend": "ray",
                  "alignment": "shared_init", "cpus": 2},
        "analog": {"device": {"type": "ReRAMSoftBounds"}, "algorithm": {"type": "TikiTaka"},
                   "forward": {"out_noise": 0.02}},
        "edge": {"latent_dim": 16, "bits": 8, "epochs": 3, "batch_size": 8, "lr": 0.03},
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
    data["edge"]["epochs"] = 1
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
        data["edge"]["epochs"] = 1
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


@pytest.mark.timeout(1800)      # a deployment and a simulation: ~10 min on 2 loaded cores
def test_readme_real_devices_on_loopback_tls_node_auth_matches_simulation(tmp_path):
    """The README's real-device steps, verbatim but on loopback: certs, the server command, and
    one `flower-supernode` per device; then the same fleet simulated, and the reports compared."""
    from fleet.processes import family
    from fleet.simulate import run_fleet

    data = _tiny(3)
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(tomli_w.dumps(data))
    pki, out, port = tmp_path / "pki", tmp_path / "deploy", free_port()
    assert _cli(["deploy", "certs", "--out", str(pki), "--nodes", "3"]).returncode == 0
    # the devices' shell: this environment active (flower-supernode starts flower-superexec from PATH)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_TELEMETRY_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    group = ProcessGroup()
    try:
        server = group.start([sys.executable, "-m", "fleet.cli", "deploy", "server", "--pki", str(pki),
                              "--config", str(cfg), "--out", str(out), "--superlink-port", str(port)],
                             log=tmp_path / "server.log", env=env, cwd=ROOT)
        deadline = time.monotonic() + 600          # the devices start once the server says it waits
        while "waiting for 3 SuperNodes" not in (tmp_path / "server.log").read_text():
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        for i in range(3):
            group.start([str(Path(sys.executable).parent / "flower-supernode"), "--superlink", f"127.0.0.1:{port}",
                         "--root-certificates", str(pki / "ca.crt"),
                         "--auth-supernode-private-key", str(pki / f"node-{i}.key"),
                         "--node-config", f"partition-id={i} num-partitions=3 state-dir='{tmp_path / f'dev-{i}'}'",
                         "--port", str(free_port())], log=tmp_path / f"node-{i}.log", env=env)
        deadline, server_family = time.monotonic() + 1500, set()
        while server.poll() is None:
            server_family |= family([server.pid])      # latent service, SuperLink and their helpers
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(1)
        log = (tmp_path / "server.log").read_text()
        assert server.returncode == 0, log[-3000:]
        assert "TLS, SuperNode authentication on" in log and "client-002" in log
        assert len(server_family) >= 3 and not (family(sorted(server_family)) & server_family)  # all stopped
    finally:
        group.stop()
    assert group.alive() == set()
    report = json.loads((out / "report.json").read_text())
    eng = report["engine"]
    assert eng["kind"] == "deployment" and eng["supernodes"] == 3 and eng["tls"] and eng["node_auth"]
    link_log = (out / "flower" / "superlink.log").read_text()
    assert "insecure" not in link_log.lower() and "authentication is disabled" not in link_log
    for i in range(3):                                     # each device kept its state in its own folder
        assert (tmp_path / f"dev-{i}" / f"client-{i:03d}").is_dir()

    sim = run_fleet(FleetConfig.from_dict(data), tmp_path / "sim")
    dep, ref = report["latent"], sim["latent"]
    assert dep["store_matches"] and ref["store_matches"]
    for a, b in zip(dep["clients"], ref["clients"]):       # same partitions, same encoders, same bytes
        assert (a["client_id"], a["rows"], a["wire_bytes"]) == (b["client_id"], b["rows"], b["wire_bytes"])
        assert abs(a["recon_mse"] - b["recon_mse"]) < 2e-3
    assert abs(dep["accuracy"] - ref["accuracy"]) < 0.10, (dep["accuracy"], ref["accuracy"])
    assert dep["accuracy"] > 0.2                           # well above 10% chance
