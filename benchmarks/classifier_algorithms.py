"""The server's classifier alone, trained on a fleet run's stored latents with each training algorithm.

A proxy for the server side of a fleet run: the latents, anchor maps and held-out split are the run's
own (``<run>/server`` or wherever the run's latent store is); only the classifier's [analog] algorithm
changes. Prints held-out accuracy and training time per algorithm (train on a copy of the store: every
training publishes a checkpoint version).

    python benchmarks/classifier_algorithms.py --store runs/q/server --config configs/quickstart.toml \\
        --algorithm MixedPrecision --algorithm 'TTv2:transfer_lr=0.5' [--json out.json]

``--algorithm`` as in benchmarks/finetune_drift.py (``NAME[:key=value,...]``, a type or a preset).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from finetune_drift import parse_algorithm  # noqa: E402
from fleet.config import FleetConfig  # noqa: E402
from server.classifier.training import train_classifier  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a fleet run's latent store directory")
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.toml"))
    parser.add_argument("--algorithm", action="append", required=True, metavar="NAME[:k=v,...]")
    parser.add_argument("--lr", type=float, default=None, help="classifier lr (default: the config's)")
    parser.add_argument("--epochs", type=int, default=None, help="classifier epochs (default: the config's)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    fleet = FleetConfig.from_toml(args.config)
    out = []
    for text in args.algorithm:
        algo = parse_algorithm(text)
        server = dict(fleet.analog or {})
        server["algorithm"] = algo
        clf = dict(fleet.classifier)
        for key in ("lr", "epochs"):
            if getattr(args, key) is not None:
                clf[key] = getattr(args, key)
        cfg = fleet.with_overrides(analog=server, classifier=clf).classifier_config
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp) / "store"
            shutil.copytree(args.store, store, ignore=shutil.ignore_patterns("classifiers"))
            res = train_classifier(store, cfg)
        out.append({"algorithm": algo, "held_out_accuracy": res["held_out_accuracy"],
                    "train_accuracy": res["train_accuracy"], "seconds": res["seconds"]})
        print(f"{json.dumps(algo, separators=(',', ':')):<80} held-out {100 * res['held_out_accuracy']:.1f}%  "
              f"train {100 * res['train_accuracy']:.1f}%  {res['seconds']:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
