"""Benchmark: `make demo`'s wall time, with what it takes to judge it on a shared machine.

Runs the demo's own command (`python -m fleet.cli demo --out DIR`, the quickstart under Flower's
simulation engine) as a child subreaper, so every process it starts (the SuperLink, Ray, the
ClientApp actors, the latent service, `flwr` polls), orphaned or not, is reaped here and its CPU
time counted. Reported (JSON): the wall time, the CPU seconds of the whole process tree, the load
average sampled every 5 s (on 2 cores a load of 4 means every core is shared by two busy
processes, so the wall time stretches accordingly while the CPU seconds do not), the fleet's phase
times and accuracy from its report.

    python benchmarks/demo_time.py [--out runs/demo-time] [--json PATH] [--digital]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Orphaned descendants reparent to this process instead of init (Linux); False elsewhere."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap_all(main_pid: int, linger_s: float = 60.0) -> tuple[int, float]:
    """Wait for the main child, then reap whatever descendants remain (at most `linger_s`)."""
    t0 = time.perf_counter()
    rc, wall = 1, float("nan")
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return rc, wall
        if pid == main_pid:
            rc, wall = os.waitstatus_to_exitcode(status), time.perf_counter() - t0
            break
    deadline = time.monotonic() + linger_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.2)
    return rc, wall


def run(out: Path, digital: bool) -> dict:
    subreaper = _become_subreaper()
    loads: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            loads.append(os.getloadavg()[0])
            stop.wait(5.0)

    cmd = [sys.executable, "-m", "fleet.cli", "demo", "--out", str(out)] + (["--digital"] if digital else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
               FLWR_TELEMETRY_ENABLED="0")
    threading.Thread(target=sample, daemon=True).start()
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env)
    rc, wall = _reap_all(proc.pid)
    stop.set()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    res: dict = {"cmd": " ".join(cmd[1:]), "rc": rc, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
                 "cpu_user_s": ru.ru_utime, "cpu_sys_s": ru.ru_stime, "cpu_count": os.cpu_count(),
                 "every_descendant_counted": subreaper,
                 "load_average_1min": {"median": statistics.median(loads) if loads else None,
                                       "min": min(loads, default=None), "max": max(loads, default=None),
                                       "samples": loads}}
    report = out / "report.json"
    if report.is_file():
        rep = json.loads(report.read_text())
        res["phases_s"] = rep.get("timings_s", {})
        lat = rep.get("latent", {})
        res["accuracy"] = lat.get("accuracy")
        res["pretrained"] = {k: v for k, v in (lat.get("pretrained") or {}).items() if k != "path"}
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / f"demo-time-{time.strftime('%Y%m%d-%H%M%S')}"),
                        help="the demo's output folder")
    parser.add_argument("--digital", action="store_true", help="time the demo's --digital twin")
    parser.add_argument("--json", metavar="PATH", help="write the result here (default: print it)")
    args = parser.parse_args(argv)
    res = run(Path(args.out), args.digital)
    load = res["load_average_1min"]
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in res.get("phases_s", {}).items())
    print(f"demo: rc {res['rc']}, wall {res['wall_s']:.0f} s, CPU {res['cpu_s']:.0f} s (all processes), "
          f"load average median {load['median']:.1f} on {res['cpu_count']} cores; phases: {phases}")
    text = json.dumps(res, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    return 0 if res["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
