"""`run_fleet`: one fleet, simulated with Flower's simulation engine (Ray) or run in-process.

With the Ray backend a ServerApp (a closure over `pipeline.run_on_grid`) and the ClientApp go to
`flwr.simulation.run_simulation`; with the `local` backend the same phases drive the clients in
this process through `LocalTransport`.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from fleet.client_app import client_app
from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.pipeline import execute, run_on_grid
from fleet.transport import LocalTransport


def make_server_app(main: Callable[[Grid, Context], None]) -> ServerApp:
    """A ServerApp whose main is `main(grid, context)`."""
    app = ServerApp()
    app.main()(main)
    return app


def ray_backend_config(fleet: FleetConfig) -> dict[str, Any]:
    """One CPU per virtual client; Ray may use `fleet.cpus` (0 = all of this machine's)."""
    cpus = fleet.cpus or os.cpu_count() or 1
    return {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False}}


def run_fleet(fleet: FleetConfig, out_dir: str | Path, external: tuple[str, str] | None = None) -> dict[str, Any]:
    """Run one fleet (simulated with Flower + Ray, or local) and return its report.
    `external` = (address, admin_token) of a running latent service to use instead of starting one."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if fleet.backend == "local":
        return execute(fleet, out, LocalTransport(fleet.num_clients), external=external)
    return _simulate(fleet, out, external)


def _simulate(fleet: FleetConfig, out: Path, external: tuple[str, str] | None = None) -> dict[str, Any]:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")      # Ray forks while gRPC threads run: noisy INFO lines
    if not os.environ.get("ANALOG_EDGE_FLWR_LOGS"):       # our own tqdm bars report progress
        logging.getLogger("flwr").setLevel(logging.WARNING)
    ray_tmp = tempfile.mkdtemp(prefix="ae-ray-")       # short path: Ray's socket names have a length limit
    old_tmp = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = ray_tmp
    sink: dict[str, Any] = {}
    errors: list[BaseException] = []

    def main(grid: Grid, context: Context) -> None:
        try:
            sink["report"] = run_on_grid(grid, fleet, out, external)
        except BaseException as exc:  # surfaced below with its own message, not Flower's
            errors.append(exc)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_simulation(server_app=make_server_app(main), client_app=client_app,
                           num_supernodes=fleet.num_clients, backend_name="ray",
                           backend_config=ray_backend_config(fleet))
    finally:
        _shutdown_ray()
        if old_tmp is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old_tmp
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if errors:
        raise errors[0]
    if "report" not in sink:
        raise FleetError("the Flower simulation ended without a report (see the log above)")
    return sink["report"]


def _shutdown_ray() -> None:
    try:
        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - best effort: Flower normally shuts Ray down itself
        pass
