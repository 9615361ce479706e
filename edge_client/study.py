"""What latent precision costs: classifier accuracy on float vs 16/8/4-bit latents.

Trains one (digital or analog) autoencoder on a dataset's train split, encodes train and test,
quantizes both as an edge device would (the test latents with the train scale), and fits the same
seeded classifier (standardized logistic regression) on each precision. Run:

    python -m edge_client.study --dataset mnist5k --latent-dim 32 --epochs 5 --out runs/quant_study
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import analog

from .autoencoder import build_autoencoder
from .codec import QMAX, quantize_latents, wire_report
from .data import load_dataset, split_train_test
from .training import encode, train_autoencoder


def _fit_eval(z_tr: np.ndarray, y_tr: np.ndarray, z_te: np.ndarray, y_te: np.ndarray, seed: int) -> float:
    # sklearn and matplotlib on use (start-up time): each costs more to import than this module
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, tol=1e-3, random_state=seed))
    clf.fit(z_tr, y_tr)
    return float(clf.score(z_te, y_te))


def quantization_study(dataset: str = "mnist5k", latent_dim: int = 32, bits_list=(32, 16, 8, 4),
                       epochs: int = 5, batch_size: int = 16, lr: float = 0.01, seed: int = 0,
                       test_fraction: float = 0.2, per_feature_scale: bool = False, tile_config=None,
                       repeats: int = 3, subset: int = 0, progress: bool = False) -> dict:
    """Accuracy (mean over `repeats` rounding seeds) and bytes per sample for each precision.

    `subset` > 0 uses that many samples (seeded) instead of the whole dataset.
    """
    ds = load_dataset(dataset)
    pool = np.arange(len(ds))
    if subset and subset < len(ds):  # a seeded random subset, for quick runs
        pool = np.sort(np.random.default_rng(seed).choice(pool, subset, replace=False))
    tr, te = split_train_test(pool, ds.y, test_fraction, seed=seed)
    torch.manual_seed(seed)
    model = build_autoencoder(ds.image_shape, latent_dim, "auto", tile_config=tile_config, init_seed=seed)
    t0 = time.perf_counter()
    res = train_autoencoder(model, ds.x[tr], ds.x[te], epochs=epochs, batch_size=batch_size, lr=lr,
                            seed=seed, progress=progress, desc="study AE")
    z_tr, z_te = encode(model, ds.x[tr]), encode(model, ds.x[te])
    out = {"dataset": dataset, "latent_dim": latent_dim, "n_train": int(tr.size), "n_test": int(te.size),
           "recon_mse": res.val_mse, "ae_seconds": time.perf_counter() - t0, "analog": res.analog,
           "per_feature_scale": per_feature_scale, "repeats": repeats, "results": {}}
    for bits in bits_list:
        accs = []
        for r in range(repeats if bits != 32 else 1):
            q_tr = quantize_latents(z_tr, bits, per_feature_scale, seed=seed + 100 * r + 1)
            scale = q_tr.scale_list() or None
            zt = z_te
            if scale is not None:
                lim = np.asarray(scale) * QMAX[bits]
                zt = np.clip(z_te, -lim, lim)
            q_te = quantize_latents(zt, bits, scale=scale, seed=seed + 100 * r + 2)
            accs.append(_fit_eval(q_tr.dequantize(), ds.y[tr], q_te.dequantize(), ds.y[te], seed))
        w = wire_report(int(tr.size), latent_dim, bits, ds.pixels)
        out["results"][str(bits)] = {"accuracy": float(np.mean(accs)), "accuracy_runs": accs,
                                     "bytes_per_sample": w["bytes_per_sample"],
                                     "compression_bytes": w["compression_bytes"]}
    base = out["results"].get("32", {}).get("accuracy")
    if base is not None:
        for v in out["results"].values():
            v["cost_points"] = 100.0 * (base - v["accuracy"])
    return out


def format_study(res: dict) -> str:
    lines = [f"{res['dataset']}: latent_dim {res['latent_dim']}, {res['n_train']} train / {res['n_test']} test, "
             f"recon MSE {res['recon_mse']:.4f}, {'analog' if res['analog'] else 'digital'} AE",
             f"{'bits':>5} {'accuracy':>9} {'cost (pts)':>10} {'bytes/sample':>13} {'raw/payload':>12}"]
    for bits, v in res["results"].items():
        lines.append(f"{bits:>5} {v['accuracy']:>9.4f} {v.get('cost_points', 0.0):>10.2f} "
                     f"{v['bytes_per_sample']:>13.2f} {v['compression_bytes']:>11.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_client.study", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--per-feature-scale", action="store_true")
    p.add_argument("--subset", type=int, default=0, help="use this many samples (0 = all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--analog-preset", help="train the AE on this analog preset (default: digital)")
    p.add_argument("--out", help="directory for report.json and a bar plot")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    tile = None
    if args.analog_preset:
        tile = analog.presets.tile_config(args.analog_preset)
    res = quantization_study(args.dataset, args.latent_dim, epochs=args.epochs, seed=args.seed,
                             repeats=args.repeats, per_feature_scale=args.per_feature_scale,
                             subset=args.subset, tile_config=tile, batch_size=args.batch_size, lr=args.lr,
                             progress=True)
    print(format_study(res))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(res, indent=2))
        import matplotlib  # on use (start-up time); Agg chosen before pyplot loads

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        bits = list(res["results"])
        fig, ax = plt.subplots(figsize=(4.5, 3))
        ax.bar(bits, [100 * res["results"][b]["accuracy"] for b in bits], color="#4477aa")
        ax.set_xlabel("latent bits on the wire")
        ax.set_ylabel("classifier accuracy (%)")
        lo = min(100 * res["results"][b]["accuracy"] for b in bits)
        ax.set_ylim(max(0, lo - 5), 100)
        ax.set_title(f"{res['dataset']}, latent_dim {res['latent_dim']}")
        fig.tight_layout()
        fig.savefig(out / "accuracy_vs_bits.png", dpi=120)
        print(f"wrote {out / 'report.json'} and {out / 'accuracy_vs_bits.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
