"""Public API of the analog core: ideal equivalence with torch, configs, conversion, optimizer."""
import copy
import math

import pytest
import torch
from torch import nn

import analog
from analog import algorithms, devices


def _mlp():
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 5))


@pytest.mark.parametrize("analog_bias", [False, True])
def test_ideal_config_equals_nn_linear_and_sgd(analog_bias):
    torch.manual_seed(0)
    digital = _mlp().double()
    cfg = analog.TileConfig.ideal_digital().replace(analog_bias=analog_bias)
    model = analog.convert_to_analog(digital, cfg).double()
    opt_a = analog.AnalogOptimizer(model.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(digital.parameters(), lr=0.1)
    x = torch.randn(8, 12, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y = torch.randint(0, 5, (8,))
    for _ in range(3):
        for opt, m, inp in ((opt_a, model, x), (opt_d, digital, x2)):
            opt.zero_grad()
            inp.grad = None
            loss = nn.functional.cross_entropy(m(inp), y)
            loss.backward()
            opt.step()
        assert torch.allclose(x.grad, x2.grad, atol=1e-12)
    for la, ld in ((model[0], digital[0]), (model[2], digital[2])):
        assert torch.allclose(la.get_weights(), ld.weight, atol=1e-12)
        assert torch.allclose(la.get_bias(), ld.bias, atol=1e-12)
        assert torch.allclose(la.weight, ld.weight, atol=1e-12)   # mirrored parameter
    assert torch.allclose(model(x), digital(x), atol=1e-12)


def test_ideal_conv_equals_nn_conv2d_forward_and_backward(monkeypatch):
    monkeypatch.setattr(analog.layers, "FILL_WEIGHT_GRAD", True)
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, kernel_size=3, stride=2, padding=1).double()
    aconv = analog.convert_to_analog(conv, analog.TileConfig.ideal_digital()).double()
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y1, y2 = aconv(x), conv(x2)
    assert y1.shape == y2.shape and torch.allclose(y1, y2, atol=1e-12)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    assert torch.allclose(x.grad, x2.grad, atol=1e-12)
    assert torch.allclose(aconv.weight.grad, conv.weight.grad, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(kernel_size=3, padding="same"), dict(kernel_size=(2, 4), padding="same", dilation=2),
                                dict(kernel_size=3, padding="valid", stride=2), dict(kernel_size=(3, 1), padding=(2, 0))])
def test_ideal_conv_padding_variants_match_torch(kw):
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, **kw).double()
    aconv = analog.convert_to_analog(conv, analog.TileConfig.ideal_digital()).double()
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64)
    assert torch.allclose(aconv(x), conv(x), atol=1e-12)


def test_config_round_trip_and_toml(tmp_path):
    tomli_w = pytest.importorskip("tomli_w")
    import tomllib
    cfg = analog.TileConfig(
        device=devices.Piecewise(piecewise_up=(1.0, 0.5), piecewise_down=(0.5, 1.0)),
        algorithm=algorithms.AnalogSGD(),
        forward=analog.IOConfig(inp_res=6, out_res=8, out_noise=0.02, inp_rounding="stochastic"),
        backward=analog.IOConfig.ideal(),
        update=analog.UpdateConfig(desired_bl=15, mode="per_sample"),
        analog_bias=True, seed=3)
    text = tomli_w.dumps(cfg.to_dict())
    assert analog.TileConfig.from_dict(tomllib.loads(text)) == cfg
    path = tmp_path / "tile.toml"
    path.write_text("[model.analog]\n" + text.replace("\n[", "\n[model.analog."))
    assert analog.TileConfig.from_toml(str(path), table="model.analog") == cfg
    with pytest.raises(ValueError, match="model.nope"):
        analog.TileConfig.from_toml(str(path), table="model.nope")
    for name in analog.devices.DEVICES:
        dev = analog.devices.DEVICES[name]()
        assert analog.devices.device_from_dict(dev.to_dict()) == dev


@pytest.mark.parametrize("make, field", [
    (lambda: devices.SoftBounds(dw_min=-1e-3), "dw_min"),
    (lambda: devices.ConstantStep(w_min=0.5, w_max=0.1), "w_min"),
    (lambda: analog.IOConfig(inp_res=0), "inp_res"),
    (lambda: analog.IOConfig(noise_management="bogus"), "noise_management"),
    (lambda: analog.UpdateConfig(desired_bl=0), "desired_bl"),
    (lambda: analog.TileConfig.from_dict({"device": {"type": "NoSuchDevice"}}), "device.type"),
    (lambda: analog.TileConfig.from_dict({"device": {"type": "PowerStep", "gamma": "a"}}), "device.gamma: got 'a', must be a number"),
    (lambda: analog.TileConfig.from_dict({"forward": {"out_res": -2}}), "forward.out_res"),
    (lambda: analog.TileConfig.from_dict({"update": {"desired_bl": 3, "typo": 1}}), "update.typo"),
    (lambda: analog.TileConfig.from_dict({"device": {"type": "SoftBounds", "w_max": -0.1}}), "device."),
])
def test_invalid_configs_name_the_field(make, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        make()


def test_set_weights_clips_to_device_bounds_and_get_weights_reads_back():
    dev = devices.ConstantStep(w_max=0.5, w_min=-0.5, w_max_dtod=0.0, w_min_dtod=0.0)
    layer = analog.AnalogLinear(4, 3, bias=False, config=analog.TileConfig(device=dev))
    w = torch.tensor([[2.0, -2.0, 0.1, 0.0]] * 3)
    layer.set_weights(w)
    assert torch.equal(layer.get_weights(), torch.tensor([[0.5, -0.5, 0.1, 0.0]] * 3))
    with pytest.raises(ValueError, match="weight: got shape"):
        layer.set_weights(torch.zeros(4, 3))


def test_manual_seed_makes_models_reproducible_and_layers_differ():
    cfg = analog.TileConfig()
    torch.manual_seed(5)
    a = analog.convert_to_analog(_mlp(), cfg)
    torch.manual_seed(5)
    b = analog.convert_to_analog(_mlp(), cfg)
    x = torch.randn(3, 12)
    assert torch.equal(a(x), b(x))
    da = a[0].tile.algorithm_state.array.dw_min
    assert torch.equal(da, b[0].tile.algorithm_state.array.dw_min)
    assert not torch.equal(da[:5, :5], a[2].tile.algorithm_state.array.dw_min[:5, :5])
    seeded = analog.TileConfig(seed=11)
    c = analog.convert_to_analog(_mlp(), seeded)
    d = analog.convert_to_analog(_mlp(), seeded)
    assert torch.equal(c[0].tile.algorithm_state.array.dw_min, d[0].tile.algorithm_state.array.dw_min)


def test_optimizer_pulses_tiles_and_sgd_for_digital_params():
    torch.manual_seed(2)
    model = nn.Sequential(analog.AnalogLinear(6, 4, config=analog.TileConfig()), nn.Linear(4, 2))
    opt = analog.AnalogOptimizer(model.parameters(), lr=0.5)
    assert len(opt.tiles()) == 1
    x = torch.randn(16, 6)
    opt.zero_grad()
    model(x).pow(2).sum().backward()
    assert model[0].tile.has_pending
    w0, d0 = model[0].get_weights(), model[1].weight.detach().clone()
    g1 = model[1].weight.grad.clone()
    opt.step()
    assert not model[0].tile.has_pending
    assert not torch.equal(model[0].get_weights(), w0)
    assert torch.allclose(model[1].weight, d0 - 0.5 * g1)
    assert torch.equal(model[0].weight.detach(), model[0].get_weights())


def test_deepcopy_keeps_tile_link():
    model = analog.convert_to_analog(_mlp(), analog.TileConfig())
    clone = copy.deepcopy(model)
    assert analog.tile_of(clone[0].weight) is clone[0].tile
    assert clone[0].tile is not model[0].tile
    before = model[0].get_weights()
    opt = analog.AnalogOptimizer(clone.parameters(), lr=0.5)
    clone(torch.randn(8, 12)).pow(2).sum().backward()
    opt.step()
    assert torch.equal(clone[0].weight.detach(), clone[0].get_weights())
    assert not torch.equal(clone[0].get_weights(), before)
    assert torch.equal(model[0].get_weights(), before)          # the original is untouched
    double = clone.double()
    assert torch.equal(double[0].weight.detach(), double[0].get_weights())
    assert double[0].weight.dtype == torch.float64


def test_state_dict_round_trip_restores_the_tile():
    torch.manual_seed(3)
    a = analog.convert_to_analog(_mlp(), analog.TileConfig())
    torch.manual_seed(4)
    b = analog.convert_to_analog(_mlp(), analog.TileConfig())
    b.load_state_dict(a.state_dict())
    for la, lb in ((a[0], b[0]), (a[2], b[2])):
        assert torch.equal(la.get_weights(), lb.get_weights())
        assert torch.equal(lb.weight.detach(), lb.get_weights())
        assert torch.equal(la.tile.algorithm_state.array.dw_min, lb.tile.algorithm_state.array.dw_min)


@pytest.mark.parametrize("change", [dict(analog_bias=True), dict(update=analog.UpdateConfig(mode="per_sample")),
                                    dict(update=analog.UpdateConfig(pulse_type="mean")),
                                    dict(update=analog.UpdateConfig(pulse_type="none"))])
def test_update_variants_reduce_the_loss(change):
    torch.manual_seed(0)
    cfg = analog.TileConfig(device=devices.ConstantStep(dw_min=1e-3), seed=1).replace(**change)
    model = analog.convert_to_analog(_mlp(), cfg)
    opt = analog.AnalogOptimizer(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 12, generator=g)
    y = (x[:, :5] * 2).argmax(1)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses[::10]
    if change.get("analog_bias"):
        assert model[0].tile.in_features == 13 and analog.tile_of(model[0].bias) is model[0].tile
        assert torch.equal(model[0].bias.detach(), model[0].tile.get_weights()[:, -1])


def test_presets_build():
    for name in analog.presets.names():
        cfg = analog.presets.tile_config(name)
        layer = analog.AnalogLinear(5, 3, config=cfg)
        assert torch.isfinite(layer(torch.randn(2, 5))).all()
    assert analog.presets.from_dict({"preset": "ecram"}).device == devices.ECRAM()
    assert math.isinf(analog.IOConfig.ideal().out_bound)
