"""benchmarks/analog_step.py's count of the random numbers a training step draws: the floor figure
the README quotes must count every draw, once, and nothing else."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import analog_step  # noqa: E402

import analog  # noqa: E402


def test_counts_every_draw_once_and_ignores_other_ops():
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        torch.randn(3, 4, generator=g)
        torch.rand(5, generator=g)
        torch.empty(7).normal_(generator=g)
        torch.randint(0, 4, (9,), generator=g)          # not a uniform or Gaussian draw
        torch.ones(11).mul_(2.0)

    assert analog_step.random_draws(step) == {"normal": 19, "uniform": 5, "calls": 3}


def test_an_analog_mvm_draws_one_gaussian_per_output_and_a_digital_one_none():
    x = torch.rand(6, 20)
    layer = analog.AnalogLinear(20, 8, bias=False, config=analog.TileConfig(seed=0))
    digital = torch.nn.Linear(20, 8, bias=False)
    with torch.no_grad():
        assert analog_step.random_draws(lambda: layer(x))["normal"] == 6 * 8     # output noise
        assert analog_step.random_draws(lambda: digital(x)) == {"normal": 0, "uniform": 0, "calls": 0}
