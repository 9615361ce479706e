"""One fleet run's phases in order, then its report: the body of every way to run a fleet.

`execute` drives the phases the config asks for through a transport (Flower's grid or the local
one) and writes the report; `run_on_grid` is the ServerApp body, shared by the simulation
(fleet/flower/simulation.py) and `flwr run` (fleet/flower/apps.py), so both engines run the identical phases.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from flwr.serverapp import Grid

from fleet.config import FleetConfig
from fleet.energy import as_json, energy_report
from fleet.errors import FleetError
from fleet.inference import plot_inference, run_inference
from fleet.privacy import run_privacy
from fleet.run import report as rep
from fleet.run.phases import PhaseTimer, describe_tile, run_fedavg, run_latent
from fleet.run.service import ExternalService
from fleet.run.transport import FlowerTransport, Transport


def execute(fleet: FleetConfig, out_dir: Path, transport: Transport | None, grid: Grid | None = None,
            external: ExternalService | None = None, remote_devices: bool = False) -> dict[str, Any]:
    """All phases the config asks for, then the report files; returns the report dict.
    `remote_devices`: the clients are real devices, which keep their state in folders of their own."""
    with torch_threads(fleet.torch_threads):
        return _execute(fleet, out_dir, transport, grid, external, remote_devices)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the server side's own compute (pretraining, privacy, deployment) on `n` intra-op threads
    (0 = leave torch's default), restored afterwards. Why: the ServerApp shares its cores with the
    clients and the other Flower/Ray processes; torch's default (one thread per core) makes the small
    pretraining steps wait on each other, measured 10-16x slower than one thread on 2 busy cores."""
    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _execute(fleet: FleetConfig, out_dir: Path, transport: Transport | None, grid: Grid | None,
             external: ExternalService | None, remote_devices: bool = False) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rep.write_config(fleet, out_dir)
    timer = PhaseTimer()
    t0 = time.perf_counter()
    result: dict[str, Any] = {"name": fleet.name, "dataset": fleet.dataset, "num_clients": fleet.num_clients,
                              "partition": fleet.partitioner if fleet.partitioner == "iid" else f"dirichlet({fleet.alpha})",
                              "alignment": fleet.alignment.label, "digital": fleet.digital, "backend": fleet.backend,
                              "seed": fleet.seed,
                              "edge_side": describe_tile(fleet.edge_config.analog),
                              "server_side": describe_tile(fleet.classifier_config.analog)}
    if fleet.mode in ("latent", "both"):
        if transport is None:
            raise FleetError("fleet.mode: the latent pipeline needs a transport to reach the clients")
        result["latent"] = run_latent(transport, fleet, out_dir, timer, external, remote_devices)
        if fleet.privacy.enabled:
            with timer("privacy"):
                result["privacy"] = ({"skipped": "an external latent service holds the latents"} if external
                                     else run_privacy(fleet, out_dir))
        if fleet.inference.enabled:
            with timer("deploy"):     # report key kept from the [deploy] table's time (scripts/figures.py reads it)
                result["deploy"] = ({"skipped": "an external latent service holds the classifier"} if external
                                    else run_inference(fleet, out_dir))
                plot_inference(result["deploy"], out_dir, f"{fleet.name}: {fleet.num_clients} clients, alignment "
                            f"{fleet.alignment.label}, fleet seed {fleet.seed},\ntiles "
                            f"{_tile_label(fleet.edge_config.analog)}, PCM-like chips seed {fleet.inference.seed}")
    if fleet.mode in ("fedavg", "both"):
        if grid is None:
            raise FleetError("fleet.mode: fedavg runs through Flower's FedAvg strategy; "
                             "use backend = \"ray\" (or flwr run)")
        result["fedavg"] = run_fedavg(grid, fleet, timer)
    if fleet.energy.enabled and result.get("latent"):
        result["energy"] = as_json(energy_report(fleet, result))
    result["timings_s"] = {**timer.phases, "total": time.perf_counter() - t0}
    rep.write_report(result, out_dir)
    return result


def _tile_label(tile: dict[str, Any] | None) -> str:
    """'digital', a preset's name, or the algorithm on the device, for a figure title."""
    if tile is None:
        return "digital"
    if "preset" in tile:
        return f"preset {tile['preset']}"
    desc = describe_tile(tile)
    return f"{desc['algorithm']} on {desc['device']}"


def run_on_grid(grid: Grid, fleet: FleetConfig, out_dir: Path, external: ExternalService | None = None,
                remote_devices: bool = False) -> dict[str, Any]:
    """The ServerApp body: Flower transport over the grid, then `execute`."""
    transport = FlowerTransport(grid, fleet.num_clients) if fleet.mode != "fedavg" else None
    return execute(fleet, out_dir, transport, grid, external, remote_devices)
