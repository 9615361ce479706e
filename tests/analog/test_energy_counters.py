"""analog.energy.counters: hand-computed event counts of a tiny known network, their scaling with
batch, layer size and pulse-train length, and that counting changes no weight and no random draw."""
from __future__ import annotations

import copy

import pytest
import torch

import analog
import analog.energy
from analog import algorithms, devices
from analog.energy import counting, totals
from analog.periphery import IOConfig, UpdateConfig

# no noise-driven retries (bound management off) so that the conversions are exactly vectors x lines
FWD = IOConfig(inp_res=7, out_res=9, out_bound=1e6, bound_management="none")
BWD = IOConfig(inp_res=5, out_res=8, out_bound=1e6, bound_management="none")


def _config(bl: int = 5, pulse_type: str = "stochastic", algorithm=None) -> analog.TileConfig:
    return analog.TileConfig(device=devices.SoftBounds(), forward=FWD, backward=BWD,
                             algorithm=algorithm or algorithms.AnalogSGD(),
                             update=UpdateConfig(desired_bl=bl, bl_management=False, pulse_type=pulse_type))


def _step(layer: torch.nn.Module, x: torch.Tensor, lr: float = 0.1) -> None:
    opt = analog.AnalogOptimizer(layer.parameters(), lr=lr)
    opt.zero_grad()
    layer(x.requires_grad_(True)).pow(2).sum().backward()
    opt.step()


def _train_counts(batch: int, n_in: int, n_out: int, bl: int = 5, pulse_type: str = "stochastic") -> dict:
    layer = analog.AnalogLinear(n_in, n_out, bias=False, config=_config(bl, pulse_type), seed=3)
    x = torch.randn(batch, n_in, generator=torch.Generator().manual_seed(1))
    with counting() as events:
        events.name_tiles(layer)
        _step(layer, x)
    return events.totals()


def test_hand_counted_one_layer_step() -> None:
    """One 2x3 layer, batch 4, BL 5, 7/9-bit forward and 5/8-bit backward converters."""
    c = _train_counts(batch=4, n_in=3, n_out=2)
    assert c["mvm_fwd"] == 4 and c["mvm_bwd"] == 4
    assert c["mac_fwd"] == 4 * 3 * 2 and c["mac_bwd"] == 4 * 2 * 3
    assert c["dac_b7"] == 4 * 3 and c["adc_b9"] == 4 * 2          # forward: 3 inputs, 2 outputs each
    assert c["dac_b5"] == 4 * 2 and c["adc_b8"] == 4 * 3          # backward: 2 inputs, 3 outputs each
    assert c["update_calls"] == 1 and c["update_samples"] == 4
    assert c["update_slots"] == 4 * 5                              # BL 5 without BL management
    assert c["dig_act"] == 4 * 2 + 4 * 3 and c["dig_nm"] == 2 * 4 * (3 + 2)
    assert "bm_retry" not in c and "pulses_program" not in c


def test_pulses_equal_the_update_own_counts() -> None:
    """pulses_update is the sum of the per-device counts the pulsed update returns."""
    tile = analog.AnalogTile(6, 5, _config(bl=7), seed=2)
    x, d = torch.randn(8, 5), torch.randn(8, 6)
    with counting() as events:
        stats = tile.update(x, d, 0.05)
    c = events.totals()
    assert c["pulses_update"] == pytest.approx(float(stats.n_up.sum() + stats.n_down.sum()))
    assert c["pulses_update"] > 0 and c["update_slots"] == 8 * 7


def test_mean_pulses_are_lr_outer_over_dw_min() -> None:
    """pulse_type="mean": the expected pulse count per device is lr |d_j x_i| / dw_min."""
    tile = analog.AnalogTile(3, 4, _config(pulse_type="mean"), seed=2)
    x, d = torch.randn(5, 4), torch.randn(5, 3)
    with counting() as events:
        tile.update(x, d, 0.01)
    expected = 0.01 / tile.config.device.dw_min * float((d.abs().t() @ x.abs()).sum())
    assert events.totals()["pulses_update"] == pytest.approx(expected, rel=1e-5)


def test_counts_scale_with_batch_layer_and_bl() -> None:
    base = _train_counts(batch=4, n_in=3, n_out=2)
    twice_batch = _train_counts(batch=8, n_in=3, n_out=2)
    wider = _train_counts(batch=4, n_in=6, n_out=2)
    longer = _train_counts(batch=4, n_in=3, n_out=2, bl=10)
    for key in ("mvm_fwd", "mac_fwd", "dac_b7", "adc_b9", "mac_bwd", "update_samples", "update_slots"):
        assert twice_batch[key] == 2 * base[key], key
    assert wider["mac_fwd"] == 2 * base["mac_fwd"] and wider["dac_b7"] == 2 * base["dac_b7"]
    assert wider["adc_b9"] == base["adc_b9"]                       # the outputs did not change
    assert wider["adc_b8"] == 2 * base["adc_b8"]                   # backward converts every input line
    assert longer["update_slots"] == 2 * base["update_slots"]
    assert longer["mac_fwd"] == base["mac_fwd"]
    # the expected pulse count does not depend on BL (probabilities scale as 1/BL): mean mode, exact
    mean5 = _train_counts(batch=4, n_in=3, n_out=2, bl=5, pulse_type="mean")["pulses_update"]
    mean10 = _train_counts(batch=4, n_in=3, n_out=2, bl=10, pulse_type="mean")["pulses_update"]
    assert mean10 == pytest.approx(mean5, rel=1e-6)


def test_conv_counts_one_vector_per_patch() -> None:
    conv = analog.AnalogConv2d(2, 3, 3, bias=False, config=_config(), seed=1)
    x = torch.randn(2, 2, 5, 5)
    with counting() as events:
        _step(conv, x)
    c = events.totals()
    patches = 2 * 3 * 3                                            # batch 2, 3x3 output positions
    assert c["mvm_fwd"] == patches and c["mac_fwd"] == patches * 18 * 3
    assert c["update_samples"] == patches


def test_transfers_programming_and_digital_work_are_counted() -> None:
    cfg = _config(algorithm=algorithms.TikiTaka(transfer_every=1, columns_per_transfer=2))
    with counting() as events:
        layer = analog.AnalogLinear(4, 3, bias=True, config=cfg, seed=5)
        events.name_tiles(layer)
        with events.phase("train"):
            for _ in range(3):
                _step(layer, torch.randn(2, 4))
    counts = events.counts()
    assert set(counts) == {"tile", "digital"}                      # named after construction: moved
    c = events.totals()
    assert c["transfers"] == 3 and c["mvm_transfer"] == 3 * 2 and c["mac_transfer"] == 3 * 2 * 3
    assert c["devices_programmed"] == 3 * 4                        # layer init programs every device
    assert c["dig_opt"] == 3 * 3                                   # the digital bias, 3 steps
    mp = _config(algorithm=algorithms.MixedPrecision())
    with counting() as events:
        layer = analog.AnalogLinear(4, 3, bias=False, config=mp, seed=5)
        _step(layer, torch.randn(2, 4))
    assert events.totals()["dig_mp_mac"] == 2 * 4 * 3               # one digital outer product


def test_phases_and_totals_per_phase() -> None:
    layer = analog.AnalogLinear(3, 2, bias=False, config=_config(), seed=3)
    with counting() as events:
        with events.phase("train"):
            _step(layer, torch.randn(4, 3))
        with events.phase("encode"), torch.no_grad():
            layer(torch.randn(7, 3))
    assert totals(events.counts(), "encode")["mvm_fwd"] == 7
    assert totals(events.counts(), "train")["mvm_fwd"] == 4
    assert "update_calls" not in totals(events.counts(), "encode")


@pytest.mark.parametrize("algorithm", [algorithms.AnalogSGD(), algorithms.TikiTaka(), algorithms.TTv2(),
                                       algorithms.MixedPrecision()], ids=lambda a: type(a).__name__)
def test_counting_changes_no_weight_and_no_random_draw(algorithm) -> None:
    """The same seeded steps with counting off and on: identical weights and generator states."""
    cfg = analog.TileConfig(device=devices.SoftBounds(), algorithm=algorithm)   # default periphery (BM on)
    torch.manual_seed(0)
    model = torch.nn.Sequential(analog.AnalogLinear(6, 5, config=cfg, seed=1), torch.nn.Sigmoid(),
                                analog.AnalogLinear(5, 4, config=cfg, seed=2))
    twin = copy.deepcopy(model)
    data = [torch.randn(8, 6, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    for x in data:
        _step(model, x.clone())
    with counting() as events:
        for x in data:
            _step(twin, x.clone())
    assert events.totals()["pulses_update"] > 0
    for a, b in zip(model.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    for la, lb in ((model[0], twin[0]), (model[2], twin[2])):
        assert torch.equal(la.tile.generator(torch.device("cpu")).get_state(),
                           lb.tile.generator(torch.device("cpu")).get_state())
        assert torch.equal(la.tile.algorithm_state.generator().get_state(),
                           lb.tile.algorithm_state.generator().get_state())


def test_digital_layers_count_their_macs() -> None:
    """A digital reference model has no tiles: its Linear/Conv2d MACs are counted by hooks."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 4))
    events = analog.energy.EventCounter()
    hooks = events.watch_digital(model)
    with counting(events):
        model(torch.randn(5, 1, 5, 5)).sum().backward()
        with torch.no_grad():
            model.eval()
            model(torch.randn(5, 1, 5, 5))
    model(torch.randn(5, 1, 5, 5))                                  # counting off: not counted
    for h in hooks:
        h.remove()
    fwd = 5 * (2 * 3 * 3 * 9 + 4 * 18)                             # conv: 18 outputs x 9 MACs; linear 4 x 18
    c = events.totals()
    assert c["mac_fwd"] == 2 * fwd and c["mac_bwd"] == fwd and c["mac_update"] == fwd


def test_pulses_per_device_add_up_and_follow_the_names() -> None:
    """Each device's running pulse total (endurance) sums to the pulses counted, sparse or dense."""
    tile = analog.AnalogTile(6, 5, _config(bl=7), seed=2)
    with counting() as events:
        for i in range(3):
            tile.update(torch.randn(8, 5, generator=torch.Generator().manual_seed(i)), torch.randn(8, 6), 0.05)
        events.name_tiles(torch.nn.ModuleDict({"enc": torch.nn.Module()}))   # no tiles: nothing renamed
    per = events.pulses_per_device()
    (key, stats), = per.items()
    assert key.endswith("/update") and stats["devices"] == 30
    assert stats["mean"] * 30 == pytest.approx(events.totals()["pulses_update"])
    assert stats["max"] >= stats["mean"] > 0
    assert events.to_dict()["pulses_per_device"] == per
