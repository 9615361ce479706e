"""Fine-tuning drift: how far each training algorithm moves a programmed pretrained encoder.

One fleet client's conv autoencoder (the config's [edge] and [edge.analog], client 0 of the config's
partition), started as the fleet starts it: the server's digital pretraining on the public images,
programmed onto the chip (programming noise included). The Tiki-Taka family programs the slow array
C only; the fast array P and the digital buffers start at zero. Per local epoch: ||C - C0|| / ||C0||
over all tiles (C0: the programmed weights; for MixedPrecision and Analog SGD C is the one array),
the pulses written to C (transfers for the Tiki-Taka family, updates otherwise) and the held-out
reconstruction MSE. What it is for: choosing learning rates, buffer granularity and chopper settings
on a proxy that takes seconds per epoch instead of a fleet run.

    python benchmarks/finetune_drift.py --config configs/quickstart.toml \\
        --algorithm MixedPrecision:threshold=4 --algorithm agad-reram-sb --algorithm 'AGAD:transfer_lr=0.5' \\
        [--epochs 5] [--lr 0.002] [--client 0] [--json out.json]

``--algorithm`` takes ``NAME[:key=value,...]``: NAME an algorithm type or an algorithm preset
(analog.algorithms.presets), the keys override its fields (values parsed as TOML scalars).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analog.algorithms import TikiTakaState  # noqa: E402
from analog.energy import counting  # noqa: E402
from analog.inference import program_weights  # noqa: E402
from edge_client.pretrain import pretrain_autoencoder  # noqa: E402
from edge_client.runner import build_client_autoencoder, client_data, client_seed, public_anchor_images  # noqa: E402
from edge_client.training import reconstruction_mse, train_autoencoder  # noqa: E402
from fleet.config import FleetConfig  # noqa: E402


def parse_algorithm(text: str) -> dict[str, Any]:
    """``NAME[:k=v,...]`` -> an [edge.analog] algorithm table (type or preset, with overrides)."""
    name, _, rest = text.partition(":")
    from analog.algorithms import ALGORITHMS
    from analog.algorithms.presets import ALGORITHM_PRESETS

    if name in ALGORITHMS:
        table: dict[str, Any] = {"type": name}
    elif name in ALGORITHM_PRESETS:
        table = {"preset": name}
    else:
        raise SystemExit(f"--algorithm: got {name!r}, must be one of "
                         f"{', '.join(sorted(ALGORITHMS) + sorted(ALGORITHM_PRESETS))}")
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        table[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
    return table


def _tiles(model: torch.nn.Module) -> list[Any]:
    from analog.layers import tile_of

    return [t for t in (tile_of(p) for p in model.parameters()) if t is not None]


def _slow(state: Any) -> torch.Tensor:
    return state.main.weight if isinstance(state, TikiTakaState) else state.effective_weight()


def measure(fleet: FleetConfig, algorithm: dict[str, Any], pretrained: dict[str, torch.Tensor], epochs: int,
            lr: float | None, client: int) -> dict[str, Any]:
    edge = dict(fleet.edge)
    edge["analog"] = {**edge.get("analog", {}), "algorithm": algorithm}
    if lr is not None:
        edge["training"] = {**edge.get("training", {}), "lr": lr}
    cfg = fleet.with_overrides(edge=edge).edge_config
    data = client_data(cfg, client, fleet.num_clients, fleet.alpha_or_none)
    seed = client_seed(cfg.seed, client)
    model = build_client_autoencoder(cfg, data.dataset.image_shape, seed)
    program_weights(model, pretrained, cfg.init.programming_model(), seed=seed)
    states = [t.algorithm_state for t in _tiles(model)]
    c0 = [_slow(s).detach().clone() for s in states]
    norm0 = torch.sqrt(sum((c ** 2).sum() for c in c0))
    tt = isinstance(states[0], TikiTakaState)
    rows = [{"epoch": 0, "drift": 0.0, "pulses_to_C": 0, "val_mse": reconstruction_mse(model, data.x_test)}]
    pulses = 0.0
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        with counting() as events:
            train_autoencoder(model, data.x_train, None, epochs=1, batch_size=cfg.training.batch_size,
                              lr=cfg.training.lr,
                              optimizer=cfg.training.optimizer, seed=seed + epoch, progress=False)
        tot = events.totals()
        pulses += tot.get("pulses_transfer" if tt else "pulses_update", 0.0)
        drift = torch.sqrt(sum(((_slow(s) - c) ** 2).sum() for s, c in zip(states, c0))) / norm0
        rows.append({"epoch": epoch, "drift": float(drift), "pulses_to_C": int(pulses),
                     "val_mse": reconstruction_mse(model, data.x_test)})
    return {"algorithm": algorithm, "lr": cfg.training.lr, "rows": rows, "devices": int(sum(c.numel() for c in c0)),
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.toml"))
    parser.add_argument("--algorithm", action="append", required=True, metavar="NAME[:k=v,...]")
    parser.add_argument("--epochs", type=int, default=None, help="local epochs (default: the config's)")
    parser.add_argument("--lr", type=float, default=None, help="edge lr (default: the config's)")
    parser.add_argument("--client", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    fleet = FleetConfig.from_toml(args.config)
    if args.seed is not None:
        fleet = fleet.with_overrides(seed=args.seed)
    algos = [parse_algorithm(a) for a in args.algorithm]
    cfg = fleet.edge_config
    pretrained, mse = pretrain_autoencoder(cfg, public_anchor_images(cfg), fleet.alignment.pretrain_epochs, fleet.seed)
    print(f"pretrained digitally: {fleet.alignment.pretrain_epochs} epochs on {cfg.public.size} public images, "
          f"MSE {mse:.4f}")
    epochs = args.epochs or cfg.training.epochs
    results = []
    print(f"{'algorithm':<60} {'epoch':>5} {'|C-C0|/|C0|':>12} {'pulses to C':>12} {'val MSE':>8}")
    for algo in algos:
        res = measure(fleet, algo, pretrained, epochs, args.lr, args.client)
        results.append(res)
        label = json.dumps(algo, separators=(",", ":"))[:60]
        for r in res["rows"]:
            print(f"{label:<60} {r['epoch']:5d} {r['drift']:12.3f} {r['pulses_to_C']:12d} {r['val_mse']:8.4f}",
                  flush=True)
            label = ""
    out = {"config": args.config, "seed": fleet.seed, "client": args.client, "epochs": epochs,
           "pretrain_mse": mse, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
