"""Programming trained weights onto tiles (the pretrained shared initialization's write path)."""
import pytest
import torch
from torch import nn

import analog
from analog.inference import WeightNoise, program_weights


def _models(seed: int = 0):
    torch.manual_seed(seed)
    digital = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    # bounds without device-to-device spread: clipping is tested elsewhere, here only the write noise
    cfg = analog.TileConfig.from_dict({"device": {"type": "ConstantStep", "w_max_dtod": 0.0, "w_min_dtod": 0.0}})
    return digital, analog.convert_to_analog(nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)), cfg)


def _errors(digital, model):
    """Per tile: std of (written - target) / std(target)."""
    sd = digital.state_dict()
    out = []
    for name, layer in model.named_modules():
        if isinstance(layer, (analog.AnalogLinear, analog.AnalogConv2d)):
            w = sd[f"{name}.weight"]
            out.append(float((layer.get_weights() - w).std() / w.std()))
    return out


def test_programming_reproduces_weights_within_programming_noise():
    digital, model = _models()
    program_weights(model, digital.state_dict(), WeightNoise(eta=0.0), seed=0)
    assert max(_errors(digital, model)) < 1e-6                    # an ideal write is exact
    for eta in (0.02, 0.05):
        program_weights(model, digital.state_dict(), WeightNoise(eta=eta), seed=1)
        for err in _errors(digital, model):                          # std of the error = eta * std(W)
            assert 0.8 * eta < err < 1.2 * eta, (eta, err)
    x = torch.randn(16, 64)
    model.eval()
    with torch.no_grad():                                            # and the layer computes with them
        assert torch.corrcoef(torch.stack([model(x).flatten(), digital(x).flatten()]))[0, 1] > 0.9


def test_programming_noise_is_seeded_and_differs_between_chips():
    digital, model = _models()
    program_weights(model, digital.state_dict(), seed=5)
    a = model[0].get_weights().clone()
    program_weights(model, digital.state_dict(), seed=5)
    assert torch.equal(a, model[0].get_weights())
    program_weights(model, digital.state_dict(), seed=6)
    assert not torch.allclose(a, model[0].get_weights())


def test_programming_rejects_another_architecture():
    digital, model = _models()
    with pytest.raises(ValueError, match=r"state: has no '2\.(bias|weight)'"):
        program_weights(model, {k: v for k, v in digital.state_dict().items() if not k.startswith("2.")})
    bad = dict(digital.state_dict(), **{"0.weight": torch.zeros(48, 63)})
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(48, 63\)"):
        program_weights(model, bad)
    with pytest.raises(ValueError, match="chip: got dict"):
        program_weights(model, digital.state_dict(), {"eta": 0.1})
