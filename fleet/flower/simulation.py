"""`run_fleet`: one fleet, simulated on Flower's simulation runtime (Ray) or run in-process.

With the Ray backend the fleet runs the way Flower 1.41 supports simulations: a
`flower-superlink --simulation` on a free loopback port, the fleet's Flower App
(`fleet/flower/apps.py`) submitted with `flwr run` and a federation config (one virtual SuperNode per
client, one CPU each), then a wait for the run to finish. Flower's and Ray's output goes to
`<out>/flower/` (`verbose=True` shows it); the client progress bars are relayed to this terminal.
With `ray_address` the simulation attaches to that running Ray cluster instead of starting one.
With the `local` backend the same phases drive the clients in this process (`LocalTransport`).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import tomli_w

from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.flower.runtime import FlowerRuntime, last_error
from fleet.processes import ProcessGroup
from fleet.run import PROGRESS_ENV, ExternalService, LocalTransport, execute


def run_fleet(fleet: FleetConfig, out_dir: str | Path, external: ExternalService | None = None,
              verbose: bool = False, ray_address: str | None = None) -> dict[str, Any]:
    """Run one fleet (simulated with Flower + Ray, or local) and return its report.
    `external`: a running latent service to use instead of starting one; `ray_address` = host:port of a running Ray cluster to simulate on."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if fleet.backend == "local":
        if ray_address:
            raise FleetError(f"--ray-address: got {ray_address!r}, but the local backend does not use Ray")
        return execute(fleet, out, LocalTransport(fleet.num_clients), external=external)
    return simulate(fleet, out, external, verbose, ray_address)


def federation_config(fleet: FleetConfig, ray_address: str | None = None) -> dict[str, Any]:
    """One virtual SuperNode per client, one CPU each; Ray may use `fleet.cpus` (0 = all of this
    machine's) unless it is an existing cluster (whose size is its own)."""
    cfg: dict[str, Any] = {"num-supernodes": fleet.num_clients, "client-resources-num-cpus": 1,
                           "client-resources-num-gpus": 0.0}
    if not ray_address:
        cfg["init-args-num-cpus"] = fleet.cpus or os.cpu_count() or 1
        cfg["init-args-num-gpus"] = 0
    return cfg


def write_fleet_toml(fleet: FleetConfig, path: Path) -> Path:
    """The resolved fleet config the ServerApp reads (CLI overrides included)."""
    path.write_text(tomli_w.dumps(fleet.to_dict()))
    return path


def simulate(fleet: FleetConfig, out: Path, external: ExternalService | None = None, verbose: bool = False,
             ray_address: str | None = None) -> dict[str, Any]:
    """The fleet on Flower's simulation runtime (`flower-superlink --simulation` + `flwr run`)."""
    flower_dir = out / "flower"
    flower_dir.mkdir(parents=True, exist_ok=True)
    report = out / "report.json"
    report.unlink(missing_ok=True)
    progress = flower_dir / "progress.txt"
    progress.write_text("")
    ray_tmp = tempfile.mkdtemp(prefix="ae-ray-")       # short path: Ray's socket names have a length limit
    env = {"RAY_TMPDIR": ray_tmp, PROGRESS_ENV: str(progress)}
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    runtime = FlowerRuntime(flower_dir, ProcessGroup(), env=env, verbose=verbose)
    relay = _Relay(progress) if not verbose else None
    try:
        runtime.start_superlink(simulation=True)
        run_config: dict[str, Any] = {"config": str(write_fleet_toml(fleet, flower_dir / "fleet.toml")),
                                      "out-dir": str(out)}
        if external is not None:
            run_config.update(external.to_run_config())
        run_id = runtime.run(run_config, federation_config(fleet, ray_address))
        if relay:
            relay.start()
        status = runtime.wait(run_id, done_hint=report.is_file)   # the ServerApp writes it last
        log = runtime.save_log(run_id, flower_dir / "run.log")
    finally:
        if relay:
            relay.stop()
        runtime.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if verbose:
        print(log, file=sys.stderr)
    if status != "finished:completed" or not report.is_file():
        raise FleetError(f"flwr run {run_id} {status}: {last_error(log)} (full log: {flower_dir / 'run.log'})")
    return json.loads(report.read_text())


class _Relay:
    """Copy what the ServerApp writes to the progress file onto this terminal, as it arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        with open(self.path, "rb") as fh:
            while True:
                chunk = fh.read()
                if chunk:
                    sys.stderr.write(chunk.decode(errors="replace"))
                    sys.stderr.flush()
                elif self._stop.is_set():
                    return
                else:
                    self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
