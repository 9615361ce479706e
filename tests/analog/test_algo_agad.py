"""Defining behaviour of AGAD (analog/algorithms/tiki_taka.py; Rasch et al., Nat. Commun. 15:7133, 2024)."""
from __future__ import annotations

import pytest
import torch

import analog
from analog import algorithms, devices
from analog.algorithms import AGADState

IDEAL_IO = analog.IOConfig.ideal()


def _clean(dev_cls=devices.SoftBounds, **kw):
    base = dict(dw_min=0.01, w_max=1.0, w_min=-1.0, dw_min_dtod=0.0, dw_min_std=0.0, w_max_dtod=0.0,
                w_min_dtod=0.0, up_down_dtod=0.0)
    base.update(kw)
    return dev_cls(**base)


def _state(algo, out=8, inp=6, device=None, seed=0):
    cfg = analog.TileConfig(device=device or _clean(), algorithm=algo, forward=IDEAL_IO, backward=IDEAL_IO,
                            update=analog.UpdateConfig(), seed=seed)
    return analog.AnalogTile(out, inp, cfg, seed=seed).algorithm_state


def _weight_error(algo, offset: float, steps: int = 1500, seed: int = 0) -> float:
    """Noisy linear regression to a random target W*, learned through the transfers alone (gamma 0),
    with P's reference R programmed ``offset`` away from P's symmetric point (0): ||W - W*|| / ||W*||."""
    st = _state(algo, seed=seed)
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(8, 6, generator=g) - 0.5) * 0.6
    st.reference.fill_(offset)
    st.program(torch.zeros(8, 6))                       # P starts at R, W at 0
    for _ in range(steps):
        x = torch.randn(4, 6, generator=g)
        d = x @ (st.effective_weight() - target).t() + 0.5 * torch.randn(4, 8, generator=g)
        st.update(x, d, 0.05)
    return float((st.main.weight - target).norm() / target.norm())


def test_agad_weight_error_does_not_grow_with_the_reference_offset_while_ttv2s_does():
    """Rasch et al. Fig. 3's shape: with R offset from P's symmetric point, TTv2 reads the offset
    P - R as gradient and writes it into W (P is pulled to its symmetric point by the noisy
    updates); AGAD's on-the-fly reference subtracts whatever P holds, so its error stays put."""
    kw = dict(gamma=0.0, transfer_lr=0.03, columns_per_transfer=6)
    ttv2 = {o: _weight_error(algorithms.TTv2(**kw), o) for o in (0.0, 0.3)}
    agad = {o: _weight_error(algorithms.AGAD(chop_probability=0.1, **kw), o) for o in (0.0, 0.3)}
    assert ttv2[0.3] > 1.6 * ttv2[0.0]                               # measured 0.33 -> 0.66
    assert agad[0.3] < 1.15 * agad[0.0]                              # measured 0.216 -> 0.215
    assert agad[0.3] < 0.5 * ttv2[0.3]
    assert agad[0.0] < 0.3                                           # and it learns the target


def test_constant_offset_of_p_writes_nothing_and_the_chopper_flips_every_period():
    dw = 0.01
    algo = algorithms.AGAD(gamma=0.0, transfer_lr=1.0, chop_probability=0.25, tail_weightening=4.0)
    assert algo.period == 4
    st = _state(algo, out=16, inp=1, device=_clean(devices.ConstantStep, dw_min=dw))
    assert isinstance(st, AGADState)
    st.main.program(torch.zeros(16, 1))
    st.fast.program(torch.full((16, 1), 3.0 * dw))                  # 3 pulses' worth of offset per read
    signs = []
    for _ in range(12):
        st.transfer()
        signs.append(float(st.chopper[0]))
    assert signs == [1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1]          # flips after every 4th read
    assert torch.count_nonzero(st.main.weight) == 0 and st.pulses_fired == 0
    # TTv2 on the same P writes the offset: 3 units per read, capped at 1 pulse
    tt = _state(algorithms.TTv2(gamma=0.0, transfer_lr=1.0), out=16, inp=1,
                device=_clean(devices.ConstantStep, dw_min=dw))
    tt.main.program(torch.zeros(16, 1))
    tt.fast.program(torch.full((16, 1), 3.0 * dw))
    for _ in range(12):
        tt.transfer()
    assert torch.allclose(tt.main.weight, torch.full((16, 1), 12 * dw), atol=1e-6)


def test_gradient_since_the_flip_is_written_with_its_sign():
    """After the warm-up, a change of P under chopper c arrives in W as c * change (the gradient's sign)."""
    dw = 0.01
    algo = algorithms.AGAD(gamma=0.0, transfer_lr=1.0, chop_probability=0.5, tail_weightening=2.0)  # n = 2, m = 1
    st = _state(algo, out=4, inp=1, device=_clean(devices.ConstantStep, dw_min=dw))
    st.main.program(torch.zeros(4, 1))
    st.fast.program(torch.full((4, 1), 0.2))
    for _ in range(4):                                                # warm-up: 2 reads, then a stable reference
        st.transfer()
    assert st.pulses_fired == 0
    c = float(st.chopper[0])
    st.fast.program(torch.full((4, 1), 0.2 + 2.5 * dw))              # P moved by 2.5 pulses since the reference
    st.transfer()
    assert torch.allclose(st.main.weight, torch.full((4, 1), c * dw), atol=1e-6)   # one pulse (max_pulses 1)
    assert torch.count_nonzero(st.buffer) == 0                       # forget_buffer: H reset after the fire


def test_config_round_trip_validation_and_state_dict():
    algo = algorithms.AGAD(chop_probability=0.02, tail_weightening=5.0, fast_lr=0.5, auto_scale=True,
                           auto_granularity=1000.0, scale_transfer_lr=True)
    assert algorithms.algorithm_from_dict(algo.to_dict()) == algo
    assert algo.period == 50
    with pytest.raises(ValueError, match="chop_probability"):
        algorithms.AGAD(chop_probability=0.0)
    with pytest.raises(ValueError, match="tail_weightening"):
        algorithms.AGAD(tail_weightening=0.0)
    with pytest.raises(ValueError, match="auto_scale"):
        algorithms.TTv2(auto_scale=True)
    cfg = analog.TileConfig(device=_clean(), algorithm=algorithms.AGAD(chop_probability=0.5), seed=1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3, bias=False))
    amodel = analog.convert_to_analog(model, cfg)
    opt = analog.AnalogOptimizer(amodel.parameters(), lr=0.05)
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    for _ in range(20):
        opt.zero_grad()
        amodel(x).pow(2).sum().backward()
        opt.step()
    twin = analog.convert_to_analog(model, cfg)
    twin.load_state_dict(amodel.state_dict())
    st, tw = amodel[0].tile.algorithm_state, twin[0].tile.algorithm_state
    for name in ("running_mean", "past_mean", "reads", "switched", "chopper", "buffer"):
        assert torch.equal(getattr(st, name), getattr(tw, name)), name
    assert st.reads.min() >= 1 and st.running_mean.abs().sum() > 0


def test_ttv2_buffer_knobs_forget_granularity_and_lr_scaling():
    """forget_buffer zeroes H after a fire; auto_granularity scales the threshold by auto_granularity /
    updates per pass; scale_transfer_lr multiplies the increments by the optimizer's lr; fast_lr fixes
    P's rate whatever the optimizer's lr."""
    dw = 0.01
    dev = _clean(devices.ConstantStep, dw_min=dw)
    st = _state(algorithms.TTv2(gamma=0.0, forget_buffer=True), out=2, inp=1, device=dev)
    st.main.program(torch.zeros(2, 1))
    st.fast.program(torch.tensor([[1.5 * dw], [0.5 * dw]]))
    st.transfer()
    assert torch.allclose(st.buffer[:, 0], torch.tensor([0.0, 0.5]), atol=1e-5)
    st = _state(algorithms.TTv2(auto_granularity=20.0, columns_per_transfer=2, transfer_every=1), inp=10, device=dev)
    assert abs(st.pulse_size - dw * 20.0 / 5) < 1e-9                    # 5 updates per pass
    st = _state(algorithms.TTv2(gamma=0.0, scale_transfer_lr=True, transfer_every=100), out=2, inp=1, device=dev)
    st.update(torch.zeros(1, 1), torch.zeros(1, 2), 0.25)               # no pulses, records the lr
    st.fast.program(torch.full((2, 1), 2.0 * dw))
    st.transfer()
    assert torch.allclose(st.buffer[:, 0], torch.full((2,), 0.5), atol=1e-5)   # 2 units x lr 0.25
    fixed = _state(algorithms.TTv2(fast_lr=0.3, transfer_every=100), device=dev)
    x, d = torch.ones(1, 6), torch.ones(1, 8)
    assert fixed.fast_rate(x, d, 0.001) == 0.3
    auto = _state(algorithms.TTv2(fast_lr=0.5, auto_scale=True), device=dev)
    assert abs(auto.fast_rate(2 * x, 0.5 * d, 0.001) - 0.5 * 31 * dw / 1.0) < 1e-9   # max|x| max|d| = 1
