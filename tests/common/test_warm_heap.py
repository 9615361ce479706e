"""Training processes keep the heap warm (common.memory.keep_heap_warm, called by the fleet's client
tasks and the step benchmarks): an analog conv step frees and reallocates megabytes of patches and
noise, and glibc's default malloc hands them back to the OS, so every step page-faults them in again
(~3 us a page on these machines). With the heap warm a step must fault nothing in."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import torch
import analog_step
from common.memory import keep_heap_warm
if {warm}:
    assert keep_heap_warm()
torch.set_num_threads(1)
make, batches, loss_fn, lr, configs = analog_step.BUILDERS["conv"][0]("batched")
model, opt = analog_step.build_models(make, configs, lr)[next(iter(configs))]
# batches of changing sizes, as an epoch's last batch and the evaluation passes make them
sizes = [8, 3, 8, 6, 2, 8, 5, 8]
mixed = [(x[:k], y[:k]) for (x, y), k in zip(batches, sizes * 4)]
analog_step.time_steps(model, opt, mixed, loss_fn, 8, 0)
print(analog_step.page_faults_per_step(model, opt, mixed, loss_fn, 16, 8))
"""


def _faults_per_step(warm: bool) -> float:
    code = SCRIPT.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), warm=warm)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def test_a_warm_heap_faults_no_memory_in_during_analog_conv_steps():
    assert _faults_per_step(warm=True) <= 5
