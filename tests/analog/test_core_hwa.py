"""analog.inference hardware-aware training: noise at every training forward, periphery, clipping."""
import pytest
import torch
from torch import nn

import analog
from analog import inference


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))


def test_weight_noise_is_drawn_at_every_training_forward_only():
    model, x = _model(), torch.rand(8, 20)
    hwa = inference.hardware_aware(model, inference.HWAConfig(weight_noise=inference.WeightNoise(0.2),
                                                              forward=analog.IOConfig.ideal(), clip_sigma=None))
    a, b = hwa(x).detach(), hwa(x).detach()
    assert not torch.equal(a, b)
    rel = float((a - model(x)).norm() / model(x).norm())
    assert 0.05 < rel < 0.6
    hwa.eval()
    assert torch.allclose(hwa(x), model(x), atol=1e-6)            # eval: clean weights, ideal periphery
    relative = inference.hardware_aware(model, inference.HWAConfig(
        weight_noise=inference.WeightNoise(0.2, relative=True), forward=analog.IOConfig.ideal(), clip_sigma=None))
    assert not torch.equal(relative(x), model(x))


def test_the_forward_value_is_the_periphery_and_the_gradient_reaches_the_weights():
    torch.manual_seed(1)
    io = analog.IOConfig(out_noise=0.0, inp_res=4, out_res=5, out_bound=4.0)
    layer = inference.hardware_aware(nn.Linear(20, 3), inference.HWAConfig(
        weight_noise=inference.WeightNoise(0.0), forward=io, clip_sigma=None))
    x = torch.rand(8, 20)
    y = layer(x)
    expected = analog.noisy_mvm(x, layer.weight.detach(), io) + layer.bias.detach()
    assert torch.allclose(y, expected, atol=1e-6)                 # DAC/ADC quantized value
    y.sum().backward()
    assert torch.allclose(layer.weight.grad, torch.ones(3, 1) * x.sum(0), atol=1e-5)   # straight-through


def test_any_torch_optimizer_trains_it_and_clipping_holds_k_std():
    model = _model()
    hwa = inference.hardware_aware(model, inference.HWAConfig(weight_noise=inference.WeightNoise(0.05),
                                                              forward=analog.IOConfig.ideal(), clip_sigma=2.0))
    with torch.no_grad():
        hwa[0].weight[0, 0] = 5.0                                  # an outlier
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 20, generator=g)
    y = (x[:, :3] > 0.5).long().sum(1).clamp(max=2)
    opt = torch.optim.Adam(hwa.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(hwa(x), y)
        loss.backward()
        opt.step()
        first = float(loss) if first is None else first
    assert float(loss) < 0.7 * first
    hwa(x)                                                         # a training forward clips first
    w = hwa[0].weight.detach()
    assert float(w.abs().max()) <= 2.0 * float(w.std()) * 1.05
    deployed = analog.deploy(hwa, inference.PCMLike(), 3600.0)
    assert isinstance(deployed[0], analog.AnalogLinear)
    assert deployed[0].tile.config.forward == analog.IOConfig.ideal()    # the HWA periphery travels along


def test_hwa_twin_of_an_analog_model_and_conv():
    torch.manual_seed(0)
    am = analog.convert_to_analog(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 36, 4)),
                                  analog.TileConfig(seed=0))
    hwa = inference.hardware_aware(am, inference.HWAConfig(weight_noise=inference.WeightNoise(0.0),
                                                           forward=analog.IOConfig.ideal()))
    assert isinstance(hwa[0], inference.HWAConv2d) and isinstance(hwa[2], inference.HWALinear)
    assert torch.equal(hwa[0].weight.detach(), am[0].get_weights())
    with pytest.raises(ValueError, match="clip_sigma"):
        inference.HWAConfig(clip_sigma=0)
    with pytest.raises(ValueError, match="no Linear/Conv2d"):
        inference.hardware_aware(nn.ReLU())


def test_same_padded_analog_conv_has_no_hwa_twin_but_explicit_padding_does():
    same = analog.AnalogConv2d(1, 2, 3, padding="same", config=analog.TileConfig.ideal_digital(seed=0))
    assert same.same_padding and same.padding == (0, 0)
    with pytest.raises(ValueError, match=r"^model: AnalogConv2d with padding='same' has no HWA twin"):
        inference.hardware_aware(same)
    explicit = analog.AnalogConv2d(1, 2, 3, padding=1, config=analog.TileConfig.ideal_digital(seed=0))
    assert not explicit.same_padding
    twin = inference.hardware_aware(explicit)
    assert twin.padding == (1, 1) and twin(torch.rand(1, 1, 5, 5)).shape == (1, 2, 5, 5)


@pytest.mark.parametrize("relative", [False, True])
def test_training_weights_carry_noise_of_the_configured_size(relative):
    """Unit inputs read the noisy weights back exactly (ideal periphery): their spread around the
    clean weights is eta * std(W) (additive) or eta * |w| (relative), fresh at every forward."""
    model = _model()
    hwa = inference.hardware_aware(model, inference.HWAConfig(
        weight_noise=inference.WeightNoise(0.2, relative=relative), forward=analog.IOConfig.ideal(), clip_sigma=None))
    layer, w = hwa[0], model[0].weight.detach()
    reads = [(layer(torch.eye(20)) - layer.bias.detach()).detach().T for _ in range(4)]
    for noisy in reads:
        scaled = (noisy - w) / (w if relative else w.std())
        assert float(scaled.std()) == pytest.approx(0.2, rel=0.12)     # 320 weights: sampling spread ~4%
        assert abs(float(scaled.mean())) < 0.05
    assert not torch.equal(reads[0], reads[1])
