"""Defining behaviour of MixedPrecision (analog/algorithms/mixed_precision.py): the gradient is
accumulated digitally and a device is pulsed only for the net change it has to make."""
from __future__ import annotations

import copy

import pytest
import torch

import analog
from analog import algorithms, devices
from analog.algorithms.mixed_precision import MixedPrecisionState

IDEAL_IO = analog.IOConfig.ideal()


def _clean(**kw):
    """ConstantStep without variation or noise: one pulse moves a weight by exactly dw_min."""
    base = dict(dw_min=0.01, w_max=1.0, w_min=-1.0, dw_min_dtod=0.0, dw_min_std=0.0, w_max_dtod=0.0,
                w_min_dtod=0.0, up_down_dtod=0.0)
    base.update(kw)
    return devices.ConstantStep(**base)


def _tile(algo, out=2, inp=3, device=None, seed=0):
    cfg = analog.TileConfig(device=device or _clean(), algorithm=algo, forward=IDEAL_IO, backward=IDEAL_IO,
                            seed=seed)
    return analog.AnalogTile(out, inp, cfg, seed=seed)


def test_pulses_fire_only_past_the_threshold_and_the_remainder_stays_in_chi():
    tile = _tile(algorithms.MixedPrecision())
    st = tile.algorithm_state
    assert isinstance(st, MixedPrecisionState)
    tile.set_weights(torch.zeros(2, 3))
    x = torch.tensor([[1.0, 0.0, 0.0]])
    d = torch.tensor([[-0.006, 0.025]])            # dW = -lr d^T x with lr 1: +0.6 and -2.5 steps
    tile.update(x, d, 1.0)
    w = tile.get_weights()
    assert w[0, 0] == 0.0                              # 0.6 dw_min: below one pulse, nothing fired
    assert torch.isclose(w[1, 0], torch.tensor(-0.02))  # 2 down pulses; 0.5 step left in chi
    assert torch.allclose(st.chi[:, 0], torch.tensor([0.6, -0.5]), atol=1e-5)
    tile.update(x, d, 1.0)                             # chi 1.2 -> one up pulse; -3.0 -> three down
    w = tile.get_weights()
    assert torch.isclose(w[0, 0], torch.tensor(0.01)) and torch.isclose(w[1, 0], torch.tensor(-0.05))
    assert torch.count_nonzero(w[:, 1:]) == 0 and st.pulses_fired == 6


def test_cancelling_gradients_fire_no_pulse_where_analog_sgd_pays_write_noise():
    noisy = devices.ReRAMSoftBounds()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    d = torch.randn(16, 4, generator=torch.Generator().manual_seed(1)) * 0.01
    start = torch.full((4, 8), 0.1)
    mp = _tile(algorithms.MixedPrecision(), out=4, inp=8, device=noisy)
    sgd = _tile(algorithms.AnalogSGD(), out=4, inp=8, device=noisy)
    for tile in (mp, sgd):
        tile.set_weights(start)
        tile.update(torch.cat([x, x]), torch.cat([d, -d]), 0.05)   # a batch whose gradient is exactly 0
    assert torch.equal(mp.get_weights(), start) and mp.algorithm_state.pulses_fired == 0
    assert (sgd.get_weights() - start).abs().mean() > 0.005   # its pulses do not cancel: c2c noise


def test_threshold_is_a_dead_zone_then_fires_the_whole_accumulated_count():
    tile = _tile(algorithms.MixedPrecision(threshold=3.0), out=1, inp=1)
    tile.set_weights(torch.zeros(1, 1))
    one = torch.ones(1, 1)
    tile.update(one, torch.full((1, 1), -0.025), 1.0)              # 2.5 steps: inside the dead zone
    tile.update(one, torch.full((1, 1), 0.02), 1.0)                # back to 0.5: nothing ever fired
    assert tile.get_weights()[0, 0] == 0.0 and tile.algorithm_state.pulses_fired == 0
    tile.update(one, torch.full((1, 1), -0.03), 1.0)               # 3.5 steps: 3 pulses at once
    assert torch.isclose(tile.get_weights()[0, 0], torch.tensor(0.03))
    assert torch.isclose(tile.algorithm_state.chi[0, 0], torch.tensor(0.5), atol=1e-5)


def test_max_pulses_caps_a_burst_and_program_clears_chi():
    tile = _tile(algorithms.MixedPrecision(max_pulses=3), out=1, inp=1)
    tile.set_weights(torch.zeros(1, 1))
    tile.update(torch.ones(1, 1), torch.full((1, 1), -0.1), 1.0)   # 10 steps wanted, 3 fired
    assert torch.isclose(tile.get_weights()[0, 0], torch.tensor(0.03))
    assert torch.isclose(tile.algorithm_state.chi[0, 0], torch.tensor(7.0))
    tile.set_weights(torch.full((1, 1), 0.2))
    assert tile.algorithm_state.chi.abs().sum() == 0 and tile.get_weights()[0, 0] == pytest.approx(0.2)


def test_ideal_device_is_plain_sgd():
    cfg = analog.TileConfig.ideal_digital(seed=0).replace(algorithm=algorithms.MixedPrecision())
    tile = analog.AnalogTile(3, 5, cfg, seed=0)
    w0 = torch.randn(3, 5)
    tile.set_weights(w0)
    x, d = torch.randn(4, 5), torch.randn(4, 3)
    tile.update(x, d, 0.1)
    assert torch.allclose(tile.get_weights(), w0 - 0.1 * d.t() @ x, atol=1e-6)


def test_fits_a_linear_map_on_reram_better_than_analog_sgd():
    """Least squares y = W* x on the noisy soft-bounds ReRAM device, same steps and lr: the net-change
    pulses leave less write noise than stochastic coincidences (seeded; relative weight error measured 0.13 vs 0.39)."""
    g = torch.Generator().manual_seed(0)
    w_true = (torch.rand(8, 16, generator=g) - 0.5) * 0.4
    errs = {}
    for name, algo in (("mp", algorithms.MixedPrecision()), ("sgd", algorithms.AnalogSGD())):
        torch.manual_seed(0)
        cfg = analog.TileConfig(device=devices.ReRAMSoftBounds(), algorithm=algo, forward=IDEAL_IO,
                                backward=IDEAL_IO, seed=1)
        layer = analog.AnalogLinear(16, 8, bias=False, config=cfg)
        layer.set_weights(torch.zeros(8, 16))
        opt = analog.AnalogOptimizer(layer.parameters(), lr=0.02)
        gd = torch.Generator().manual_seed(2)
        for _ in range(150):
            x = torch.randn(8, 16, generator=gd)
            opt.zero_grad()
            ((layer(x) - x @ w_true.t()) ** 2).sum(dim=1).mean().backward()
            opt.step()
        errs[name] = float((layer.get_weights() - w_true).norm() / w_true.norm())
    assert errs["mp"] < 0.6 * errs["sgd"], errs


def test_config_round_trip_state_dict_and_validation_errors():
    algo = algorithms.MixedPrecision(threshold=2.0, max_pulses=4)
    cfg = analog.TileConfig(device=devices.ReRAMSoftBounds(), algorithm=algo, seed=0)
    d = cfg.to_dict()
    assert d["algorithm"] == {"type": "MixedPrecision", "threshold": 2.0, "max_pulses": 4}
    assert analog.TileConfig.from_dict(d) == cfg
    layer = analog.AnalogLinear(5, 3, config=cfg)
    opt = analog.AnalogOptimizer(layer.parameters(), lr=0.05)
    layer(torch.randn(4, 5)).sum().backward()
    opt.step()
    clone = analog.AnalogLinear(5, 3, config=cfg)
    clone.load_state_dict(layer.state_dict())
    st, cst = layer.tile.algorithm_state, clone.tile.algorithm_state
    assert torch.equal(cst.chi, st.chi) and torch.equal(clone.get_weights(), layer.get_weights())
    assert cst.pulses_fired == st.pulses_fired
    assert torch.equal(copy.deepcopy(layer).get_weights(), layer.get_weights())
    for data, message in [({"type": "MixedPrecision", "threshold": 0.5}, "algorithm.threshold: got 0.5"),
                          ({"type": "MixedPrecision", "max_pulses": 0}, "algorithm.max_pulses: got 0"),
                          ({"type": "MixedPrecision", "chi_bits": 8}, "algorithm.chi_bits: unknown key")]:
        with pytest.raises(ValueError, match=message):
            analog.TileConfig.from_dict({"algorithm": data})


@pytest.mark.parametrize("threshold, scale", [(1.0, 0.1), (4.0, 0.5), (1.0, 5.0)])
def test_sparse_threshold_update_matches_the_dense_reference_on_the_same_seed(threshold, scale):
    """update() finds the devices past the threshold first and works on those only; it must give the
    very weights, chi and pulse count of the whole-array formula (trunc(chi), the dead zone, chi -= n,
    apply_signed_pulses) on the same seed: few devices firing (sparse), and most (the dense path)."""
    device = devices.ReRAMSoftBounds()
    tile = _tile(algorithms.MixedPrecision(threshold=threshold, max_pulses=8), out=24, inp=40, device=device)
    ref = copy.deepcopy(tile)
    g = torch.Generator().manual_seed(1)
    x, d = torch.randn(6, 40, generator=g), torch.randn(6, 24, generator=g)
    lr = scale * device.dw_min
    st, rs = tile.algorithm_state, ref.algorithm_state
    fired_total, dense_steps = 0, 0
    for _ in range(5):
        fired = tile.update(x, d, lr)
        rs.chi.add_(d.t() @ x, alpha=-lr / rs.pulse_size)            # the whole-array reference
        n = torch.trunc(rs.chi).clamp_(-8, 8)
        if threshold > 1.0:
            n.masked_fill_(rs.chi.abs() < threshold, 0.0)
        rs.chi.sub_(n)
        dense_steps += int(torch.count_nonzero(n)) >= 0.25 * n.numel()
        assert fired == rs.array.apply_signed_pulses(n)
        fired_total += fired
        assert torch.equal(st.array.weight, rs.array.weight)
        assert torch.equal(st.chi, rs.chi)
    assert fired_total > 0 and st.pulses_fired == fired_total
    assert (dense_steps > 0) == (scale > 1)            # the large-lr case exercises the dense path
