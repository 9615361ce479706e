"""analog.inference: the noise-model protocol, PCMLike physics, drift compensation, deploy, WeightNoise."""
import copy
import math

import pytest
import torch
from torch import nn

import analog
from analog import devices, inference
from analog.inference.noise import Conductances


def _digital(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


def _analog(seed=0, forward=None):
    cfg = analog.TileConfig(device=devices.ConstantStep(w_max=2.0, w_min=-2.0, w_max_dtod=0.0, w_min_dtod=0.0),
                            forward=forward or analog.IOConfig.ideal(), backward=analog.IOConfig.ideal(), seed=seed)
    return analog.convert_to_analog(_digital(seed), cfg)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- PCMLike physics
def test_programming_noise_follows_the_polynomial_of_the_target_conductance():
    chip = inference.PCMLike(drift_scale=0.0, read_noise_scale=0.0)
    levels = torch.tensor([0.1, 0.5, 1.0])                       # fractions of g_max
    w = levels.repeat_interleave(20000).reshape(3, -1)           # positive weights: G+ = target, G- = 0
    w[0, 0] = 1.0                                                 # max|w| = 1 -> maps to g_max
    g = chip.program(w, _gen(1))
    target = w / g.scale
    for row, x in enumerate(levels.tolist()):
        err = (g.g_plus[row, 1:] - target[row, 1:])
        sigma = (0.26348 + 1.9650 * x - 1.1731 * x * x)           # uS at g_max = 25 uS
        assert err.std().item() == pytest.approx(sigma, rel=0.03)
    assert float(g.g_minus.min()) >= 0.0                          # G- targets 0: noise clipped at 0,
    assert 0.3 < float((g.g_minus > 0).float().mean()) < 0.7      # about half the draws stay above it
    assert float(chip.prog_sigma(torch.tensor(0.0))) == pytest.approx(0.26348)


def test_drift_follows_the_power_law_per_device_with_d2d_spread():
    chip = inference.PCMLike()
    w = torch.rand(64, 64) * 2 - 1
    g = chip.program(w, _gen(0))
    times = torch.logspace(1, 8, 8).tolist()
    logs = torch.stack([chip.drift(g, t).g_plus.clamp_min(1e-12).log() for t in times])   # (T, out, in)
    logt = torch.tensor([math.log(t + chip.t0) for t in times])
    on = g.g_plus > 1e-3                                          # devices holding a conductance
    xc = logt - logt.mean()
    slope = ((logs - logs.mean(0)) * xc[:, None, None]).sum(0) / (xc * xc).sum()
    assert torch.allclose(slope[on], -g.nu_plus[on], atol=1e-5)  # log-log slope = -nu, device by device
    assert float(g.nu_plus[on].std()) > 0.005                     # device-to-device spread of nu
    # mean exponent of the published fit: ~0.049 near g_max, larger for low conductances
    high = g.g_plus > 0.8 * chip.g_max
    low = (g.g_plus > 0.01 * chip.g_max) & (g.g_plus < 0.05 * chip.g_max)
    assert float(g.nu_plus[high].mean()) == pytest.approx(0.05, abs=0.006)
    assert float(g.nu_plus[low].mean()) > float(g.nu_plus[high].mean()) + 0.02


def test_read_noise_grows_with_time_like_1_over_f():
    chip = inference.PCMLike(prog_noise_scale=0.0, drift_scale=0.0)
    w = torch.full((200, 200), 0.5)
    w[0, 0] = 1.0
    g = chip.program(w, _gen(0))
    rel = []
    for t in (1.0, 3600.0, 3.15e7):
        gt = chip.drift(g, t)
        rel.append(((chip.read(gt, _gen(5)) - gt.weights())[1:, 1:] / 0.5).std().item())
    expected = [0.0088 / 0.5 ** 0.65 * math.sqrt(math.log((t + 20.0 + 250e-9) / 500e-9)) for t in (1.0, 3600.0, 3.15e7)]
    for got, want in zip(rel, expected):
        assert got == pytest.approx(want, rel=0.03)
    assert rel[0] < rel[1] < rel[2]


def test_differential_pairs_and_g_max():
    chip = inference.PCMLike(prog_noise_scale=0.0, drift_scale=0.0, read_noise_scale=0.0, g_max=10.0)
    w = torch.tensor([[0.5, -1.0, 0.0]])
    g = chip.program(w, _gen(0))
    assert g.g_plus.tolist() == [[5.0, 0.0, 0.0]] and g.g_minus.tolist() == [[0.0, 10.0, 0.0]]
    assert torch.allclose(chip.read(chip.drift(g, 100.0), _gen(0)), w)
    per_col = inference.PCMLike(prog_noise_scale=0.0, per_column=True).program(torch.tensor([[1.0], [0.1]]), _gen(0))
    assert per_col.g_plus.flatten().tolist() == pytest.approx([25.0, 25.0])


# ---------------------------------------------------------------- deploy
def test_deploy_leaves_the_model_bit_identical():
    noisy = analog.IOConfig()                                     # reference periphery: noisy forward
    model = _analog(0, forward=noisy)
    twin = copy.deepcopy(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(32, 64)
    rng = torch.get_rng_state()
    deployed = analog.deploy(model, inference.PCMLike(), t_seconds=86400.0, compensation=True, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)               # the caller's RNG is not consumed
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(model(x), twin(x))                         # same outputs, same noise stream
    assert not torch.equal(deployed[0].get_weights(), model[0].get_weights())
    assert model.training and not deployed.training


def test_same_seed_same_chip_other_seed_other_chip():
    model, x = _digital(), torch.rand(16, 64)
    chip = inference.PCMLike()
    a = analog.deploy(model, chip, 3600.0, seed=3)
    b = analog.deploy(model, chip, 3600.0, seed=3)
    c = analog.deploy(model, chip, 3600.0, seed=4)
    assert torch.equal(a[0].get_weights(), b[0].get_weights()) and torch.equal(a(x), b(x))
    assert not torch.equal(a[0].get_weights(), c[0].get_weights())
    p = inference.program(model, chip, seed=3)                    # program once, read at another time:
    assert torch.equal(p.at(3600.0)(x), a(x))                     # the same chip as deploy(seed=3)


def test_compensation_restores_the_output_scale():
    model, x = _digital(), torch.rand(256, 64)
    chip = inference.PCMLike(prog_noise_scale=0.0, read_noise_scale=0.0)
    p = inference.program(model, chip, seed=0)
    y0 = p.at(0.0, compensation=False)[0](x).detach()                   # first layer's outputs right after programming
    year = 3.15e7
    with torch.no_grad():
        y_raw = p.at(year, compensation=False)[0](x)
        y_glob = p.at(year, compensation=True)[0](x)
        y_col = p.at(year, compensation=inference.ColumnDriftCompensation())[0](x)
    bias = model[0].bias.detach()
    ratio = lambda y: float((y.detach() - bias).norm() / (y0 - bias).norm())  # noqa: E731
    assert ratio(y_raw) < 0.6                                     # ((3.15e7 + 20) / 20)^-0.05.. = 0.49..
    assert ratio(y_glob) == pytest.approx(1.0, abs=0.03)
    col = (y_col - bias).norm(dim=0) / (y0 - bias).norm(dim=0)
    glob = (y_glob - bias).norm(dim=0) / (y0 - bias).norm(dim=0)
    col_err, glob_err = (col - 1).abs(), (glob - 1).abs()
    assert float(col_err.mean()) < 0.5 * float(glob_err.mean())   # per column follows each column's drift
    assert float(col_err.median()) < 0.02


def test_weight_noise_eta_zero_changes_nothing_and_eta_sets_the_std():
    model, x = _digital(), torch.rand(16, 64)
    same = analog.deploy(model, inference.WeightNoise(eta=0.0), 0.0, compensation=False)
    assert torch.equal(same(x), model(x))
    am = _analog()
    assert torch.equal(analog.deploy(am, inference.WeightNoise(0.0), compensation=False)[0].get_weights(),
                       am[0].get_weights())
    w = torch.randn(300, 300) * 0.2
    add = inference.WeightNoise(eta=0.1).program(w, _gen(0)).weights() - w
    rel = inference.WeightNoise(eta=0.1, relative=True).program(w, _gen(0)).weights() - w
    assert add.std().item() == pytest.approx(0.1 * w.std().item(), rel=0.02)
    assert (rel / w).std().item() == pytest.approx(0.1, rel=0.02)


def test_deploy_works_for_conv_mapped_and_analog_models():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    mapped = analog.convert_to_analog(cnn, analog.TileConfig(
        mapping=analog.MappingConfig(weight_scaling_omega=0.8), forward=analog.IOConfig.ideal(), seed=1))
    x = torch.rand(8, 1, 8, 8)
    chip = inference.PCMLike(prog_noise_scale=0.0, read_noise_scale=0.0)
    with torch.no_grad():
        y0 = cnn(x)
        for model in (cnn, mapped, inference.hardware_aware(cnn, inference.HWAConfig(forward=analog.IOConfig.ideal()))):
            err = {comp: float((analog.deploy(model, chip, 86400.0, compensation=comp)(x) - y0).norm() / y0.norm())
                   for comp in (False, True)}
            assert err[True] < 0.6 * err[False]                   # what remains is the spread of nu
    assert torch.equal(mapped[0].tile.out_scale, analog.deploy(mapped, chip, 10.0)[0].tile.out_scale)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_deploy_on_cuda_matches_cpu():
    model, x = _digital(), torch.rand(16, 64)
    chip = inference.PCMLike()
    cpu = analog.deploy(model, chip, 3600.0, seed=1)(x)
    gpu = analog.deploy(copy.deepcopy(model).cuda(), chip, 3600.0, seed=1)(x.cuda())
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="g_max"):
        inference.PCMLike(g_max=0)
    with pytest.raises(ValueError, match="eta"):
        inference.WeightNoise(eta=-0.1)
    with pytest.raises(ValueError, match="t_seconds"):
        analog.deploy(_digital(), t_seconds=-1.0)
    with pytest.raises(ValueError, match="compensation"):
        analog.deploy(_digital(), compensation="yes")
    with pytest.raises(ValueError, match="chip"):
        analog.deploy(_digital(), chip="pcm")
    with pytest.raises(ValueError, match="no Linear/Conv2d"):
        analog.deploy(nn.ReLU())
    with pytest.raises(ValueError, match="type"):
        inference.noise_model_from_dict({"type": "flash"})
    assert inference.noise_model_from_dict({"type": "pcm", **inference.PCMLike().to_dict()}) == inference.PCMLike()
    with pytest.raises(ValueError, match="scale"):
        _analog()[0].tile.set_output_scale(torch.ones(3))
    assert isinstance(Conductances(torch.ones(1), torch.zeros(1), torch.ones(())).weights(), torch.Tensor)
