"""The Flower app for `flwr run` (pyproject's [tool.flwr.app.components]).

`server_app` reads the run config and runs the same phases as `analog-edge fleet`
(`pipeline.run_on_grid`); `client_app` is the edge device of fleet/flower/client_app.py. Run config keys:
`config` (fleet TOML), `out-dir`, `mode`, `num-clients`, and `latent-address` / `admin-token` / `latent-ca` (its TLS root certificate) to
use a latent service the devices can reach (on real devices the one this ServerApp would start
listens on loopback only); `remote-devices` = 1 when the SuperNodes are real devices (each keeps
its state in the folder its node config names). See docs/fleet.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fleet.config import DEFAULT_CONFIG, FleetConfig, resolve_config_path
from fleet.flower.client_app import client_app
from fleet.flower.runtime import RUN_END_MARKER
from fleet.names import new_run_dir
from fleet.run import ExternalService, run_on_grid

__all__ = ["client_app", "server_app"]

server_app = ServerApp()


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    fleet = FleetConfig.from_toml(resolve_config_path(str(rc.get("config") or DEFAULT_CONFIG)))
    overrides: dict[str, Any] = {}
    if rc.get("mode"):
        overrides["mode"] = str(rc["mode"])
    if int(rc.get("num-clients", 0) or 0):
        overrides["num_clients"] = int(rc["num-clients"])
    fleet = fleet.with_overrides(**overrides)
    out = Path(str(rc.get("out-dir", ""))) if rc.get("out-dir") else new_run_dir(Path("runs"), "flwr")
    external = ExternalService.from_run_config(rc)
    try:
        remote = bool(int(rc.get("remote-devices", 0) or 0))
        run_on_grid(grid, fleet, out.resolve(), external, remote_devices=remote)
    finally:                      # the line the driver waits for before it saves the run log
        print(RUN_END_MARKER, flush=True)
