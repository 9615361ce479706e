"""Benchmark: what one training step dispatches -- torch ops, host syncs, pulses -- per tile config.

At batch 10 the analog MLP step of benchmarks/analog_step.py is bound by the number of small kernels
and their dispatch, not by arithmetic, so the op count is the figure a speed-up has to move. This
counts, over ``--steps`` steps of the same MLP workload (after ``--warmup`` steps, so every cache is
warm): ops dispatched per step (every aten op, views included, by TorchDispatchMode), host syncs per
step (``.item()`` and friends: ``aten._local_scalar_dense``), and per pulsed update the pulse-train
length BL and the devices it pulsed (Tiki-Taka's fast array keeps larger errors than Analog SGD's
array on this workload, so it pulses more devices per update: part of its cost is physics, not
overhead). Nothing here is timed.

    python benchmarks/step_ops.py [--steps 10] [--warmup 20] [--top 8] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import analog_step  # noqa: E402
from analog.pulsed import PulsedArray  # noqa: E402

SYNC_OP = "aten._local_scalar_dense"


class PulseLog:
    """Records (array shape, BL, devices pulsed) of every PulsedArray.pulse_update while active
    (devices pulsed: -1 when the update was dense)."""

    def __init__(self) -> None:
        self.rows: list[tuple[tuple[int, ...], int, int]] = []
        self._orig = PulsedArray.pulse_update

    def __enter__(self) -> "PulseLog":
        orig, rows = self._orig, self.rows

        def logged(array: PulsedArray, x: torch.Tensor, d: torch.Tensor, lr: float) -> Any:
            stats = orig(array, x, d, lr)
            touched = stats.touched()
            rows.append((tuple(array.weight.shape), int(stats.bl), -1 if touched is None else int(touched.numel())))
            return stats

        PulsedArray.pulse_update = logged  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        PulsedArray.pulse_update = self._orig  # type: ignore[method-assign]


def _median_or_none(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def count(steps: int, warmup: int, top: int) -> dict[str, Any]:
    """Ops, syncs and pulses per step of every model of the MLP workload (digital first)."""
    make, batches, loss_fn, lr, configs = analog_step.BUILDERS["mlp"][0]("batched")
    out: dict[str, Any] = {"workload": "MLP 784-256-128-10 sigmoid, batch 10, MNIST", "steps": steps,
                           "warmup": warmup, "models": {}}
    for name, (model, opt) in analog_step.build_models(make, configs, lr).items():
        for i in range(warmup):
            analog_step.train_step(model, opt, loss_fn, *batches[i % len(batches)])
        with PulseLog() as pulses, analog_step.StepCounter() as ops:
            for i in range(steps):
                analog_step.train_step(model, opt, loss_fn, *batches[(warmup + i) % len(batches)])
        c = ops.op_counts
        by_shape: dict[str, dict[str, Any]] = {}
        for shape, bl, touched in pulses.rows:
            entry = by_shape.setdefault("x".join(map(str, shape)), {"bl": [], "pulsed": []})
            entry["bl"].append(bl)
            entry["pulsed"].append(touched)
        out["models"][name] = {
            "ops_per_step": sum(c.values()) / steps,
            "syncs_per_step": c[SYNC_OP] / steps,
            "top_ops_per_step": {k: v / steps for k, v in c.most_common(top)},
            "updates": {shape: {"median_bl": statistics.median(e["bl"]),
                                "dense_updates": sum(1 for t in e["pulsed"] if t < 0),
                                "median_devices_pulsed": _median_or_none([t for t in e["pulsed"] if t >= 0])}
                        for shape, e in by_shape.items()},
        }
    out.update(torch=torch.__version__, threads=torch.get_num_threads())
    return out


def table(res: dict[str, Any]) -> str:
    lines = [f"{'tile':<10} {'ops/step':>9} {'x digital':>10} {'syncs/step':>11}  updates (array: median BL, "
             "median devices pulsed, dense updates)"]
    base = res["models"]["digital"]["ops_per_step"]
    for name, m in res["models"].items():
        ups = "; ".join(f"{s}: {u['median_bl']:g}, "
                        f"{'-' if u['median_devices_pulsed'] is None else format(u['median_devices_pulsed'], 'g')}, "
                        f"{u['dense_updates']}"
                        for s, u in m["updates"].items())
        lines.append(f"{name:<10} {m['ops_per_step']:9.1f} {m['ops_per_step'] / base:10.2f} "
                     f"{m['syncs_per_step']:11.1f}  {ups}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="counted steps (default 10)")
    p.add_argument("--warmup", type=int, default=20, help="steps before counting (default 20)")
    p.add_argument("--top", type=int, default=8, help="most frequent ops listed per model (default 8)")
    p.add_argument("--json", metavar="PATH", help="write the result here (default: print it)")
    args = p.parse_args(argv)
    analog_step.require_at_least(p, args, {"steps": 1, "warmup": 0, "top": 1})
    torch.set_num_threads(1)
    res = count(args.steps, args.warmup, args.top)
    print(table(res))
    text = json.dumps(res, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
