"""Benchmark: the server's digital pretraining (alignment "pretrained") at different torch thread counts.

Why: `make demo` spent 125 s in this phase under Flower's simulation against 33-40 s in-process; the
ServerApp ran it on torch's default thread count (one per core) beside the clients and Flower's/Ray's
processes. This times the same call (`edge_client.pretrain.pretrain_autoencoder` on the quickstart's
public set, its [edge] architecture and batch size) at each `--threads` value, alternating the values
within every repeat so the ratios compare figures taken seconds apart; reported: the median over
repeats of wall seconds, process CPU seconds and the ratio to the first thread count, plus the load
average at the start and the end (the machine may be shared).

    python benchmarks/pretrain_threads.py [--threads 1,2] [--epochs 3] [--repeats 3] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_client.pretrain import pretrain_autoencoder  # noqa: E402
from edge_client.runner import public_anchor_images  # noqa: E402
from fleet.config import FleetConfig  # noqa: E402


def run(config: Path, threads: list[int], epochs: int, repeats: int) -> dict:
    fleet = FleetConfig.from_toml(config)
    cfg = fleet.edge_config
    images = public_anchor_images(cfg)
    times: dict[int, list[tuple[float, float]]] = {t: [] for t in threads}
    load_start = os.getloadavg()
    for _ in range(repeats):
        for t in threads:
            torch.set_num_threads(t)
            t0, c0 = time.perf_counter(), time.process_time()
            pretrain_autoencoder(cfg, images, epochs, fleet.seed)
            times[t].append((time.perf_counter() - t0, time.process_time() - c0))
    base = [w for w, _ in times[threads[0]]]
    rows = []
    for t in threads:
        wall = [w for w, _ in times[t]]
        rows.append({"threads": t, "wall_s_median": statistics.median(wall),
                     "cpu_s_median": statistics.median(c for _, c in times[t]),
                     "ratio_to_first_median": statistics.median(w / b for w, b in zip(wall, base)),
                     "wall_s": wall})
    shown = config.resolve().relative_to(ROOT) if config.resolve().is_relative_to(ROOT) else config
    return {"config": str(shown), "public_images": int(images.shape[0]), "epochs": epochs, "repeats": repeats,
            "batch_size": cfg.training.batch_size, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "load_average_start": load_start, "load_average_end": os.getloadavg(), "rows": rows}


def _table(res: dict) -> str:
    lines = [f"pretraining, {res['public_images']} images x {res['epochs']} epochs, median of {res['repeats']} "
             f"(load average {res['load_average_start'][0]:.1f} -> {res['load_average_end'][0]:.1f})",
             "threads  wall s   cpu s   x first"]
    for r in res["rows"]:
        lines.append(f"{r['threads']:>7}  {r['wall_s_median']:6.1f}  {r['cpu_s_median']:6.1f}  "
                     f"{r['ratio_to_first_median']:7.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.toml"))
    parser.add_argument("--threads", default="1,2", help="comma list of torch thread counts (default 1,2)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        parser.error(f"--threads: got {args.threads!r}, must be a comma list of integers >= 1")
    if args.epochs < 1:
        parser.error(f"--epochs: got {args.epochs}, must be >= 1")
    if args.repeats < 1:
        parser.error(f"--repeats: got {args.repeats}, must be >= 1")
    res = run(Path(args.config), threads, args.epochs, args.repeats)
    print(_table(res))
    text = json.dumps(res, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
