"""One fleet run, end to end: latent service up, clients through their phases, report written.

`run_fleet` is what `analog-edge fleet` calls. With the Ray backend it hands a ServerApp (a
closure over `run_on_grid`) and the module's ClientApp to `flwr.simulation.run_simulation`; with
the `local` backend the same phase logic drives the clients in-process. `run_on_grid` is also the
body of the `flwr run` ServerApp, so the deployment engine runs the identical phases.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fleet.config import FleetConfig


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
    from edge_client.config import EdgeConfig

    return EdgeConfig.from_dict(fleet.edge_dict(0)).epochs


def _describe_tile(tile: dict[str, Any] | None) -> dict[str, Any]:
    if tile is None:
        return {"mode": "digital"}
    dev = tile.get("device", {}) if isinstance(tile.get("device"), dict) else {"type": tile.get("device")}
    alg = tile.get("algorithm", {}) if isinstance(tile.get("algorithm"), dict) else {"type": tile.get("algorithm")}
    return {"mode": "analog", "device": dev.get("type", "default"), "algorithm": alg.get("type", "AnalogSGD"),
            "tile": tile}


def _spread(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"min": float("nan"), "max": float("nan"), "std": float("nan")}
    return {"min": float(a.min()), "max": float(a.max()), "std": float(a.std())}


def _fresh(out_dir: Path) -> None:
    """A rerun into the same folder starts from an empty store and fresh client state (only our
    own sub-folders are removed: a store has latents.sqlite3, client state lives in client-*)."""
    server, clients = out_dir / "server", out_dir / "clients"
    if server.is_dir() and (any(server.glob("latents.sqlite3*")) or not any(server.iterdir())):
        shutil.rmtree(server)
    if clients.is_dir() and all(p.name.startswith("client-") for p in clients.iterdir()):
        shutil.rmtree(clients)


def _check_partitions(fleet: FleetConfig, uploads: list[dict]) -> None:
    """Every node must hold a distinct partition of the same num_clients-way split."""
    from fleet.flower_apps import FleetError

    wrong = [u for u in uploads if int(u.get("num_partitions", fleet.num_clients)) != fleet.num_clients]
    if wrong:
        raise FleetError(f"node_config.num-partitions: got {wrong[0]['num_partitions']} on {wrong[0]['client_id']}, "
                         f"but fleet.num_clients is {fleet.num_clients}; start that many SuperNodes "
                         "(num-supernodes / --num-clients) with matching partitions")
    ids = sorted(int(u["partition_id"]) for u in uploads)
    if ids != list(range(fleet.num_clients)):
        raise FleetError(f"node_config.partition-id: got {ids}, must be each of 0..{fleet.num_clients - 1} once")


def run_latent(transport: Any, fleet: FleetConfig, out_dir: Path, timer: PhaseTimer,
               external: tuple[str, str] | None = None) -> dict[str, Any]:
    """Phases of the latent pipeline: service, train+upload, classifier, per-client evaluation.
    `external` = (address, admin_token) of a running service to use instead of starting one."""
    from fleet.service import LatentService

    clf = fleet.classifier_dict()
    _fresh(out_dir)
    with timer("start_service"):
        if external:
            service = LatentService.external(*external)
        else:
            service = LatentService(out_dir / "server", clf, fleet.server_mode)
    try:
        task = {"fleet": fleet.to_dict(), "server_address": service.address,
                "state_root": str(out_dir / "clients")}
        with timer("clients_train_upload"):
            uploads = transport.broadcast("train", task, "edge: train AE + upload")
        _check_partitions(fleet, uploads)
        with timer("server_status"):
            status = service.status()
        with timer("classifier_train"):
            classifier = service.train_classifier(clf)
        with timer("clients_evaluate"):
            evals = transport.broadcast("evaluate", task, "edge: classify local test split")
    finally:
        service.stop()
    out = summarize_latent(fleet, uploads, evals, status, classifier, service.address)
    out["server_mode"], out["server_pid"] = service.mode, service.pid
    return out


def summarize_latent(fleet: FleetConfig, uploads: list[dict], evals: list[dict], status: dict,
                     classifier: dict, address: str) -> dict[str, Any]:
    """Per-client rows and fleet aggregates (sample-weighted accuracy with spread, bytes, ratios)."""
    ev = {e["client_id"]: e for e in evals}
    clients = []
    for up in sorted(uploads, key=lambda u: u["partition_id"]):
        e = ev.get(up["client_id"], {})
        clients.append({**{k: v for k, v in up.items() if not isinstance(v, (dict, list))},
                        "timings": up.get("timings", {}),
                        "n_test": int(e.get("n_test", 0)), "correct": int(e.get("correct", 0)),
                        "accuracy": float(e.get("accuracy", float("nan"))),
                        "stored_rows": int(status["clients"].get(up["client_id"], {}).get("rows", 0))})
    n_test = sum(c["n_test"] for c in clients)
    correct = sum(c["correct"] for c in clients)
    rows = sum(int(c.get("rows", 0)) for c in clients)
    up_bytes = sum(int(c.get("wire_bytes", 0)) for c in clients)
    raw = sum(int(c.get("raw_bytes", 0)) for c in clients)
    mse = [float(c["recon_mse"]) for c in clients if c.get("recon_mse") is not None]
    edge = fleet.edge_dict(0)
    return {
        "server_address": address,
        "accuracy": correct / n_test if n_test else float("nan"),
        "accuracy_spread": _spread([c["accuracy"] for c in clients]),
        "n_test": n_test,
        "rows_sent": rows,
        "rows_stored": int(status["total_rows"]),
        "store_matches": int(status["total_rows"]) == rows and all(
            c["stored_rows"] == int(c.get("rows", -1)) for c in clients),
        "bytes_up": up_bytes,
        # Training needs no downlink beyond Register/Upload acks (tens of bytes per client, not
        # counted); Classify traffic at evaluation time is inference, not training communication.
        "bytes_down": None,
        "raw_bytes": raw,
        "compression_pixels_per_latent": float(clients[0].get("compression_pixels", 0.0)) if clients else 0.0,
        "compression_raw_over_wire": raw / up_bytes if up_bytes else float("nan"),
        "bytes_per_sample": up_bytes / rows if rows else float("nan"),
        "recon_mse": float(np.mean(mse)) if mse else float("nan"),
        "latent_dim": edge["latent_dim"] if "latent_dim" in edge else None,
        "bits": edge.get("bits"),
        "classifier": classifier,
        "clients": clients,
    }


def run_fedavg(grid: Any, fleet: FleetConfig, timer: PhaseTimer) -> dict[str, Any]:
    """The FedAvg baseline through Flower's FedAvg strategy on the same partitions."""
    from flwr.app import ArrayRecord, ConfigRecord

    from edge_client.data import load_dataset
    from fleet.client_tasks import fedavg_model
    from fleet.fedavg import get_arrays, make_strategy

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
        "accuracy_spread": _spread([c["accuracy"] for c in clients]),
        "n_test": n_test,
        "bytes_up": strategy.bytes_up, "bytes_down": strategy.bytes_down,
        "curve": curve, "clients": clients,
    }


def execute(fleet: FleetConfig, out_dir: Path, transport: Any, grid: Any = None,
            external: tuple[str, str] | None = None) -> dict[str, Any]:
    """All phases the config asks for, then the report files; returns the report dict."""
    from fleet import report as rep

    out_dir.mkdir(parents=True, exist_ok=True)
    rep.write_config(fleet, out_dir)
    timer = PhaseTimer()
    t0 = time.perf_counter()
    result: dict[str, Any] = {"name": fleet.name, "dataset": fleet.dataset, "num_clients": fleet.num_clients,
                              "partition": fleet.partition if fleet.partition == "iid" else f"dirichlet({fleet.alpha})",
                              "alignment": fleet.alignment, "digital": fleet.digital, "backend": fleet.backend,
                              "edge_side": _describe_tile(fleet.edge_dict(0).get("analog")),
                              "server_side": _describe_tile(fleet.classifier_dict().get("analog"))}
    if fleet.mode in ("latent", "both"):
        result["latent"] = run_latent(transport, fleet, out_dir, timer, external)
        if fleet.privacy.enabled:
            from fleet.privacy import run_privacy

            with timer("privacy"):
                result["privacy"] = ({"skipped": "an external latent service holds the latents"} if external
                                     else run_privacy(fleet, out_dir))
    if fleet.mode in ("fedavg", "both"):
        if grid is None:
            from fleet.flower_apps import FleetError

            raise FleetError("fleet.mode: fedavg runs through Flower's FedAvg strategy; "
                             "use backend = \"ray\" (or flwr run)")
        result["fedavg"] = run_fedavg(grid, fleet, timer)
    result["timings_s"] = {**timer.phases, "total": time.perf_counter() - t0}
    rep.write_report(result, out_dir)
    return result


def run_on_grid(grid: Any, fleet: FleetConfig, out_dir: Path,
                external: tuple[str, str] | None = None) -> dict[str, Any]:
    """The ServerApp body: Flower transport over the grid, then `execute`."""
    from fleet.flower_apps import FlowerTransport

    transport = FlowerTransport(grid, fleet.num_clients) if fleet.mode != "fedavg" else None
    return execute(fleet, out_dir, transport, grid, external)


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
        from fleet.flower_apps import LocalTransport

        return execute(fleet, out, LocalTransport(fleet.num_clients), external=external)
    return _simulate(fleet, out, external)


def _simulate(fleet: FleetConfig, out: Path, external: tuple[str, str] | None = None) -> dict[str, Any]:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")      # Ray forks while gRPC threads run: noisy INFO lines
    import logging

    if not os.environ.get("ANALOG_EDGE_FLWR_LOGS"):       # our own tqdm bars report progress
        logging.getLogger("flwr").setLevel(logging.WARNING)
    ray_tmp = tempfile.mkdtemp(prefix="ae-ray-")       # short path: Ray's socket names have a length limit
    old_tmp = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = ray_tmp
    sink: dict[str, Any] = {}
    errors: list[BaseException] = []

    def main(grid: Any, context: Any) -> None:
        try:
            sink["report"] = run_on_grid(grid, fleet, out, external)
        except BaseException as exc:  # surfaced below with its own message, not Flower's
            errors.append(exc)

    try:
        from flwr.simulation import run_simulation

        from fleet.flower_apps import client_app, make_server_app

        import warnings

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
        from fleet.flower_apps import FleetError

        raise FleetError("the Flower simulation ended without a report (see the log above)")
    return sink["report"]


def _shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - best effort: Flower normally shuts Ray down itself
        pass
