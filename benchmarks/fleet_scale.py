"""How a simulated fleet's wall time and memory grow with the number of clients.

    .venv/bin/python benchmarks/fleet_scale.py [--clients 8 100 500] [--out benchmarks/fleet_scale.json]

Each point is one `analog-edge fleet` run on Flower's simulation runtime (flower-superlink
--simulation + flwr run, Ray with one CPU per virtual client, `--cpus` CPUs) with the same work
per client, so cost should grow linearly: MNIST 5k, every client capped at `--samples` images
(`[edge] max_samples`; 80% train, 20% its local test split), one analog autoencoder epoch
(Tiki-Taka on ReRAM soft bounds, d=32, 8-bit latents), then the server classifier on all stored
latents and every client's evaluation. Memory: every 0.5 s the proportional set size (PSS, shared
pages split between the processes that map them) of this process and every process it started
(SuperLink, flwr-simulation, Ray's daemons and workers, the latent service) is summed; "peak
growth" is the peak minus the sum before the run. Writes the JSON and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.config import FleetConfig  # noqa: E402
from fleet.processes import family  # noqa: E402
from fleet.flower.simulation import run_fleet  # noqa: E402


def fleet_config(clients: int, samples: int, cpus: int, seed: int) -> FleetConfig:
    return FleetConfig.from_dict({
        "fleet": {"name": f"scale-{clients}", "dataset": "mnist5k", "num_clients": clients, "seed": seed,
                  "backend": "ray", "cpus": cpus},
        "analog": {"device": {"type": "ReRAMSoftBounds"},
                   "algorithm": {"type": "TikiTaka", "transfer_lr": 0.3, "columns_per_transfer": 4},
                   "forward": {"out_noise": 0.02}},
        "edge": {"model": {"latent_dim": 32, "autoencoder": "conv"},
                 "wire": {"bits": 8},
                 "training": {"epochs": 1, "batch_size": 8, "lr": 0.007},
                 "data": {"max_samples": samples}},
        "classifier": {"hidden": [128], "epochs": 10, "batch_size": 64, "lr": 0.05},
    })


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_pss_mib() -> float:
    """PSS of this process and all it started (descendants, and sessions they lead)."""
    return sum(_pss_kib(p) for p in family([os.getpid()])) / 1024.0


class PeakSampler:
    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s, self.peak, self.samples = period_s, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss_mib())
            self.samples += 1
            self._stop.wait(self.period_s)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write(args: argparse.Namespace, points: list[dict]) -> None:
    first = points[0]
    for p in points:
        p["wall_ratio_vs_first"] = p["wall_s"] / first["wall_s"]
        p["clients_ratio_vs_first"] = p["clients"] / first["clients"]
        p["growth_ratio_vs_first"] = p["peak_growth_mib"] / first["peak_growth_mib"]
    result = {"command": "python benchmarks/fleet_scale.py " + " ".join(sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_avg_at_write": os.getloadavg()},
              "config": {"dataset": "mnist5k", "samples_per_client": args.samples, "ray_cpus": args.cpus,
                         "edge_epochs": 1, "classifier_epochs": 10, "seed": args.seed},
              "points": points}
    Path(args.out).write_text(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[8, 100, 500])
    ap.add_argument("--samples", type=int, default=10, help="images per client (default 10)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs Ray may use (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "fleet_scale.json"))
    args = ap.parse_args()
    points = []
    for n in args.clients:
        fleet = fleet_config(n, args.samples, args.cpus, args.seed)
        with tempfile.TemporaryDirectory(prefix=f"ae-scale-{n}-") as tmp:
            base = tree_pss_mib()
            t0 = time.perf_counter()
            with PeakSampler() as sampler:
                report = run_fleet(fleet, tmp)
            wall = time.perf_counter() - t0
        lat = report["latent"]
        point = {"clients": n, "wall_s": wall, "wall_s_per_client": wall / n,
                 "baseline_pss_mib": base, "peak_pss_mib": sampler.peak, "peak_growth_mib": sampler.peak - base,
                 "memory_samples": sampler.samples, "phases_s": report["timings_s"],
                 "accuracy": lat["accuracy"], "rows_sent": lat["rows_sent"], "rows_stored": lat["rows_stored"],
                 "store_matches": lat["store_matches"], "bytes_up": lat["bytes_up"]}
        points.append(point)
        write(args, points)                      # after every point: a long run keeps what it measured
        print(f"{n:>5} clients: {wall:7.1f} s wall ({wall / n:.2f} s/client), peak PSS {sampler.peak:7.0f} MiB "
              f"(+{sampler.peak - base:.0f}), rows {lat['rows_stored']}/{lat['rows_sent']}, "
              f"accuracy {lat['accuracy']:.3f}", flush=True)
    write(args, points)
    print(f"{'clients':>8} {'wall s':>8} {'s/client':>9} {'peak MiB':>9} {'growth MiB':>11} {'rows':>7}")
    for p in points:
        print(f"{p['clients']:>8} {p['wall_s']:>8.1f} {p['wall_s_per_client']:>9.2f} {p['peak_pss_mib']:>9.0f} "
              f"{p['peak_growth_mib']:>11.0f} {p['rows_stored']:>7}")
    print(f"json: {args.out}")


if __name__ == "__main__":
    main()
