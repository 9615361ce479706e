"""The server-side phases of a fleet run, each a function of (transport or grid, fleet config).

`run_latent`: latent service up, clients train + upload, classifier trained, clients evaluate.
`run_fedavg`: the FedAvg baseline through Flower's strategy on the same partitions.
`summarize_latent` turns the clients' replies into the fleet's figures (also used by the sweep and
the alignment comparison, which drive clients themselves). fleet/run/pipeline.py strings them together.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord

from edge_client.data import load_dataset
from edge_client.pretrain import pretrain_autoencoder, save_weights
from edge_client.runner import anchor_set_sha256, public_anchor_images
from fleet.config import FleetConfig
from fleet.errors import FleetError
from fleet.names import PRETRAINED_FILE
from fleet.run.client_tasks import fedavg_model
from fleet.run.fedavg import get_arrays, make_strategy
from fleet.run.messages import ClientEvaluation, ClientUpload, LatentTask, RequantizedUpload
from fleet.run.service import ExternalService, ServiceHandle
from fleet.run.transport import LATENT_EVALUATE, LATENT_TRAIN, Transport, init_record, record_wire_bytes


class PhaseTimer:
    """Wall time per named phase, in order."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    def __call__(self, name: str) -> "PhaseTimer":
        self._name = name
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.phases[self._name] = self.phases.get(self._name, 0.0) + time.perf_counter() - self._t0


def _edge_epochs(fleet: FleetConfig) -> int:
    return fleet.edge_config.training.epochs


def describe_tile(tile: dict[str, Any] | None) -> dict[str, Any]:
    """The side's tiles for tables and titles: device and algorithm class names of the resolved
    TileConfig (a named preset resolves to its own device and algorithm), and the preset's name."""
    if tile is None:
        return {"mode": "digital"}
    from analog import presets  # imported on use: analog loads torch

    cfg = presets.from_dict(tile)
    out = {"mode": "analog", "device": type(cfg.device).__name__, "algorithm": type(cfg.algorithm).__name__,
           "tile": tile}
    if "preset" in tile:
        out["preset"] = tile["preset"]
    return out


def spread(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"min": float("nan"), "max": float("nan"), "std": float("nan")}
    return {"min": float(a.min()), "max": float(a.max()), "std": float(a.std())}


def fresh_run_dir(out_dir: Path) -> None:
    """A rerun into the same folder starts from an empty store and fresh client state (only our
    own sub-folders are removed: a store has latents.sqlite3, client state lives in client-*)."""
    server, clients = out_dir / "server", out_dir / "clients"
    if server.is_dir() and (any(server.glob("latents.sqlite3*")) or not any(server.iterdir())):
        shutil.rmtree(server)
    if clients.is_dir() and all(p.name.startswith("client-") for p in clients.iterdir()):
        shutil.rmtree(clients)


def check_partitions(fleet: FleetConfig, uploads: Sequence[ClientUpload]) -> None:
    """Every node must hold a distinct partition of the same num_clients-way split."""
    wrong = [u for u in uploads if u.num_partitions != fleet.num_clients]
    if wrong:
        raise FleetError(f"node_config.num-partitions: got {wrong[0].num_partitions} on {wrong[0].client_id}, "
                         f"but fleet.num_clients is {fleet.num_clients}; start that many SuperNodes "
                         "(num-supernodes / --num-clients) with matching partitions")
    ids = sorted(u.partition_id for u in uploads)
    if ids != list(range(fleet.num_clients)):
        raise FleetError(f"node_config.partition-id: got {ids}, must be each of 0..{fleet.num_clients - 1} once")


def pretrain_shared_init(fleet: FleetConfig, path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The server's part of alignment "pretrained": train the clients' AE architecture digitally on
    the public anchor images; returns (its record, the weights), a copy kept at `path`. The weights
    reach the clients in the train message (`run_latent`), never through this file."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    cfg = fleet.edge_config
    state, mse = pretrain_autoencoder(cfg, public_anchor_images(cfg), fleet.alignment.pretrain_epochs, fleet.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbytes = save_weights(state, path)
    # threads and this process's CPU seconds beside the wall time: a slow pretraining on a busy
    # machine reads as CPU-starved (cpu << wall) or as threads waiting on each other (cpu >> work)
    return ({"path": str(path), "bytes": nbytes, "epochs": fleet.alignment.pretrain_epochs,
             "public_images": cfg.public.size,
             "recon_mse_public": mse, "seconds": time.perf_counter() - t0,
             "cpu_seconds": time.process_time() - cpu0, "torch_threads": torch.get_num_threads()}, state)


def device_task(fleet: FleetConfig, address: str, state_root: Path | None, ca_pem: str | None = None) -> LatentTask:
    """What the latent tasks tell every device (`LatentTask`): the fleet config, the latent service's
    address and TLS root certificate (its PEM text: a device reads no file of the server's), the
    SHA-256 of the public anchor set (each device checks its own copy against it), and, for simulated
    clients only, the folder under which they keep state (real devices name theirs in their node config)."""
    cfg = fleet.edge_config
    return LatentTask(fleet=fleet.to_dict(), server_address=address,
                      state_root=str(state_root) if state_root is not None else None, latent_ca_pem=ca_pem,
                      anchor_sha256=anchor_set_sha256(public_anchor_images(cfg)) if cfg.public.size else None)


def run_latent(transport: Transport, fleet: FleetConfig, out_dir: Path, timer: PhaseTimer,
               external: ExternalService | None = None, remote_devices: bool = False) -> dict[str, Any]:
    """Phases of the latent pipeline: service, train+upload, classifier, per-client evaluation.
    `external`: a running service to use instead of starting one; `remote_devices`: the clients are
    real devices (their state folders are their own)."""
    clf = fleet.classifier_config
    fresh_run_dir(out_dir)
    with timer("start_service"):
        if external is not None:
            service = ServiceHandle.external(external)
        else:
            service = ServiceHandle(out_dir / "server", clf, fleet.server_mode)
    try:
        task = device_task(fleet, service.address, None if remote_devices else out_dir / "clients",
                           external.ca_pem() if external is not None else None)
        pretrained = init = None
        if fleet.alignment.pretrained:
            with timer("pretrain"):
                pretrained, state = pretrain_shared_init(fleet, out_dir / PRETRAINED_FILE)
            init = init_record(state)
            pretrained["wire_bytes"] = record_wire_bytes(init)     # per client, in its train message
        with timer("clients_train_upload"):
            uploads = [_expect(r, ClientUpload) for r in
                       transport.broadcast(LATENT_TRAIN, task, "edge: train AE + upload", init=init)]
        check_partitions(fleet, uploads)
        with timer("server_status"):
            status = service.status()
        with timer("classifier_train"):
            classifier = service.train_classifier(clf)
        with timer("clients_evaluate"):
            evals = [_expect(r, ClientEvaluation) for r in
                     transport.broadcast(LATENT_EVALUATE, task, "edge: classify local test split")]
    finally:
        service.stop()
    out = summarize_latent(fleet, uploads, evals, status, classifier, service.address)
    out["server_mode"], out["server_pid"] = service.mode, service.pid
    out["pretrained"] = pretrained
    return out


def _expect(reply: Any, cls: type) -> Any:
    """A transport's reply, checked to be the record the task asks for."""
    if not isinstance(reply, cls):
        raise FleetError(f"reply: got {type(reply).__name__}, must be a {cls.__name__}")
    return reply


def summarize_latent(fleet: FleetConfig, uploads: Sequence[ClientUpload | RequantizedUpload],
                     evals: Sequence[ClientEvaluation], status: dict, classifier: dict, address: str) -> dict[str, Any]:
    """Per-client rows and fleet aggregates (sample-weighted accuracy with spread, bytes, ratios).
    A row is the client's reply in its plain form (its scalar fields, timings, events and labels)
    beside its evaluation and what the service stored."""
    ev = {e.client_id: e.evaluation for e in evals}
    clients = []
    for up in sorted(uploads, key=lambda u: u.partition_id):
        plain = up.to_dict()
        e = ev.get(up.client_id)
        stored = status["clients"].get(up.client_id, {})
        clients.append({**{k: v for k, v in plain.items() if not isinstance(v, (dict, list))},
                        "timings": plain.get("timings", {}),
                        "events": plain.get("events", {}), "labels": plain.get("labels", []),
                        "n_test": e.n_test if e else 0, "correct": e.correct if e else 0,
                        "accuracy": float(e.accuracy) if e else float("nan"),
                        "stored_rows": int(stored.get("rows", 0)),
                        "stored_anchor_rows": int(stored.get("anchor_rows", 0))})
    n_test = sum(c["n_test"] for c in clients)
    correct = sum(c["correct"] for c in clients)
    rows = sum(u.wire.rows for u in uploads)
    up_bytes = sum(u.wire.wire_bytes or 0 for u in uploads)
    raw = sum(u.wire.raw_bytes for u in uploads)
    mse = [float(u.recon_mse) for u in uploads if u.recon_mse is not None]
    first = min(uploads, key=lambda u: u.partition_id) if uploads else None
    edge = fleet.edge_config
    return {
        "server_address": address,
        "accuracy": correct / n_test if n_test else float("nan"),
        "accuracy_spread": spread([c["accuracy"] for c in clients]),
        "n_test": n_test,
        "rows_sent": rows,
        "rows_stored": int(status["total_rows"]),
        "store_matches": int(status["total_rows"]) == rows and all(
            c["stored_rows"] == int(c.get("rows", -1)) for c in clients),
        "bytes_up": up_bytes,                   # training latents + anchor latents, with framing
        "anchor_bytes_up": sum(u.anchor_wire_bytes for u in uploads),
        # The downlink is the pretrained initialization as it crossed the wire in each client's train
        # message (0 with a seeded one), plus Register/Upload acks (tens of bytes per client, not
        # counted); Classify traffic at evaluation time is inference, not training communication.
        "bytes_down": sum(u.init_wire_bytes for u in uploads),
        "raw_bytes": raw,
        "compression_pixels_per_latent": float(first.wire.compression_pixels) if first else 0.0,
        "compression_raw_over_wire": raw / up_bytes if up_bytes else float("nan"),
        "bytes_per_sample": up_bytes / rows if rows else float("nan"),
        "recon_mse": float(np.mean(mse)) if mse else float("nan"),
        "latent_dim": edge.model.latent_dim,
        "bits": edge.wire.bits,
        "classifier": classifier,
        "defense": defense_summary(uploads),
        "clients": clients,
    }


def defense_summary(uploads: Sequence[ClientUpload | RequantizedUpload]) -> dict[str, Any] | None:
    """The edge defense the clients applied ([edge.defense]) with epsilon per released row; None without one.
    Every client runs the same config, so the settings and epsilon are one; the clipped share is a mean."""
    ds = [u.defense for u in uploads if u.defense is not None]
    if not ds:
        return None
    return {**ds[0].to_dict(), "clipped_share": float(np.mean([d.clipped_share for d in ds])),
            "row_norm_median": float(np.median([d.row_norm_median for d in ds])), "clients": len(ds)}


def run_fedavg(grid: Any, fleet: FleetConfig, timer: PhaseTimer) -> dict[str, Any]:
    """The FedAvg baseline through Flower's FedAvg strategy on the same partitions."""
    edge_epochs = _edge_epochs(fleet)
    rounds = fleet.fedavg_rounds(edge_epochs)
    ds = load_dataset(fleet.dataset)
    model, is_analog = fedavg_model(fleet, int(ds.pixels), int(ds.num_classes))
    init = get_arrays(model)
    names = list(init)
    n_params = int(sum(a.size for a in init.values()))
    strategy = make_strategy(fleet.num_clients, fleet.fedavg.fraction_train)
    cfg = ConfigRecord({"fleet-json": json.dumps(fleet.to_dict()), "array-names": json.dumps(names)})
    with timer("fedavg_rounds"):
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord([init[k] for k in names]),
                                num_rounds=rounds, train_config=cfg, evaluate_config=cfg)
    curve = []
    down_per_round = up_per_round = 0
    if rounds:
        down_per_round = strategy.bytes_down // rounds
        up_per_round = strategy.bytes_up // rounds
    for r in sorted(result.evaluate_metrics_clientapp):
        curve.append({"round": r, "accuracy": float(result.evaluate_metrics_clientapp[r]["accuracy"]),
                      "bytes_total": (down_per_round + up_per_round) * r})
    last = strategy.rounds_log[-1]["clients"] if strategy.rounds_log else []
    clients = sorted(({"partition_id": int(c["partition_id"]), "n_test": int(c["num-examples"]),
                       "correct": int(c["correct"]), "accuracy": c["accuracy"]} for c in last),
                     key=lambda c: c["partition_id"])
    n_test = sum(c["n_test"] for c in clients)
    return {
        "rounds": rounds, "local_epochs": fleet.fedavg.local_epochs,
        "matched_budget": f"rounds x local_epochs = {rounds * fleet.fedavg.local_epochs} local passes "
                          f"(edge AE epochs = {edge_epochs})",
        "analog": is_analog, "params": n_params,
        "accuracy": sum(c["correct"] for c in clients) / n_test if n_test else float("nan"),
        "accuracy_spread": spread([c["accuracy"] for c in clients]),
        "n_test": n_test,
        "bytes_up": strategy.bytes_up, "bytes_down": strategy.bytes_down,
        "curve": curve, "clients": clients,
    }
