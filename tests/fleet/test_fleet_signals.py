"""SIGTERM (what `timeout`, a batch scheduler or a container stop sends) to a command that started
Flower or Ray processes: every process it started is gone afterwards, and the exit code says it was
interrupted (143 = 128 + SIGTERM). The command is started with SIGTERM and SIGINT at their defaults
(a test run started in the background by a shell inherits SIGINT ignored), in a session of its own,
and signalled alone, as `timeout` does: its children get nothing from outside."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from fleet.processes import family

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _tiny(num_clients: int = 2, epochs: int = 200) -> dict:
    return {
        "fleet": {"name": "signals", "dataset": "digits", "num_clients": num_clients, "seed": 0, "backend": "ray",
                  "cpus": 2, "digital": True},
        "edge": {"model": {"latent_dim": 8},
                 "wire": {"bits": 8},
                 "training": {"epochs": epochs, "batch_size": 8, "lr": 0.03}},
        "classifier": {"hidden": [32], "epochs": 5, "lr": 0.05},
        "fedavg": {"rounds": 200},
    }


def _defaults() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def interrupt_mid_run(args: list[str], ready, tmp_path: Path, sig: int = signal.SIGTERM,
                      timeout: float = 600) -> tuple[int, set[int], float]:
    """Start `analog-edge ARGS`, wait until `ready(cmdlines of its processes)`, send `sig` to it alone;
    returns (exit code, every pid it had started, seconds from the signal to the last one gone)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_TELEMETRY_ENABLED": "0"}
    log = (tmp_path / "cli.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "fleet.cli", *args], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_defaults)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert proc.poll() is None, "the run ended before the signal: " + (tmp_path / "cli.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "cli.log").read_text()[-3000:]
            seen |= family([proc.pid])
            if ready([_cmdline(p) for p in family([proc.pid])]):
                break
            time.sleep(0.5)
        time.sleep(2)
        seen |= family([proc.pid])
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=120)
        while family(sorted(seen)) & seen and time.monotonic() < t0 + 60:
            time.sleep(0.1)
        return code, seen, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _has(cmdlines: list[str], *parts: str) -> bool:
    return all(any(p in c for c in cmdlines) for p in parts)


def test_sigterm_to_fleet_stops_flower_and_ray(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tomli_w.dumps(_tiny()))
    # Ray's GCS and raylet up, and the virtual clients (Ray workers) training
    code, seen, stop_s = interrupt_mid_run(
        ["fleet", "--config", str(cfg), "--out", str(tmp_path / "run")],
        lambda cmds: _has(cmds, "flower-superlink", "gcs_server", "raylet", "ray::ClientAppActor"), tmp_path)
    log = (tmp_path / "cli.log").read_text()
    left = family(sorted(seen)) & seen
    assert not left, ("left after SIGTERM:", [_cmdline(p) for p in left])
    assert code == 143, log[-2000:]
    assert "interrupted by SIGTERM" in log
    assert len(seen) >= 6                  # superlink, superexec, flwr-simulation, gcs, raylet, workers...
    print(f"fleet: {len(seen)} processes stopped {stop_s:.1f} s after SIGTERM")


def test_sigterm_to_sweep_stops_its_flower_run(tmp_path):
    cfg = tmp_path / "tiny.toml"
    data = _tiny(epochs=1)
    data["fleet"]["backend"] = "local"
    cfg.write_text(tomli_w.dumps(data))
    # the sweep's FedAvg point runs on Flower's simulation runtime: signalled while its rounds run
    code, seen, stop_s = interrupt_mid_run(
        ["sweep", "--config", str(cfg), "--out", str(tmp_path / "sweep"), "--latent-dims", "8", "--bits", "8",
         "--no-references", "--fedavg"],
        lambda cmds: _has(cmds, "flower-superlink", "raylet", "ray::ClientAppActor"), tmp_path)
    left = family(sorted(seen)) & seen
    assert not left, ("left after SIGTERM:", [_cmdline(p) for p in left])
    assert code == 143, (tmp_path / "cli.log").read_text()[-2000:]
    print(f"sweep: {len(seen)} processes stopped {stop_s:.1f} s after SIGTERM")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_deploy_local_interrupted_stops_every_process_it_started(tmp_path, sig):
    """Ctrl-C, or SIGTERM (what `timeout` or a container stop sends), mid-run: the latent service, the
    SuperLink, the SuperNodes and their helpers are all gone, and the exit code says which signal."""
    cfg = tmp_path / "fleet.toml"
    data = _tiny(2)                         # 200 epochs: surely still training when the signal comes
    cfg.write_text(tomli_w.dumps(data))
    signum = getattr(signal, sig)
    # the latent service, the SuperLink, both SuperNodes and their ClientApps run
    code, seen, stop_s = interrupt_mid_run(
        ["deploy", "local", "--clients", "2", "--config", str(cfg), "--out", str(tmp_path / "run")],
        lambda cmds: sum("flwr-clientapp" in c for c in cmds) >= 2, tmp_path, sig=signum)
    assert not (family(sorted(seen)) & seen), "processes left after " + sig
    assert code == 128 + signum, (tmp_path / "cli.log").read_text()[-2000:]
    assert len(seen) >= 6
    print(f"deploy local: {len(seen)} processes stopped {stop_s:.1f} s after {sig}")
