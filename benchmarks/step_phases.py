"""Benchmark: where the time of one analog training step goes, phase by phase, timed in place.

benchmarks/analog_step.py says how much slower an analog step is than a digital one; this says where
that time is spent, so that a speed-up is aimed at a phase that matters. The simulator's phases are
timed inside real training steps of the same workloads (after ``--warmup`` steps; ``--steps`` steps
in every one of ``--repeats`` alternated repeats, the heap kept warm as in training): every tile's
forward and backward MVM, its update, and inside the update the pulsed update's coincidence count,
the device pulses and Tiki-Taka's transfers (with the pulses they write); for conv layers also
im2col / col2im. Each phase is wrapped with a wall-clock timer while it is measured (a few hundred ns
per call, next to calls of tens of us); the phases' times are medians over repeats, in us per step,
and their share of the median step. Why in place: an op called in isolation, on warm caches, takes a
half to a third of what it takes inside a step.

    python benchmarks/step_phases.py [--workloads mlp,conv] [--steps 50] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import analog_step  # noqa: E402
from analog.algorithms.tiki_taka import TikiTakaState  # noqa: E402
from analog.layers import ConvGeometry  # noqa: E402
from analog.pulsed import PulsedArray  # noqa: E402
from analog.tile import AnalogTile  # noqa: E402
from common.memory import keep_heap_warm  # noqa: E402

#: (phase, class, method); a phase called inside another is reported under the outer one's name,
#: e.g. "update/transfer/device pulses" for the pulses a Tiki-Taka transfer writes onto W
PHASES: tuple[tuple[str, type, str], ...] = (
    ("forward MVM", AnalogTile, "forward_mvm"),
    ("backward MVM", AnalogTile, "backward_mvm"),
    ("update", AnalogTile, "update"),
    ("coincidence count", PulsedArray, "coincidence_counts"),
    ("device pulses", PulsedArray, "pulse_devices"),
    ("transfer", TikiTakaState, "transfer"),
    ("im2col", ConvGeometry, "unfold"),
    ("col2im", ConvGeometry, "fold"),
)


class PhaseTimer:
    """While active, adds the wall time of every call of each phase's method to ``seconds[path]``,
    path being the phases it runs inside joined by "/" (a phase's own nested calls count once)."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self._stack: list[str] = []
        self._saved: list[tuple[type, str, Callable[..., Any]]] = []

    def __enter__(self) -> "PhaseTimer":
        for name, cls, attr in PHASES:
            orig = cls.__dict__[attr]
            self._saved.append((cls, attr, orig))
            setattr(cls, attr, self._timed(name, orig))
        return self

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        seconds, stack = self.seconds, self._stack

        def timed(*args: Any, **kwargs: Any) -> Any:
            if stack and stack[-1] == name:             # a nested call of the same phase
                return fn(*args, **kwargs)
            stack.append(name)
            path = "/".join(stack)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[path] += time.perf_counter() - start
                stack.pop()

        return timed

    def __exit__(self, *exc: Any) -> None:
        for cls, attr, orig in reversed(self._saved):
            setattr(cls, attr, orig)
        self._saved.clear()


def _order(path: str) -> list[int]:
    """Sort key: phases in PHASES order, each outer phase before the ones inside it."""
    names = [name for name, _, _ in PHASES]
    return [names.index(part) for part in path.split("/")]


def run_workload(key: str, steps: int, repeats: int, warmup: int) -> dict[str, Any]:
    """us per step of each phase for every analog config of the workload, and the digital step."""
    build, title = analog_step.BUILDERS[key]
    make, batches, loss_fn, lr, configs = build("batched")
    models = analog_step.build_models(make, configs, lr)
    for model, opt in models.values():
        analog_step.time_steps(model, opt, batches, loss_fn, warmup, 0)
    step_us: dict[str, list[float]] = {name: [] for name in models}
    phase_us: dict[str, dict[str, list[float]]] = {name: collections.defaultdict(list) for name in configs}
    for r in range(repeats):
        for name, (model, opt) in models.items():
            timer = PhaseTimer()
            with timer:
                wall, _ = analog_step.time_steps(model, opt, batches, loss_fn, steps, warmup + r * steps)
            step_us[name].append(wall * 1e3)
            if name in phase_us:
                for path, seconds in timer.seconds.items():
                    phase_us[name][path].append(seconds / steps * 1e6)
    row: dict[str, Any] = {"workload": title, "key": key, "steps": steps, "repeats": repeats,
                           "digital_step_us": round(statistics.median(step_us["digital"]), 1)}
    for name in configs:
        step = statistics.median(step_us[name])
        phases = {path: round(statistics.median(v + [0.0] * (repeats - len(v))), 1)
                  for path, v in sorted(phase_us[name].items(), key=lambda kv: _order(kv[0]))}
        outer = sum(v for phase, v in phases.items() if "/" not in phase)
        row[name] = {"step_us": round(step, 1), "phases_us": phases,
                     "share_of_step": {phase: round(v / step, 3) for phase, v in phases.items()},
                     "outside_the_phases_us": round(step - outer, 1)}
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'workload / tile':<52} {'phase':<32} {'us/step':>9} {'share':>7}"]
    for r in rows:
        lines.append(f"{r['workload']:<52} {'digital step':<32} {r['digital_step_us']:9.1f}")
        for name, v in r.items():
            if not isinstance(v, dict):
                continue
            lines.append(f"{'  ' + name:<52} {'analog step':<32} {v['step_us']:9.1f} {1.0:7.3f}")
            for phase, us in v["phases_us"].items():
                lines.append(f"{'':<52} {phase:<32} {us:9.1f} {v['share_of_step'][phase]:7.3f}")
            lines.append(f"{'':<52} {'(autograd, loss, optimizer)':<32} {v['outside_the_phases_us']:9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="mlp,conv", help="comma-separated subset of mlp,linear,conv")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per repeat (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated repeats (default 3)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    analog_step.require_at_least(parser, args, {"steps": 1, "repeats": 1, "threads": 1, "warmup": 0})
    keys = analog_step.parse_workloads(parser, args.workloads)
    torch.set_num_threads(args.threads)
    keep_heap_warm()                                     # as the project's training processes do
    rows = [run_workload(k, args.steps, args.repeats, args.warmup) for k in keys]
    print(_table(rows))
    result = {"workloads": rows, "threads": args.threads, "torch": torch.__version__,
              "command": "python benchmarks/step_phases.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
