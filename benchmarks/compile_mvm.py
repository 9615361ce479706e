"""Benchmark: does torch.compile pay for the noisy MVM on CPU? Eager vs compiled analog.noisy_mvm on the
MLP benchmark's first layer (batch 10, 784 -> 256, default IOConfig, seeded generator).

Reported: the compile time (first call), the graph breaks torch._dynamo finds, and the process CPU time
per call of each (best of --repeats blocks). Needs a C++ compiler (inductor); the simulator does not use
torch.compile.

    python benchmarks/compile_mvm.py [--calls 2000] [--repeats 5] [--json PATH] [--verbose]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import analog  # noqa: E402


def _per_call_us(fn, calls: int, repeats: int) -> float:
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed block (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks, best is reported (default 5)")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--verbose", action="store_true", help="show torch._dynamo's graph-break warnings")
    args = parser.parse_args(argv)
    for name in ("calls", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: got {getattr(args, name)}, must be >= 1")
    if not args.verbose:
        for name in ("torch._dynamo", "torch._inductor"):
            logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 784, generator=g) * (torch.rand(10, 784, generator=g) > 0.8)
    w = torch.randn(256, 784, generator=g) * 0.05
    io = analog.IOConfig()
    gen = torch.Generator().manual_seed(1)
    from torch import _dynamo
    breaks = _dynamo.explain(analog.noisy_mvm)(x, w, io, gen).graph_break_count
    compiled = torch.compile(analog.noisy_mvm)
    start = time.perf_counter()
    compiled(x, w, io, gen)
    compile_s = time.perf_counter() - start
    res = {"shape": "x (10, 784), weight (256, 784)", "io": io.to_dict(), "torch": torch.__version__,
           "graph_breaks": breaks, "compile_s": round(compile_s, 1),
           "eager_us": round(_per_call_us(lambda: analog.noisy_mvm(x, w, io, gen), args.calls, args.repeats), 1),
           "compiled_us": round(_per_call_us(lambda: compiled(x, w, io, gen), args.calls, args.repeats), 1)}
    print(f"graph breaks {res['graph_breaks']}, compile {res['compile_s']} s, eager {res['eager_us']} us/call, "
          f"compiled {res['compiled_us']} us/call")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
