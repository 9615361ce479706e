"""analog.inference: programming noise, drift, global drift compensation, weight-noise sweep."""
import pytest
import torch
from torch import nn

import analog
from analog import devices
from analog.inference import InferenceConfig, add_weight_noise, drift_to, program_for_inference


def _model(seed=0):
    torch.manual_seed(seed)
    cfg = analog.TileConfig(device=devices.ConstantStep(w_max=2.0, w_min=-2.0, w_max_dtod=0.0, w_min_dtod=0.0),
                            forward=analog.IOConfig.ideal(), backward=analog.IOConfig.ideal())
    return analog.convert_to_analog(nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)), cfg)


def test_programming_noise_has_the_configured_std():
    model = _model()
    before = model[0].get_weights()
    program_for_inference(model, InferenceConfig(prog_noise=0.05, drift_nu=0.0, drift_nu_std=0.0), seed=1)
    err = model[0].get_weights() - before
    assert abs(err.std().item() / (0.05 * before.abs().max().item()) - 1) < 0.05
    assert abs(err.mean().item()) < 0.005 * before.abs().max().item()


def test_drift_follows_power_law_and_compensation_restores_outputs():
    model = _model()
    x = torch.rand(200, 64)
    cfg = InferenceConfig(prog_noise=0.0, drift_nu=0.06, drift_nu_std=0.0, drift_compensation=False)
    program_for_inference(model, cfg)
    w0 = model[0].get_weights()
    y0 = model(x)
    drift_to(model, 20.0 * 1e4)
    assert torch.allclose(model[0].get_weights(), w0 * 1e4 ** -0.06, rtol=1e-5, atol=1e-7)
    y_drift = model(x)
    # with compensation (same nu everywhere) the outputs come back exactly
    model2 = _model()
    program_for_inference(model2, InferenceConfig(prog_noise=0.0, drift_nu=0.06, drift_nu_std=0.0))
    factors = drift_to(model2, 20.0 * 1e4)
    assert factors[0] == pytest.approx(1e4 ** 0.06, rel=1e-4)
    y_comp = model2(x)
    err_drift = (y_drift - y0).norm() / y0.norm()
    err_comp = (y_comp - y0).norm() / y0.norm()
    assert err_drift > 0.2 and err_comp < 1e-4


def test_device_to_device_drift_spread_is_only_partly_compensated():
    model = _model()
    x = torch.rand(200, 64)
    program_for_inference(model, InferenceConfig(prog_noise=0.0, drift_nu=0.06, drift_nu_std=0.03), seed=3)
    y0 = model(x)
    drift_to(model, 20.0 * 1e5)
    err = ((model(x) - y0).norm() / y0.norm()).item()
    assert 1e-3 < err < 0.5                      # spread of nu: residual error remains, bounded


def test_weight_noise_sweep_scales_with_eta():
    torch.manual_seed(0)
    digital = nn.Linear(100, 50)
    model = _model()
    w = model[0].get_weights()
    d0 = digital.weight.detach().clone()
    add_weight_noise(model, 0.1, seed=2)
    add_weight_noise(digital, 0.2, seed=2)
    assert abs((model[0].get_weights() - w).std().item() / (0.1 * w.std().item()) - 1) < 0.05
    assert abs((digital.weight - d0).std().item() / (0.2 * d0.std().item()) - 1) < 0.05


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="prog_noise"):
        InferenceConfig(prog_noise=-1)
    with pytest.raises(ValueError, match="t0"):
        InferenceConfig(t0=0)
    with pytest.raises(ValueError, match="not programmed"):
        drift_to(_model(), 100.0)
    with pytest.raises(ValueError, match="no analog tiles"):
        program_for_inference(nn.Linear(2, 2))
    assert InferenceConfig.from_dict(InferenceConfig().to_dict()) == InferenceConfig()
