"""`python -m analog.demo`: a small MLP learns sklearn's load_digits on analog tiles.

Trains the same 64-64-10 MLP (same seed, same initial weights) with plain torch SGD, on
near-ideal analog tiles, on the default noisy config (reference ConstantStep device, 7/9-bit
periphery, output noise 0.06) and on the reference SoftBounds device, and prints a table of test
accuracies (+ JSON with --json). SoftBounds shows Analog SGD's bias: its asymmetric steps pull
every weight towards the symmetric point 0, which small hidden-layer gradients cannot resist.
The last row maps the weights near that point (preset "softbounds-mapped": weight mapping with
omega 0.05, where the asymmetry is weak), which recovers most of the accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

import analog


def load_digits_split(seed: int = 0, test_fraction: float = 0.25) -> tuple[torch.Tensor, ...]:
    """load_digits scaled to [0, 1], stratified train/test split (seeded)."""
    # sklearn on use (start-up time): it costs more to import than this whole module
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.int64)
    idx_tr, idx_te = train_test_split(torch.arange(len(y)).numpy(), test_size=test_fraction,
                                      random_state=seed, stratify=y.numpy())
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


def make_mlp(hidden: int = 64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.Sigmoid(), nn.Linear(hidden, 10))


def train_eval(model: nn.Module, data: tuple[torch.Tensor, ...], epochs: int = 15, batch_size: int = 10,
               lr: float = 0.1, seed: int = 0, analog_opt: bool = True, progress: bool = False) -> dict[str, Any]:
    """Mini-batch SGD on cross-entropy; returns test accuracy and seconds."""
    x_tr, y_tr, x_te, y_te = data
    opt = (analog.AnalogOptimizer(model.parameters(), lr=lr) if analog_opt
           else torch.optim.SGD(model.parameters(), lr=lr))
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    epochs_iter = range(epochs)
    if progress:
        epochs_iter = tqdm(epochs_iter, desc="epochs", leave=False)
    for _ in epochs_iter:
        model.train()
        perm = torch.randperm(len(y_tr), generator=gen)
        for i in range(0, len(perm), batch_size):
            b = perm[i:i + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_tr[b]), y_tr[b]).backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        acc = (model(x_te).argmax(1) == y_te).float().mean().item()
    return {"test_accuracy": acc, "train_seconds": round(seconds, 2)}


def near_ideal_config(seed: int = 0) -> Any:
    cfg = analog.presets.tile_config("near-ideal")
    return cfg.replace(seed=seed)


def run(epochs: int = 15, seed: int = 0, progress: bool = True) -> list[dict[str, Any]]:
    torch.set_num_threads(1)  # 2 shared cores: one thread avoids oversubscription stalls
    data = load_digits_split(seed)
    rows = []
    digital = make_mlp(seed=seed)
    rows.append({"model": "digital (torch SGD)", **train_eval(digital, data, epochs, seed=seed, analog_opt=False,
                                                              progress=progress)})
    for name, cfg in (("analog near-ideal (ConstantStep 5e-4, ideal I/O)", near_ideal_config(seed)),
                      ("analog default (ConstantStep, 7/9 bit, noise)", analog.TileConfig(seed=seed)),
                      ("analog SoftBounds +-0.6 (Analog SGD bias)",
                       analog.presets.tile_config("softbounds").replace(seed=seed)),
                      ("analog SoftBounds, mapped (omega 0.05)",
                       analog.presets.tile_config("softbounds-mapped").replace(seed=seed))):
        model = analog.convert_to_analog(make_mlp(seed=seed), cfg)
        rows.append({"model": name, **train_eval(model, data, epochs, seed=seed, progress=progress)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analog.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs: got {args.epochs}, must be >= 1")
    rows = run(args.epochs, args.seed)
    width = max(len(r["model"]) for r in rows)
    print(f"{'model':<{width}}  test acc  train s")
    for r in rows:
        print(f"{r['model']:<{width}}  {r['test_accuracy']:8.3f}  {r['train_seconds']:7.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"dataset": "sklearn load_digits", "epochs": args.epochs, "seed": args.seed, "results": rows},
                      fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
