"""Weight mapping (TileConfig.mapping): digital output scales that put each column's weights onto the
conductance range. Ideal equivalence, noise benefit, unbiased pulsed update, config handling."""
import copy
import math

import pytest
import torch
from torch import nn

import analog
from analog import algorithms, devices
from analog import inference


def _mapped(cfg, omega=0.8, **kw):
    return cfg.replace(mapping=analog.MappingConfig(weight_scaling_omega=omega, **kw))


def _quiet(device_cls, **kw):
    base = dict(dw_min_dtod=0.0, dw_min_std=0.0, w_max_dtod=0.0, w_min_dtod=0.0, up_down_dtod=0.0)
    base.update(kw)
    return device_cls(**base)


# ----------------------------------------------------------------------------- 1. ideal equivalence
@pytest.mark.parametrize("per_column", [True, False])
@pytest.mark.parametrize("analog_bias", [False, True])
def test_ideal_mapped_linear_equals_nn_linear_forward_backward_and_sgd(per_column, analog_bias):
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 5))
    with torch.no_grad():
        digital[0].weight.mul_(torch.linspace(0.05, 3.0, 16)[:, None])    # very different column ranges
    cfg = _mapped(analog.TileConfig.ideal_digital(), 0.7, per_column=per_column).replace(analog_bias=analog_bias)
    model = analog.convert_to_analog(digital, cfg)
    tile = model[0].tile
    scales = tile.out_scale
    assert (per_column and scales.std() > 0.1 * scales.mean()) or (not per_column and bool((scales == scales[0]).all()))
    # the devices hold W / s with the largest |W_a| at omega * 1.0 (Ideal: normalized range)
    assert math.isclose(float(tile.analog_weight().abs().max()), 0.7, rel_tol=1e-6)
    opt_a = analog.AnalogOptimizer(model.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(digital.parameters(), lr=0.1)
    y = torch.randint(0, 5, (8,))
    for step in range(3):
        x = torch.randn(8, 12, generator=torch.Generator().manual_seed(step), requires_grad=True)
        x2 = x.detach().clone().requires_grad_(True)
        outs = []
        for opt, m, inp in ((opt_a, model, x), (opt_d, digital, x2)):
            opt.zero_grad()
            out = m(inp)
            outs.append(out.detach())
            nn.functional.cross_entropy(out, y).backward()
            opt.step()
        assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
        assert torch.allclose(x.grad, x2.grad, rtol=1e-5, atol=1e-6)
    for la, ld in ((model[0], digital[0]), (model[2], digital[2])):
        assert torch.allclose(la.get_weights(), ld.weight, rtol=1e-5, atol=1e-6)
        assert torch.allclose(la.get_bias(), ld.bias, rtol=1e-5, atol=1e-6)
        assert torch.equal(la.weight.detach(), la.get_weights())             # mirror = effective weights
    assert torch.equal(tile.out_scale, scales)                              # fixed after programming


# ----------------------------------------------------------------------------- 2. noise benefit
def test_mapping_shrinks_output_noise_relative_to_signal_for_small_weights():
    """Weights ~0.02 against a +-0.6 device: out_noise 0.06 swamps the unmapped MVM; mapped, the
    analog signal is ~15x larger and the noise is scaled down with s after the ADC."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 64, generator=g) * 0.02
    x = torch.rand(512, 64, generator=g)
    ref = x @ w.t()
    errs = {}
    for omega in (None, 0.8):
        cfg = analog.TileConfig(device=_quiet(devices.ConstantStep),
                                mapping=analog.MappingConfig(weight_scaling_omega=omega), seed=3)
        layer = analog.AnalogLinear(64, 16, bias=False, config=cfg)
        layer.set_weights(w)
        assert torch.allclose(layer.get_weights(), w, atol=1e-6)            # nothing clipped
        with torch.no_grad():
            errs[omega] = float((layer(x) - ref).norm() / ref.norm())
    # measured 0.36 unmapped vs 0.030 mapped (omega 0.8: s = max|W_j| / 0.48, ~1/10)
    assert errs[None] > 0.2
    assert errs[0.8] < 0.15 * errs[None]


# ----------------------------------------------------------------------------- 3. unbiased update
def _update_tile(per_column, pulse_type):
    cfg = analog.TileConfig(device=_quiet(devices.ConstantStep, dw_min=1e-3), forward=analog.IOConfig.ideal(),
                            backward=analog.IOConfig.ideal(), update=analog.UpdateConfig(pulse_type=pulse_type),
                            seed=5)
    tile = analog.AnalogTile(8, 10, _mapped(cfg, 0.2, per_column=per_column))
    w0 = -0.05 * torch.linspace(0.25, 2.0, 8)[:, None] * torch.ones(8, 10)    # analog: -0.12 when per column
    tile.set_weights(w0)
    return tile, w0


@pytest.mark.parametrize("per_column", [True, False])
def test_mean_pulse_update_on_effective_weights_is_exactly_minus_lr_d_x(per_column):
    tile, w0 = _update_tile(per_column, "mean")
    g = torch.Generator().manual_seed(1)
    x, d = torch.rand(6, 10, generator=g) * 2 - 1, (torch.rand(6, 8, generator=g) * 2 - 1) * 0.02
    tile.update(x, d, 0.1)
    assert torch.allclose(tile.get_weights() - w0, -0.1 * d.t() @ x, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("per_column", [True, False])
def test_stochastic_pulse_update_on_effective_weights_matches_minus_lr_d_x(per_column):
    """E[dW_eff] = -lr d x^T with real pulse trains: the tile hands d / s to the devices, so s * dW_a
    is the SGD step although every column has its own scale (spread 8x). d_j is chosen ~ s_j so that
    every device gets ~10 pulses a step (no BL saturation) and ~600 in all; a tile that passed d (or
    d * s) would move row j by s_j^2 (s_j^3) times too little/much."""
    tile, w0 = _update_tile(per_column, "stochastic")
    s = tile.out_scale.clone()
    assert float(s.max() / s.min()) > (7.9 if per_column else 0.99)
    lr, steps = 0.01, 60
    x = 0.5 + 0.5 * torch.rand(1, 10, generator=torch.Generator().manual_seed(1))
    d = -s[None, :]
    for _ in range(steps):
        tile.update(x, d, lr)
    expected = -steps * lr * d.t() @ x
    moved = tile.get_weights() - w0
    assert torch.equal(tile.out_scale, s)
    assert float((moved - expected).norm() / expected.norm()) < 0.05     # measured 0.014 / 0.016
    row_rel = (moved.sum(1) - expected.sum(1)).abs() / expected.sum(1)
    assert float(row_rel.max()) < 0.02, row_rel                          # measured 0.003 / 0.005


def test_tiki_taka_scales_the_effective_weight_w_plus_gamma_p():
    cfg = analog.TileConfig(device=_quiet(devices.SoftBounds), algorithm=algorithms.TikiTaka(gamma=0.5), seed=2)
    layer = analog.AnalogLinear(6, 4, bias=False, config=_mapped(cfg, 0.5))
    st, tile = layer.tile.algorithm_state, layer.tile
    assert math.isclose(float(st.main.weight.abs().max()), 0.3, rel_tol=1e-5)     # 0.5 * bound 0.6
    x = torch.rand(16, 6)
    loss = layer(x).square().sum()
    loss.backward()
    analog.AnalogOptimizer(layer.parameters(), lr=0.05).step()
    assert float((st.fast.weight - st.reference).abs().max()) > 0                  # P learned
    eff = (st.main.weight + 0.5 * (st.fast.weight - st.reference)) * tile.out_scale[:, None]
    assert torch.allclose(layer.get_weights(), eff, atol=1e-7)
    assert torch.allclose(layer.weight.detach(), eff, atol=1e-7)


# ----------------------------------------------------------------------------- state, inference, remap
def test_scales_survive_state_dict_deepcopy_and_double_and_default_tiles_are_unchanged():
    torch.manual_seed(0)
    plain = analog.AnalogLinear(5, 3, config=analog.TileConfig(seed=1))
    assert "tile.out_scale" not in plain.state_dict() and not plain.tile.mapped
    layer = analog.AnalogLinear(5, 3, config=_mapped(analog.TileConfig(seed=1), 0.6))
    other = analog.AnalogLinear(5, 3, config=_mapped(analog.TileConfig(seed=7), 0.6))
    other.load_state_dict(layer.state_dict())
    assert torch.equal(other.tile.out_scale, layer.tile.out_scale)
    assert torch.equal(other.get_weights(), layer.get_weights())
    clone = copy.deepcopy(layer).double()
    assert clone.tile.out_scale.dtype == torch.float64
    assert torch.allclose(clone.get_weights(), layer.get_weights().double())


def test_drift_keeps_the_mapping_scales():
    torch.manual_seed(0)
    model = analog.convert_to_analog(nn.Sequential(nn.Linear(8, 4)),
                                     _mapped(analog.TileConfig(device=devices.Ideal()), 0.8))
    chip = inference.PCMLike(prog_noise_scale=0.0, read_noise_scale=0.0)
    programmed = inference.program(model, chip, seed=0)
    s0, w0 = model[0].tile.out_scale.clone(), model[0].get_weights()
    late = programmed.at(20.0 * 1e4, compensation=False)
    assert torch.equal(late[0].tile.out_scale, s0)                                  # the periphery stays
    shrink = late[0].get_weights().norm() / w0.norm()
    assert 0.45 < float(shrink) < 0.75                                               # (1e4)^-nu, nu ~ 0.05..0.1
    assert float(late[0].tile.analog_weight().abs().max()) < 0.8 * 0.8               # conductances shrank


def test_remap_every_rederives_scales_from_the_effective_weights():
    cfg = _mapped(analog.TileConfig.ideal_digital(seed=0), 0.5, remap_every=2)
    layer = analog.AnalogLinear(4, 3, bias=False, config=cfg)
    tile = layer.tile
    x, d = torch.ones(1, 4), torch.tensor([[-10.0, 0.0, 0.0]])
    s0 = tile.out_scale.clone()
    tile.update(x, d, 0.1)                        # row 0 grows by 1.0 in effective units
    assert torch.equal(tile.out_scale, s0) and float(tile.analog_weight()[0].abs().max()) > 0.5
    w = tile.get_weights()
    tile.update(x, torch.zeros(1, 3), 0.1)        # 2nd step: remap
    assert float(tile.out_scale[0]) > 2 * float(s0[0])
    assert torch.allclose(tile.analog_weight().abs().amax(1), torch.full((3,), 0.5))
    assert torch.allclose(tile.get_weights(), w, atol=1e-6)


# ----------------------------------------------------------------------------- 4. config
def test_mapping_config_validation_names_the_field():
    for bad, msg in (({"weight_scaling_omega": 0}, "weight_scaling_omega: got 0"),
                     ({"weight_scaling_omega": 1.5}, "weight_scaling_omega: got 1.5"),
                     ({"weight_scaling_omega": math.nan}, "weight_scaling_omega"),
                     ({"weight_scaling_omega": True}, "weight_scaling_omega"),
                     ({"weight_scaling_omega": 0.5, "per_column": 1}, "per_column"),
                     ({"weight_scaling_omega": 0.5, "remap_every": 0}, "remap_every: got 0"),
                     ({"remap_every": 5}, "remap_every: got 5, needs weight_scaling_omega")):
        with pytest.raises(ValueError, match=msg):
            analog.MappingConfig(**bad)
    with pytest.raises(ValueError, match=r"^mapping\.weight_scaling_omega: got -1"):
        analog.TileConfig.from_dict({"mapping": {"weight_scaling_omega": -1}})
    with pytest.raises(ValueError, match=r"^mapping\.omega: unknown key"):
        analog.TileConfig.from_dict({"mapping": {"omega": 0.5}})
    with pytest.raises(ValueError, match="mapping: got dict"):
        analog.TileConfig(mapping={"weight_scaling_omega": 0.5})
    assert not analog.MappingConfig().enabled and analog.TileConfig().mapping == analog.MappingConfig()
    assert analog.MappingConfig(weight_scaling_omega="off").weight_scaling_omega is None


def test_mapping_config_round_trips_through_dict_and_toml():
    tomli_w = pytest.importorskip("tomli_w")
    import tomllib

    for mapping in (analog.MappingConfig(), analog.MappingConfig(weight_scaling_omega=0.6, per_column=False),
                    analog.MappingConfig(weight_scaling_omega=1, remap_every=100)):
        cfg = analog.TileConfig(device=devices.SoftBounds(), mapping=mapping, seed=4)
        assert analog.TileConfig.from_dict(cfg.to_dict()) == cfg
        assert analog.TileConfig.from_dict(tomllib.loads(tomli_w.dumps(cfg.to_dict()))) == cfg
    preset = analog.presets.from_dict({"preset": "softbounds-mapped"})
    assert preset.mapping.enabled and isinstance(preset.device, devices.SoftBounds)
    off = analog.presets.from_dict({"preset": "softbounds-mapped", "mapping": {"weight_scaling_omega": "off"}})
    assert not off.mapping.enabled


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mapped_tile_on_cuda_matches_cpu_scales_and_trains():
    cfg = _mapped(analog.TileConfig(device=devices.SoftBounds(), seed=0), 0.5, remap_every=2)
    layer = analog.AnalogLinear(6, 4, config=cfg)
    s_cpu = layer.tile.out_scale.clone()
    layer = layer.cuda()
    assert layer.tile.out_scale.is_cuda and torch.equal(layer.tile.out_scale.cpu(), s_cpu)
    opt = analog.AnalogOptimizer(layer.parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.rand(8, 6, device="cuda")).square().sum().backward()
        opt.step()
    assert layer.get_weights().is_cuda and torch.equal(layer.weight.detach(), layer.get_weights())
