"""analog.rounding: stochastic rounding is unbiased, fixed point saturates, errors name the field."""
import pytest
import torch

from analog.rounding import fixed_point_range, quantize_fixed, stochastic_round


def test_stochastic_round_is_unbiased_and_lands_on_neighbouring_grid_points():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([0.3, -1.7, 2.05, 0.0, 5.0]).repeat(40000, 1)
    step = 0.5
    r = stochastic_round(x, step, g)
    k = r / step
    assert torch.equal(k, torch.round(k))                                   # on the grid
    assert bool(((r - x).abs() < step).all())                               # a neighbour of x
    mean = r.mean(0)
    stderr = step / 2 / 200                                                 # <= step/2 / sqrt(40000)
    assert torch.allclose(mean, x[0], atol=4 * stderr)
    assert torch.equal(r[:, 3], torch.zeros(40000)) and torch.equal(r[:, 4], torch.full((40000,), 5.0))
    # probability of rounding up is the fraction: 0.3 / 0.5 -> 0.6
    assert abs((r[:, 0] == 0.5).float().mean().item() - 0.6) < 0.01


def test_nearest_is_biased_where_stochastic_is_not():
    g = torch.Generator().manual_seed(1)
    x = torch.full((100000,), 0.2)                    # below half a step: nearest always gives 0
    assert quantize_fixed(x, 2, 0, mode="nearest").sum() == 0
    assert abs(quantize_fixed(x, 2, 0, mode="stochastic", generator=g).mean().item() - 0.2) < 0.01


def test_tensor_step_and_generator_reproducibility():
    x = torch.randn(1000, 3)
    step = torch.tensor([0.1, 0.5, 2.0])
    a = stochastic_round(x, step, torch.Generator().manual_seed(3))
    b = stochastic_round(x, step, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert bool(((a - x).abs() < step).all())


def test_quantize_fixed_grid_and_saturation():
    step, low, high = fixed_point_range(4, 3)            # <4 int bits incl. sign, 3 frac bits>
    assert (step, low, high) == (0.125, -8.0, 7.875)
    x = torch.tensor([100.0, -100.0, 1.06, -0.06])
    q = quantize_fixed(x, 4, 3, mode="nearest")
    assert torch.equal(q, torch.tensor([7.875, -8.0, 1.0, -0.0]))
    qs = quantize_fixed(x.repeat(1000, 1), 4, 3, generator=torch.Generator().manual_seed(0))
    assert qs[:, 0].eq(7.875).all() and qs[:, 1].eq(-8.0).all()
    assert set(qs[:, 2].tolist()) <= {1.0, 1.125}


@pytest.mark.parametrize("call, field", [
    (lambda: stochastic_round(torch.ones(2), 0.0), "step"),
    (lambda: stochastic_round(torch.ones(2), torch.tensor([1.0, -1.0])), "step"),
    (lambda: quantize_fixed(torch.ones(2), 0, 4), "int_bits"),
    (lambda: quantize_fixed(torch.ones(2), 4, -1), "frac_bits"),
    (lambda: quantize_fixed(torch.ones(2), 4, 4, mode="up"), "mode"),
])
def test_invalid_arguments_name_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()
