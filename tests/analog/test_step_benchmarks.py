"""The step benchmarks' instruments: analog_step.py's counts of the random numbers a training step
draws and of the ops it dispatches (the floor figures the README quotes must count every draw and
every op, once, and nothing else), and step_phases.py's timer (each phase's time under the phases
it runs inside, the methods restored)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import analog_step  # noqa: E402
import step_phases  # noqa: E402

import analog  # noqa: E402
from analog import algorithms  # noqa: E402
from analog.pulsed import PulsedArray  # noqa: E402


def test_counts_every_draw_once_and_ignores_other_ops():
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        torch.randn(3, 4, generator=g)
        torch.rand(5, generator=g)
        torch.empty(7).normal_(generator=g)
        torch.randint(0, 4, (9,), generator=g)          # not a uniform or Gaussian draw
        torch.ones(11).mul_(2.0)

    assert analog_step.random_draws(step) == {"normal": 19, "uniform": 5, "calls": 3}


def test_counts_every_dispatched_op_of_a_step_with_its_draws():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(4)

    def step() -> None:
        torch.randn(3, generator=g)            # 1 op
        y = x.view(2, 2)                        # 1 (a view is dispatched too)
        y.mul_(2.0).add_(1.0)                   # 2
        torch.rand(2, generator=g) < 0.5        # 2

    draws, ops = analog_step.step_counts(step)
    assert draws == {"normal": 3, "uniform": 2, "calls": 2}
    assert ops == 6
    layer = analog.AnalogLinear(20, 8, bias=False, config=analog.TileConfig(seed=0))
    digital = torch.nn.Linear(20, 8, bias=False)
    inputs = torch.rand(6, 20)
    with torch.no_grad():
        _, analog_ops = analog_step.step_counts(lambda: layer(inputs))
        _, digital_ops = analog_step.step_counts(lambda: digital(inputs))
    assert analog_ops > 3 * digital_ops > 0     # the periphery: DAC, noise, ADC, saturation check


def test_an_analog_mvm_draws_one_gaussian_per_output_and_a_digital_one_none():
    x = torch.rand(6, 20)
    layer = analog.AnalogLinear(20, 8, bias=False, config=analog.TileConfig(seed=0))
    digital = torch.nn.Linear(20, 8, bias=False)
    with torch.no_grad():
        assert analog_step.random_draws(lambda: layer(x))["normal"] == 6 * 8     # output noise
        assert analog_step.random_draws(lambda: digital(x)) == {"normal": 0, "uniform": 0, "calls": 0}


def test_phase_timer_nests_a_transfers_pulses_under_it_and_restores_the_methods():
    cfg = analog.TileConfig(algorithm=algorithms.TikiTaka(), seed=0)
    tile = analog.AnalogTile(16, 12, cfg, seed=0)
    g = torch.Generator().manual_seed(0)
    x, d = torch.rand(4, 12, generator=g), torch.randn(4, 16, generator=g)
    original = PulsedArray.__dict__["pulse_devices"]
    timer = step_phases.PhaseTimer()
    with timer:
        tile.update(x, d, 0.5)
    assert PulsedArray.__dict__["pulse_devices"] is original
    s = timer.seconds
    assert {"update", "update/coincidence count", "update/transfer"} <= set(s)
    assert "update/transfer/device pulses" in s and "transfer" not in s and "device pulses" not in s
    assert s["update"] > s["update/coincidence count"] + s["update/transfer"]
    assert s["update/transfer"] > s["update/transfer/device pulses"] > 0
