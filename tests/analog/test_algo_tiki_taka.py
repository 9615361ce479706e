"""Defining behaviour of TikiTaka / TTv2 / RLv2 and zero-shift (analog/algorithms/tiki_taka.py)."""
from __future__ import annotations

import copy

import pytest
import torch

import analog
from analog import algorithms, devices
from analog.algorithms.tiki_taka import BufferedTransferState, TikiTakaState

IDEAL_IO = analog.IOConfig.ideal()


def _clean(dev_cls=devices.ConstantStep, **kw):
    """A device without variation or noise, so that expected values are exact."""
    base = dict(dw_min=0.01, w_max=1.0, w_min=-1.0, dw_min_dtod=0.0, dw_min_std=0.0, w_max_dtod=0.0,
                w_min_dtod=0.0, up_down_dtod=0.0)
    base.update(kw)
    return dev_cls(**base)


def _state(algo, out=3, inp=4, device=None, update=None, forward=IDEAL_IO, seed=0):
    cfg = analog.TileConfig(device=device or _clean(), algorithm=algo, forward=forward, backward=IDEAL_IO,
                            update=update or analog.UpdateConfig(), seed=seed)
    tile = analog.AnalogTile(out, inp, cfg, seed=seed)
    return tile.algorithm_state


def test_transfer_moves_p_column_by_column_into_w():
    algo = algorithms.TikiTaka(gamma=0.0, transfer_every=1, transfer_lr=1.0)
    st = _state(algo, update=analog.UpdateConfig(pulse_type="mean"))  # expected pulses: exact arithmetic
    assert isinstance(st, TikiTakaState)
    pattern = torch.tensor([[0.10, -0.20, 0.05, 0.0], [-0.30, 0.15, 0.0, 0.2], [0.0, 0.07, -0.12, 0.3]])
    st.fast.program(pattern)
    st.main.program(torch.zeros(3, 4))
    assert st.transfer().tolist() == [0]
    assert torch.allclose(st.main.weight[:, 0], pattern[:, 0], atol=1e-6)
    assert torch.count_nonzero(st.main.weight[:, 1:]) == 0          # only the scheduled column moved
    assert st.transfer().tolist() == [1]
    assert torch.allclose(st.main.weight[:, :2], pattern[:, :2], atol=1e-6)
    st.transfer(), st.transfer()
    assert torch.allclose(st.main.weight, pattern, atol=1e-6)        # all columns after a full cycle
    assert st.next_column == 0                                        # the schedule wraps around


def test_stochastic_transfer_is_unbiased_and_several_columns_at_once():
    algo = algorithms.TikiTaka(gamma=0.0, transfer_lr=0.5, columns_per_transfer=3)
    st = _state(algo, out=64, inp=6, device=_clean(dw_min=0.002))
    pattern = (torch.rand(64, 6, generator=torch.Generator().manual_seed(1)) - 0.5) * 0.1
    st.fast.program(pattern)
    st.main.program(torch.zeros(64, 6))
    assert st.transfer().tolist() == [0, 1, 2]
    moved = st.main.weight[:, :3]
    assert torch.count_nonzero(st.main.weight[:, 3:]) == 0
    err = moved - 0.5 * pattern[:, :3]
    assert err.mean().abs() < 0.002                                  # unbiased over 192 devices
    assert torch.corrcoef(torch.stack([moved.flatten(), pattern[:, :3].flatten()]))[0, 1] > 0.9


def test_update_pulses_p_and_transfers_every_n_steps():
    algo = algorithms.TikiTaka(gamma=0.5, transfer_every=3, transfer_lr=1.0)
    st = _state(algo, device=_clean(dw_min=0.001))
    x, d = torch.ones(2, 4), torch.ones(2, 3)
    w0 = st.main.weight.clone()
    st.update(x, d, lr=0.01)
    st.update(x, d, lr=0.01)
    assert torch.equal(st.main.weight, w0)                          # no transfer yet
    assert (st.fast.weight < 0).all()                                # the gradient went to P (W -= lr d x)
    assert torch.allclose(st.effective_weight(), st.main.weight + 0.5 * (st.fast.weight - st.reference))
    st.update(x, d, lr=0.01)
    assert st.transfers == 1 and (st.main.weight[:, 0] < 0).all() and torch.equal(st.main.weight[:, 1:], w0[:, 1:])


def test_buffer_fires_pulses_only_past_threshold():
    dw = 0.01
    algo = algorithms.TTv2(gamma=0.0, transfer_lr=1.0, threshold=1.0, max_pulses=2)
    st = _state(algo, out=2, inp=1, device=_clean(dw_min=dw))
    assert isinstance(st, BufferedTransferState)
    st.main.program(torch.zeros(2, 1))
    st.fast.program(torch.tensor([[0.4 * dw], [-0.4 * dw]]))         # 0.4 of a pulse per read
    for expected_buffer in (0.4, 0.8):
        st.transfer()
        assert torch.count_nonzero(st.main.weight) == 0 and st.pulses_fired == 0
        assert torch.allclose(st.buffer[:, 0], torch.tensor([expected_buffer, -expected_buffer]), atol=1e-5)
    st.transfer()                                                     # 1.2 >= 1: one pulse, H reduced by it
    assert torch.allclose(st.main.weight[:, 0], torch.tensor([dw, -dw]), atol=1e-7)
    assert torch.allclose(st.buffer[:, 0], torch.tensor([0.2, -0.2]), atol=1e-5)
    assert st.pulses_fired == 2
    st.fast.program(torch.tensor([[3.5 * dw], [0.0]]))              # 3.7 units: capped at max_pulses=2
    st.transfer()
    assert torch.allclose(st.main.weight[:, 0], torch.tensor([3 * dw, -dw]), atol=1e-7)
    assert torch.allclose(st.buffer[:, 0], torch.tensor([1.7, -0.2]), atol=1e-5)


def test_rlv2_buffer_is_a_low_pass_filter_of_p():
    dw = 0.01
    algo = algorithms.RLv2(gamma=0.0, transfer_lr=1.0, buffer_decay=0.5, reference="none")
    st = _state(algo, out=2, inp=1, device=_clean(dw_min=dw))
    st.main.program(torch.zeros(2, 1))
    st.fast.program(torch.tensor([[0.9 * dw], [1.2 * dw]]))
    for _ in range(30):
        st.transfer()
    # H -> 0.9 < 1 never fires; H -> 1.2 fires (then relaxes back up and fires again)
    assert st.main.weight[0, 0] == 0 and abs(float(st.buffer[0, 0]) - 0.9) < 1e-3
    assert st.main.weight[1, 0] > 0
    with pytest.raises(ValueError, match="buffer_decay"):
        algorithms.RLv2(buffer_decay=0.0)


def test_buffer_in_fixed_point_uses_the_grid():
    dw = 0.01
    algo = algorithms.TTv2(gamma=0.0, transfer_lr=1.0, buffer_bits=8, buffer_int_bits=4)
    st = _state(algo, out=200, inp=1, device=_clean(dw_min=dw))
    st.fast.program(torch.full((200, 1), 0.33 * dw))
    st.transfer()
    h = st.buffer[:, 0]
    assert torch.allclose(h * 16, torch.round(h * 16))               # 4 fractional bits: grid 1/16
    assert abs(float(h.mean()) - 0.33) < 0.02                        # stochastic rounding: unbiased


@pytest.mark.parametrize("c", [0.3, -0.2])
def test_zero_shift_puts_the_symmetric_point_of_p_at_zero(c):
    dev = devices.AsymmetricLinear(c=c, dw_min=0.002, w_max=0.6, w_min=-0.6, dw_min_std=0.3)  # with d2d spread
    zs = _state(algorithms.TikiTaka(gamma=0.0, reference="zero-shift", zero_shift_cycles=60), out=16, inp=16,
                device=dev)
    w_star = zs.fast.symmetric_point()
    assert (w_star.mean() - c * 0.6).abs() < 0.03
    assert (zs.reference - w_star).abs().quantile(0.95) < 0.03     # reference found by pulsing, per device
    assert torch.count_nonzero(zs.residual()) == 0                   # the read of P starts at 0
    s_up, s_down = zs.fast.response(zs.reference)
    assert ((s_up - s_down).abs() / s_up).median() < 0.1             # G(0) ~ 0 for the residual

    plain = _state(algorithms.TikiTaka(gamma=0.0, reference="none"), out=16, inp=16, device=dev)
    assert torch.count_nonzero(plain.reference) == 0
    # zero-mean random pulsing: P relaxes to its symmetric point; only with zero-shift does that read 0
    g = torch.Generator().manual_seed(0)
    for state in (zs, plain):
        for _ in range(400):
            n = (torch.rand(16, 16, generator=g) < 0.5).float() * 4
            state.fast.apply_pulses(n, 4 - n)
    assert zs.residual().mean().abs() < 0.02
    assert (plain.residual().mean() - c * 0.6).abs() < 0.05


def test_works_through_layers_convert_and_state_dict():
    algo = algorithms.TTv2(gamma=0.3, transfer_every=2, columns_per_transfer=2, reference="zero-shift",
                           zero_shift_cycles=5)
    dev = devices.SoftBounds(w_max_dtod=0.0, w_min_dtod=0.0)  # no bound spread: nothing gets clipped
    cfg = analog.TileConfig(device=dev, algorithm=algo, seed=3)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 5))
    amodel = analog.convert_to_analog(model, cfg)
    conv, lin = amodel[0], amodel[3]
    assert isinstance(conv, analog.AnalogConv2d) and isinstance(lin, analog.AnalogLinear)
    # programmed with the digital weights (inside the bounds): the effective weight reads them back
    assert torch.allclose(lin.get_weights(), model[3].weight, atol=1e-6)
    w = torch.full_like(lin.get_weights(), 0.05)
    lin.set_weights(w)
    assert torch.allclose(lin.get_weights(), w, atol=1e-6)
    opt = analog.AnalogOptimizer(amodel.parameters(), lr=0.1)
    x, y = torch.rand(8, 1, 6, 6), torch.randint(0, 5, (8,))
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(amodel(x), y).backward()
        opt.step()
    st = lin.tile.algorithm_state
    assert st.steps == 4 and st.transfers == 2 and st.next_column == 4
    assert torch.allclose(lin.weight.detach(), st.effective_weight(), atol=1e-6)  # parameters mirror the tile
    # checkpoint round trip keeps arrays, reference, buffer and the schedule
    clone = analog.convert_to_analog(model, cfg)
    clone.load_state_dict(amodel.state_dict())
    cst = clone[3].tile.algorithm_state
    assert torch.equal(cst.buffer, st.buffer) and torch.equal(cst.reference, st.reference)
    assert (cst.steps, cst.next_column, cst.transfers) == (4, 4, 2)
    dup = copy.deepcopy(amodel)
    assert torch.equal(dup[3].get_weights(), lin.get_weights())


def test_config_round_trip_and_validation_errors():
    algo = algorithms.RLv2(gamma=0.2, transfer_lr=2.0, buffer_decay=0.2, buffer_bits=12,
                           fast_device=devices.PowerStep(gamma=2.0, dw_min=0.002))
    cfg = analog.TileConfig(algorithm=algo)
    d = cfg.to_dict()
    assert d["algorithm"]["type"] == "RLv2" and d["algorithm"]["fast_device"]["type"] == "PowerStep"
    assert analog.TileConfig.from_dict(d) == cfg
    plain = analog.TileConfig.from_dict({"algorithm": {"type": "TikiTaka", "fast_device": "off"}})
    assert plain.algorithm == algorithms.TikiTaka()
    tio = analog.TileConfig(algorithm=algorithms.TikiTaka(transfer_io=analog.IOConfig(out_noise=0.01)))
    assert analog.TileConfig.from_dict(tio.to_dict()) == tio
    bad = [({"type": "TTv2", "threshold": 0}, "algorithm.threshold: got 0"),
           ({"type": "TikiTaka", "transfer_every": 0}, "algorithm.transfer_every: got 0"),
           ({"type": "TikiTaka", "reference": "mirror"}, "algorithm.reference: got 'mirror'"),
           ({"type": "TTv2", "buffer_bits": 3, "buffer_int_bits": 4}, "algorithm.buffer_bits: got 3"),
           ({"type": "TikiTaka", "fast_device": {"type": "Nope"}}, "fast_device.type: got 'Nope'"),
           ({"type": "TikiTaka", "speed": 1}, "algorithm.speed: unknown key"),
           ({"type": "TikiTaka", "transfer_io": {"out_noise": -1}}, "transfer_io.out_noise: got -1")]
    for data, message in bad:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            analog.TileConfig.from_dict({"algorithm": data})


def test_rounding_is_unbiased_and_fixed_point_saturates():
    g = torch.Generator().manual_seed(0)
    x = torch.full((200_000,), 0.3)
    r = analog.stochastic_round(x, 1.0, generator=g)
    assert set(r.unique().tolist()) == {0.0, 1.0} and abs(float(r.mean()) - 0.3) < 0.005
    q = analog.quantize_fixed(torch.tensor([100.0, -100.0, 0.3]), 4, 2, mode="nearest")
    assert q.tolist() == [7.75, -8.0, 0.25]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    cfg = analog.TileConfig(algorithm=algorithms.TTv2(reference="zero-shift", zero_shift_cycles=5), seed=1)
    layer = analog.AnalogLinear(8, 4, config=cfg).cuda()
    opt = analog.AnalogOptimizer(layer.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.rand(5, 8, device="cuda")).square().sum().backward()
        opt.step()
    assert layer.tile.algorithm_state.buffer.is_cuda and layer.get_weights().is_cuda


def test_transfer_reads_p_through_the_periphery():
    """A noisy transfer IOConfig makes the reads noisy around P (zero mean), the ideal one exact."""
    noisy = analog.IOConfig(inp_res=None, out_res=None, out_noise=0.05, bound_management="none")
    st = _state(algorithms.TikiTaka(gamma=0.0, columns_per_transfer=4, transfer_io=noisy), out=500, inp=4)
    pattern = torch.linspace(-0.3, 0.3, 2000).reshape(500, 4)
    st.fast.program(pattern)
    err = st.read_columns(torch.arange(4)).t() - pattern
    assert 0.04 < float(err.std()) < 0.06 and abs(float(err.mean())) < 0.005
    exact = _state(algorithms.TikiTaka(gamma=0.0), out=500, inp=4)
    exact.fast.program(pattern)
    assert torch.allclose(exact.read_columns(torch.tensor([2, 0])).t(), pattern[:, [2, 0]])


def test_chopper_keeps_p_offset_out_of_w():
    """A constant offset of P (no zero-shift) is written into W by TTv2; the chopper averages it out."""
    dw = 0.01
    drift = {}
    for p in (0.0, 0.5):
        algo = algorithms.TTv2(gamma=0.0, transfer_lr=1.0, max_pulses=1, chop_probability=p)
        st = _state(algo, out=64, inp=1, device=_clean(dw_min=dw), seed=1)
        st.main.program(torch.zeros(64, 1))
        st.fast.program(torch.full((64, 1), 0.5 * dw))             # half a pulse of offset per read
        for _ in range(200):
            st.transfer()
        drift[p] = float(st.main.weight.mean())
    assert abs(drift[0.0] - 100 * dw) < 1e-6                          # 200 reads x 0.5 = 100 pulses
    assert abs(drift[0.5]) < 15 * dw                                  # a zero-mean random walk instead
    # the gradient still arrives with its sign: chopped P learns like plain P through the layer
    algo = algorithms.TTv2(gamma=1.0, transfer_every=100, chop_probability=0.5)
    st = _state(algo, out=2, inp=3, device=_clean(dw_min=0.001))
    st.chopper.copy_(torch.tensor([1.0, -1.0, 1.0]))
    st.update(torch.ones(1, 3), torch.ones(1, 2), lr=0.01)
    assert (st.residual()[:, 1] > 0).all() and (st.residual()[:, [0, 2]] < 0).all()  # stored with c
    assert (st.effective_weight() < 0).all()                         # read back times c: against the gradient


@pytest.mark.parametrize("algo", [algorithms.TikiTaka(columns_per_transfer=3),
                                  algorithms.TTv2(chop_probability=0.3, threshold=0.5),
                                  algorithms.RLv2(transfer_every=2)])
def test_effective_weight_refreshed_in_place_equals_a_full_recompute(algo):
    """update() patches the cached W + gamma (P - R) only where it pulsed P and at the transferred
    columns; after many steps it must still equal the formula evaluated from scratch."""
    st = _state(algo, out=40, inp=300, device=devices.SoftBounds(), forward=analog.IOConfig(), seed=5)
    st.main.program(torch.randn(40, 300, generator=torch.Generator().manual_seed(1)) * 0.2)
    g = torch.Generator().manual_seed(2)
    st.effective_weight()
    for _ in range(25):
        x = torch.rand(10, 300, generator=g) * (torch.rand(10, 300, generator=g) > 0.8)
        st.update(x, torch.randn(10, 40, generator=g) * 2e-3, 0.05)      # sparse updates of P
    cached = st.effective_weight()
    full = st.main.weight + algo.gamma * (st.fast.weight - st.reference) * st.chopper
    assert (st.fast.weight != st.reference).sum() > 100 and st.transfers > 5     # P and W both moved
    assert torch.allclose(cached, full, atol=1e-6, rtol=0)



def test_state_is_built_from_the_tile_parts_it_uses():
    """An algorithm builds its state from device, update and forward periphery alone (no TileConfig):
    both arrays pulse with the given update config, P takes ``fast_device`` when set, and the transfer
    read goes through the given forward periphery unless the algorithm names its own."""
    main_dev, fast_dev = _clean(), _clean(devices.SoftBounds)
    upd, fwd, own = analog.UpdateConfig(pulse_type="mean"), analog.IOConfig(out_noise=0.01), IDEAL_IO
    gen = torch.Generator().manual_seed(0)
    st = algorithms.TTv2(fast_device=fast_dev).build(3, 4, device=main_dev, update=upd, forward=fwd,
                                                     generator=gen)
    assert isinstance(st, BufferedTransferState)
    assert st.transfer_io is fwd
    assert st.main.update_config is upd and st.fast.update_config is upd
    assert type(st.main.device_model).__name__ == "ConstantStep"
    assert type(st.fast.device_model).__name__ == "SoftBounds"
    st.update(torch.ones(1, 4), -torch.ones(1, 3), 0.05)                 # mean pulses: 5 steps of dw_min up
    assert torch.all(st.fast.weight > 0) and st.steps == 1
    own_st = algorithms.TikiTaka(transfer_io=own).build(3, 4, device=main_dev, update=upd, forward=fwd,
                                                        generator=gen)
    assert own_st.transfer_io is own


@pytest.mark.parametrize("algo", [algorithms.TikiTaka(columns_per_transfer=2),
                                  algorithms.TTv2(chop_probability=0.5, threshold=0.5),
                                  algorithms.RLv2(columns_per_transfer=3, zero_shift_cycles=2)])
def test_transfer_through_column_views_equals_the_gathered_columns(algo):
    """transfer() reads and writes a run of columns as slices (views); the same transfers through
    gathered index tensors (the general path, e.g. a run that wraps around) give the very same
    arrays, buffers and chopper signs on the same seed."""
    dev = devices.SoftBounds(dw_min=0.01)
    fast = _state(algo, out=5, inp=7, device=dev, forward=analog.IOConfig(), seed=4)
    ref = copy.deepcopy(fast)
    g = torch.Generator().manual_seed(0)
    for _ in range(9):                                   # wraps around the 7 columns
        x, d = torch.randn(4, 7, generator=g), torch.randn(4, 5, generator=g)
        fast.fast.pulse_update(x, d, 0.1)
        ref.fast.pulse_update(x, d, 0.1)
        cols = fast.transfer()
        gathered = cols.clone()                          # not the run: indexes by gathering
        assert gathered is not cols and ref._at(gathered) is gathered
        ref.next_column = fast.next_column
        ref._write(gathered, ref.read_columns(gathered))
        for a, b in ((fast.main.weight, ref.main.weight), (fast.fast.weight, ref.fast.weight),
                     (fast.chopper, ref.chopper)):
            assert torch.equal(a, b)
        if isinstance(fast, BufferedTransferState):
            assert torch.equal(fast.buffer, ref.buffer)
    assert fast.main.weight.ne(0).any()                 # the transfers did write W
