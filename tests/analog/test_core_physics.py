"""The physics the simulator must get right (issue 2, items 1-4), each with a seeded statistical check."""
import math

import pytest
import torch

import analog
from analog import devices
from analog.mvm import converter_step


def _quiet(device_cls, **kw):
    """A device without device-to-device variation or cycle-to-cycle noise."""
    base = dict(dw_min_dtod=0.0, dw_min_std=0.0, w_max_dtod=0.0, w_min_dtod=0.0, up_down_dtod=0.0)
    base.update(kw)
    return device_cls(**base)


def _array(device, out=6, inp=8, seed=0, **update):
    cfg = analog.UpdateConfig(**update)
    return analog.PulsedArray(out, inp, device, cfg, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- 1. noisy MVM
def test_dac_only_error_bounded_by_quantization_step():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 32, generator=g) * torch.rand(2000, 1, generator=g) * 3
    w = torch.randn(16, 32, generator=g) * 0.2
    io = analog.IOConfig(inp_res=7, out_res=None, out_noise=0.0, out_bound=math.inf, bound_management="none")
    y = analog.noisy_mvm(x, w, io, g)
    err = (y - x @ w.t()).abs()
    alpha = x.abs().amax(1, keepdim=True)
    bound = alpha * converter_step(7, 1.0) / 2 * w.abs().sum(1)[None, :]
    assert bool((err <= bound * (1 + 1e-5) + 1e-6).all())
    assert err.max() > 0.1 * bound.max()          # quantization really happens
    # stochastic rounding: error below one full step per input, and unbiased on average
    io_s = analog.IOConfig(inp_res=7, out_res=None, out_noise=0.0, out_bound=math.inf,
                           bound_management="none", inp_rounding="stochastic")
    ys = analog.noisy_mvm(x, w, io_s, g)
    assert bool(((ys - x @ w.t()).abs() <= 2 * bound * (1 + 1e-5) + 1e-6).all())


def test_output_noise_std_is_sigma_times_alpha():
    g = torch.Generator().manual_seed(1)
    sigma = 0.1
    x = torch.randn(4000, 24, generator=g) * (0.5 + 4 * torch.rand(4000, 1, generator=g))
    w = torch.randn(32, 24, generator=g) * 0.1
    io = analog.IOConfig(inp_res=None, out_res=None, out_noise=sigma, out_bound=math.inf,
                         inp_bound=math.inf, bound_management="none")
    resid = analog.noisy_mvm(x, w, io, g) - x @ w.t()
    alpha = x.abs().amax(1, keepdim=True)
    assert abs((resid / alpha).std().item() / sigma - 1) < 0.05
    assert abs(resid.std().item() / (sigma * alpha.square().mean().sqrt().item()) - 1) < 0.05
    assert abs((resid / alpha).mean().item()) < 0.05 * sigma          # zero mean
    # noise management "none": the residual is sigma itself, whatever the input size
    io_none = analog.IOConfig(inp_res=None, out_res=None, out_noise=sigma, out_bound=math.inf,
                              inp_bound=math.inf, bound_management="none", noise_management="none")
    resid = analog.noisy_mvm(x, w, io_none, g) - x @ w.t()
    assert abs(resid.std().item() / sigma - 1) < 0.05


def test_weight_noise_is_fresh_per_vector_with_std_w_noise_times_input_norm():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3000, 20, generator=g)
    w = torch.randn(8, 20, generator=g) * 0.1
    io = analog.IOConfig(inp_res=None, out_res=None, out_noise=0.0, w_noise=0.05, out_bound=math.inf,
                         inp_bound=math.inf, bound_management="none", noise_management="none")
    resid = analog.noisy_mvm(x, w, io, g) - x @ w.t()
    norm = x.norm(dim=1, keepdim=True)
    assert abs((resid / norm).std().item() / 0.05 - 1) < 0.05


def test_output_clipping_and_bound_management_recovers():
    w = torch.full((4, 64), 0.5)
    x = torch.full((3, 64), 0.9)
    x[1] *= -1
    x[2, :32] = 0.0                       # 14.4: saturates once after noise management
    true = x @ w.t()
    clip = analog.IOConfig(out_noise=0.0, bound_management="none")
    y_clip = analog.noisy_mvm(x, w, clip)
    alpha = x.abs().amax(1, keepdim=True)
    assert torch.allclose(y_clip.abs(), (12.0 * alpha).expand_as(y_clip), rtol=1e-5)   # clipped at out_bound
    bm = analog.IOConfig(inp_res=None, out_noise=0.0, bound_management="iterative")
    y_bm = analog.noisy_mvm(x, w, bm)
    # exact up to the ADC step, amplified by alpha and the halving (x4 for rows 0-1, x2 for row 2)
    adc = converter_step(9, 12.0) * alpha * torch.tensor([[4.0], [4.0], [2.0]])
    assert bool(((y_bm - true).abs() <= adc / 2 + 1e-5).all())
    # with the 7-bit DAC too: the input quantization of the halved input adds ~1-2 %
    y_dac = analog.noisy_mvm(x, w, analog.IOConfig(out_noise=0.0))
    assert torch.allclose(y_dac, true, rtol=0.03)
    # with output noise too, the recovered result stays within the noise amplified by the halving
    y_noisy = analog.noisy_mvm(x, w, analog.IOConfig(), torch.Generator().manual_seed(0))
    assert torch.allclose(y_noisy, true, rtol=0.05)
    # rows that do not saturate are untouched by bound management
    no_bm = analog.IOConfig(inp_res=None, out_noise=0.0, bound_management="none")
    w_small = torch.full((4, 64), 0.1)      # scaled output 6.4 < 12: no saturation
    assert torch.allclose(analog.noisy_mvm(x, w_small, bm), analog.noisy_mvm(x, w_small, no_bm))
    assert torch.allclose(analog.noisy_mvm(x, w_small, bm), x @ w_small.t(), rtol=0.01)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_all_zero_rows_give_finite_near_zero_outputs(rounding):
    x = torch.zeros(4, 9)
    x[1, 3] = 1e-30
    x[2] = torch.linspace(-1, 1, 9)
    w = torch.randn(5, 9)
    io = analog.IOConfig(inp_rounding=rounding, out_rounding=rounding)
    y = analog.noisy_mvm(x, w, io, torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(y).all())
    assert y[0].abs().max() < 1e-12 and y[3].abs().max() < 1e-12
    assert torch.allclose(y[2], x[2] @ w.t(), atol=0.5)


@pytest.mark.parametrize("bm", ["iterative", "none"])
def test_skipping_all_zero_vectors_matches_the_dense_pass(monkeypatch, bm):
    """Large abs-max batches skip all-zero input vectors (their alpha is 0, so they read out 0).
    Noise-free, the skipping pass and the dense pass give the same outputs; with output noise (and
    saturating rows for bound management) the residual of the non-zero vectors has the same
    statistics on both, and the skipped vectors are exactly 0."""
    import analog.mvm as mvm
    g = torch.Generator().manual_seed(21)
    x = torch.randn(2000, 40, generator=g) * (torch.rand(2000, 1, generator=g) > 0.6)     # ~60% zero rows
    x[:100] = x[:100].abs()
    w = torch.randn(16, 40, generator=g) * 0.3
    w[0] = 1.0                                         # output 0 of the positive rows saturates
    zero = x.abs().amax(1) == 0
    quiet = analog.IOConfig(out_noise=0.0, bound_management=bm)
    noisy = analog.IOConfig(out_noise=0.1, bound_management=bm)
    out = {}
    for name in ("skip", "dense"):
        if name == "dense":
            monkeypatch.setattr(mvm, "_SKIP_MIN_ROWS", 1 << 40)
        y_quiet = analog.noisy_mvm(x, w, quiet, torch.Generator().manual_seed(0))
        y_noisy = analog.noisy_mvm(x, w, noisy, torch.Generator().manual_seed(1))
        out[name] = (y_quiet, y_noisy)
    assert torch.allclose(out["skip"][0], out["dense"][0], atol=1e-5, rtol=0)
    assert bool((out["skip"][1][zero] == 0).all()) and out["dense"][1][zero].abs().max() < 1e-12
    alpha = x[~zero].abs().amax(1, keepdim=True)
    stds = [((y[~zero] - x[~zero] @ w.t()) / alpha).std().item() for _, y in out.values()]
    assert stds[0] > 0.05 and abs(stds[0] / stds[1] - 1) < 0.05


def test_adc_quantizes_to_out_res_levels():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(500, 16, generator=g)
    w = torch.randn(8, 16, generator=g)
    io = analog.IOConfig(inp_res=None, out_res=5, out_noise=0.0, out_bound=4.0, bound_management="none",
                         noise_management="none", inp_bound=math.inf)
    y = analog.noisy_mvm(x, w, io)
    levels = torch.unique(torch.round(y / converter_step(5, 4.0)))
    assert levels.numel() <= 2 ** 5 - 1 and levels.abs().max() <= 15
    assert y.abs().max() <= 4.0 + 1e-6


# ----------------------------------------------------------------------------- 2. pulsed update mean
@pytest.mark.parametrize("update_management", [True, False])
def test_mean_pulsed_update_equals_minus_lr_d_xT(update_management):
    g = torch.Generator().manual_seed(4)
    dev = _quiet(devices.ConstantStep, dw_min=1e-3, w_max=100.0, w_min=-100.0)
    arr = _array(dev, 6, 8, seed=5, update_management=update_management)
    x = torch.randn(1, 8, generator=g)
    d = torch.randn(1, 6, generator=g) * 0.1
    lr = 0.05              # lr*max|x|*max|d|/dw_min ~ 10 pulses < BL 31: unsaturated
    if not update_management:   # A = B: both trains must stay below probability 1 on their own
        x, d = x / x.abs().max() * 0.3, d / d.abs().max() * 0.3
    mx, md = x.abs().max().item(), d.abs().max().item()
    bl = math.ceil(lr * mx * md / 1e-3)
    assert bl < 31
    if not update_management:
        assert math.sqrt(lr / (1e-3 * bl)) * max(mx, md) <= 1.0
    reps = 3000            # independent pulse trains for each copy; batched mode sums them
    arr.pulse_update(x.expand(reps, -1), d.expand(reps, -1), lr)
    mean = arr.weight / reps
    target = -lr * d.t() @ x
    assert ((mean - target).norm() / target.norm()).item() < 0.03


def test_pulses_never_exceed_bl_and_weights_stay_in_bounds():
    g = torch.Generator().manual_seed(6)
    dev = devices.SoftBounds()            # reference variations on
    for bl in (1, 7, 31):
        arr = _array(dev, 10, 12, seed=bl, desired_bl=bl, mode="per_sample")
        for _ in range(30):
            x = torch.randn(1, 12, generator=g) * 3
            d = torch.randn(1, 10, generator=g) * 3
            stats = arr.pulse_update(x, d, lr=1.0)     # heavily saturated: BL capped
            assert stats.bl <= bl
            assert float((stats.n_up + stats.n_down).max()) <= bl
            assert bool((stats.n_up >= 0).all() and (stats.n_down >= 0).all())
            assert bool((arr.weight <= arr.w_max).all() and (arr.weight >= arr.w_min).all())
    # hammer a constant-step array into its bounds
    arr = _array(devices.ConstantStep(), 5, 5, seed=1, desired_bl=31)
    for _ in range(50):
        arr.pulse_update(torch.ones(4, 5), -torch.ones(4, 5), lr=10.0)
    assert torch.allclose(arr.weight, arr.w_max)


def test_per_sample_and_batched_give_the_same_mean_update():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 10, generator=g)
    d = torch.randn(8, 6, generator=g) * 0.05
    lr = 0.1
    target = -lr * d.t() @ x
    means = {}
    for mode in ("batched", "per_sample"):
        dev = _quiet(devices.ConstantStep, w_max=100.0, w_min=-100.0)
        arr = _array(dev, 6, 10, seed=11, mode=mode)
        reps = 400
        xs, ds = x.repeat(reps, 1), d.repeat(reps, 1)
        if mode == "per_sample":
            arr.pulse_update(xs, ds, lr)
        else:
            for i in range(reps):
                arr.pulse_update(xs[i * 8:(i + 1) * 8], ds[i * 8:(i + 1) * 8], lr)
        means[mode] = arr.weight / reps
        assert ((means[mode] - target).norm() / target.norm()).item() < 0.03
    diff = (means["batched"] - means["per_sample"]).norm() / target.norm()
    assert diff.item() < 0.04


def test_mean_pulse_type_is_deterministic_expected_update():
    dev = _quiet(devices.ConstantStep, w_max=10.0, w_min=-10.0)
    arr = _array(dev, 3, 4, pulse_type="mean")
    x = torch.randn(5, 4)
    d = torch.randn(5, 3)
    arr.pulse_update(x, d, 0.01)
    assert torch.allclose(arr.weight, -0.01 * d.t() @ x, atol=1e-6)


# ----------------------------------------------------------------------------- 3. asymmetry drift
ASYMMETRIC = {
    "SoftBounds": _quiet(devices.SoftBounds),
    "AsymmetricLinear": _quiet(devices.AsymmetricLinear, c=0.3),
    "ConstantStep up_down": _quiet(devices.ConstantStep, up_down=0.2, w_max=1.0, w_min=-1.0),
    "SoftBounds up_down": _quiet(devices.SoftBounds, up_down=0.3),
    "ExpStep": _quiet(devices.ExpStep, gamma=2.0),
}


@pytest.mark.parametrize("name", list(ASYMMETRIC))
def test_zero_mean_updates_drift_as_minus_abs_dW_times_G(name):
    dev = ASYMMETRIC[name]
    out, inp = 20, 100
    arr = _array(dev, out, inp, seed=3)
    w0 = torch.linspace(dev.w_min * 0.8, dev.w_max * 0.8, out)[:, None].expand(out, inp).contiguous()
    arr.program(w0)
    g = torch.Generator().manual_seed(9)
    lr, steps, batch = 0.002, 20, 16              # total drift << |w|, so G(w) stays ~ G(w0)
    abs_dw = torch.zeros(out, inp)
    for _ in range(steps):
        x = torch.randn(batch, inp, generator=g)
        d = torch.randn(batch, out, generator=g) * 0.1
        abs_dw += lr * d.abs().t() @ x.abs()     # expected sum of |dW| over coincidences
        arr.pulse_update(x, d, lr)
    drift = arr.weight - w0
    s_up, s_down = arr.response(w0)
    G = (s_down - s_up) / (2 * dev.dw_min)       # G(w) of docs/design.md §2.3 (dw_min-normalized)
    predicted = -abs_dw * G
    # average over each row (same w0) to beat the pulse noise, compare where the drift is sizable
    pred_row, meas_row = predicted.mean(1), drift.mean(1)
    big = pred_row.abs() > 0.2 * pred_row.abs().max()
    assert big.sum() >= 5
    assert bool((torch.sign(meas_row[big]) == torch.sign(pred_row[big])).all())
    ratio = meas_row[big] / pred_row[big]
    assert abs(ratio.mean().item() - 1) < 0.1, ratio


@pytest.mark.parametrize("name, expected", [("SoftBounds", 0.0), ("AsymmetricLinear", 0.3 * 0.6),
                                            ("SoftBounds up_down", 0.3 * 0.6)])
def test_random_updates_converge_to_the_symmetric_point(name, expected):
    dev = ASYMMETRIC[name]
    arr = _array(dev, 8, 10, seed=4)
    w_star = arr.symmetric_point()
    assert torch.allclose(w_star, torch.full_like(w_star, expected), atol=1e-4)
    arr.program(torch.full((8, 10), dev.w_max * 0.9))
    g = torch.Generator().manual_seed(5)
    for _ in range(400):   # zero-mean updates: each device gets as many up as down pulses on average
        arr.pulse_update(torch.randn(16, 10, generator=g), 0.1 * torch.randn(16, 8, generator=g), 0.01)
    assert (arr.weight - w_star).abs().mean().item() < 0.03
    assert abs((arr.weight - w_star).mean().item()) < 0.01
    # a symmetric device does not drift to a point under the same updates (random walk only)
    flat = _array(_quiet(devices.ConstantStep), 8, 10, seed=4)
    flat.program(torch.full((8, 10), 0.5))
    g = torch.Generator().manual_seed(5)
    for _ in range(400):
        flat.pulse_update(torch.randn(16, 10, generator=g), 0.1 * torch.randn(16, 8, generator=g), 0.01)
    assert abs(flat.weight.mean().item() - 0.5) < 0.02


def test_symmetric_point_of_constant_step_with_bias_is_a_bound():
    arr = _array(_quiet(devices.ConstantStep, up_down=0.1), 2, 2)
    assert torch.allclose(arr.symmetric_point(), arr.w_max)
    arr = _array(_quiet(devices.ConstantStep, up_down=-0.1), 2, 2)
    assert torch.allclose(arr.symmetric_point(), arr.w_min)


# ----------------------------------------------------------------------------- 4. device-to-device variation
def test_device_to_device_variation_has_configured_relative_std():
    dev = devices.SoftBounds(dw_min=2e-3, dw_min_dtod=0.3, w_max=0.6, w_min=-0.4, w_max_dtod=0.2,
                             w_min_dtod=0.1, up_down=0.05, up_down_dtod=0.02)
    arr = _array(dev, 200, 200, seed=8)
    rel = lambda t, m: (t.std() / abs(m)).item()
    assert abs(arr.dw_min.mean().item() / 2e-3 - 1) < 0.01
    assert abs(rel(arr.dw_min, 2e-3) - 0.3) < 0.01
    assert abs(arr.w_max.mean().item() / 0.6 - 1) < 0.01 and abs(rel(arr.w_max, 0.6) - 0.2) < 0.01
    assert abs(arr.w_min.mean().item() / -0.4 - 1) < 0.01 and abs(rel(arr.w_min, 0.4) - 0.1) < 0.005
    assert abs(arr.up_down.mean().item() - 0.05) < 0.002 and abs(arr.up_down.std().item() - 0.02) < 0.001
    assert bool((arr.w_min < 0).all() and (arr.w_max > 0).all() and (arr.dw_min >= 0).all())
    # the draws are per tile and seeded
    same = _array(dev, 200, 200, seed=8)
    other = _array(dev, 200, 200, seed=9)
    assert torch.equal(same.dw_min, arr.dw_min) and not torch.equal(other.dw_min, arr.dw_min)
    # no variation configured: every device equal
    flat = _array(_quiet(devices.SoftBounds), 20, 20)
    assert bool((flat.dw_min == 1e-3).all() and (flat.w_max == 0.6).all())


def test_cycle_to_cycle_noise_spreads_single_pulses():
    dev = _quiet(devices.ConstantStep, dw_min_std=0.3, w_max=10.0, w_min=-10.0)
    arr = _array(dev, 100, 100)
    arr.apply_pulses(torch.ones(100, 100), torch.zeros(100, 100))
    steps = arr.weight / 1e-3
    assert abs(steps.mean().item() - 1) < 0.01 and abs(steps.std().item() - 0.3) < 0.01


def test_response_functions_match_design_formulas():
    w = torch.linspace(-0.5, 0.5, 11)
    lo, hi = torch.full_like(w, -0.6), torch.full_like(w, 0.6)
    sb = devices.SoftBounds()
    assert torch.allclose(sb.q_up(w, lo, hi), 1 - w / 0.6) and torch.allclose(sb.q_down(w, lo, hi), 1 + w / 0.6)
    pw = devices.PowerStep(gamma=2.0)
    assert torch.allclose(pw.q_up(w, lo, hi), (1 - w / 0.6) ** 2)
    ex = devices.ExpStep(gamma=1.5)
    assert torch.allclose(ex.q_down(w, lo, hi), torch.expm1(1.5 * (1 + w / 0.6)) / math.expm1(1.5))
    ls = devices.LinearStep(gamma_up=0.5, gamma_down=0.2)
    assert torch.allclose(ls.q_up(w, lo, hi), 1 - 0.5 * w / 0.6) and torch.allclose(ls.q_down(w, lo, hi), 1 + 0.2 * w / 0.6)
    al = devices.AsymmetricLinear(c=0.2)
    assert torch.allclose(al.q_up(w, lo, hi), 1.2 * (1 - w / 0.6))
    pwl = devices.Piecewise(piecewise_up=(2.0, 1.0, 0.0), piecewise_down=(0.0, 1.0, 2.0))
    assert torch.allclose(pwl.q_up(w, lo, hi), 1 - w / 0.6, atol=1e-6)
    assert torch.allclose(pwl.q_down(torch.tensor([-0.6, 0.3, 0.6]), lo[:3], hi[:3]), torch.tensor([0.0, 1.5, 2.0]))


def test_chunked_batched_update_keeps_the_mean(monkeypatch):
    import analog.pulsed as pulsed
    monkeypatch.setattr(pulsed, "_MAX_TRAIN_ELEMENTS", 2000)      # force many chunks
    g = torch.Generator().manual_seed(12)
    x = torch.randn(1, 8, generator=g)
    d = torch.randn(1, 6, generator=g) * 0.1
    arr = _array(_quiet(devices.ConstantStep, w_max=100.0, w_min=-100.0), 6, 8, seed=2)
    stats = arr.pulse_update(x.expand(3000, -1), d.expand(3000, -1), 0.05)
    target = -0.05 * d.t() @ x
    assert ((arr.weight / 3000 - target).norm() / target.norm()).item() < 0.03
    assert torch.allclose(arr.weight, 1e-3 * (stats.n_up - stats.n_down), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiles_train_on_cuda_with_generators_on_the_device():
    torch.manual_seed(0)
    model = analog.convert_to_analog(torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(),
                                                         torch.nn.Linear(8, 3)), analog.TileConfig()).cuda()
    opt = analog.AnalogOptimizer(model.parameters(), lr=0.1)
    x = torch.randn(32, 16, device="cuda")
    y = torch.randint(0, 3, (32,), device="cuda")
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first
    arr = model[0].tile.algorithm_state.array
    assert arr.generator().device.type == "cuda" and arr.weight.is_cuda
    assert torch.equal(model[0].weight.detach(), model[0].get_weights())


def _dense_reference(monkeypatch) -> None:
    """Force the dense path: coincidences counted over every row and column, every device updated."""
    import analog.pulsed as pulsed
    monkeypatch.setattr(pulsed, "_DENSE_NUMEL", 1 << 40)
    monkeypatch.setattr(pulsed, "SPARSE_FRACTION", 0.0)


def _mnist_like(g: torch.Generator, signed: bool) -> torch.Tensor:
    x = torch.rand(10, 784, generator=g) * (torch.rand(10, 784, generator=g) > 0.8)    # ~80% zeros
    return x * torch.randn(10, 784, generator=g).sign() if signed else x


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("d_scale", [1e-3, 0.05])     # few devices hit (sparse apply) / many (dense apply)
def test_sparse_fast_path_gives_the_dense_paths_counts_and_weights_on_the_same_seed(monkeypatch, signed, d_scale):
    g = torch.Generator().manual_seed(13)
    x, d = _mnist_like(g, signed), torch.randn(10, 256, generator=g) * d_scale
    w0 = torch.randn(256, 784, generator=g) * 0.1
    dev = devices.SoftBounds(dw_min_std=0.0)          # device-to-device variation on, no c2c draws
    runs = {}
    for name in ("fast", "dense"):
        if name == "dense":
            _dense_reference(monkeypatch)
        arr = _array(dev, 256, 784, seed=3)
        arr.program(w0)
        counts = []
        for _ in range(5):
            stats = arr.pulse_update(x, d, 0.05)
            counts.append(torch.stack([stats.n_up, stats.n_down]))
        runs[name] = (torch.stack(counts), arr.weight.clone())
    (c_fast, w_fast), (c_dense, w_dense) = runs["fast"], runs["dense"]
    assert c_fast.sum() > 1000                        # the update did something
    assert torch.equal(c_fast, c_dense)               # the very same pulses
    assert torch.allclose(w_fast, w_dense, atol=1e-7, rtol=0)


@pytest.mark.parametrize("d_scale", [1e-3, 0.05])
def test_sparse_fast_path_keeps_the_cycle_to_cycle_spread(monkeypatch, d_scale):
    """With c2c noise the two paths draw it for different sets of devices (the touched ones vs all),
    so compare statistics: on the same seed the first update's pulse counts agree exactly, and the
    standardized noise (dW - E[dW]) / sqrt(s+^2 n+ + s-^2 n-) has mean 0 and std dw_min_std on both."""
    g = torch.Generator().manual_seed(14)
    x, d = _mnist_like(g, True), torch.randn(10, 256, generator=g) * d_scale
    dev = devices.SoftBounds()                        # reference spreads: dw_min_std 0.3
    out = {}
    for name in ("fast", "dense"):
        if name == "dense":
            _dense_reference(monkeypatch)
        arr = _array(dev, 256, 784, seed=4)
        w0 = arr.weight.clone()
        s_up, s_down = arr.response()
        stats = arr.pulse_update(x, d, 0.05)
        n_up, n_down = stats.n_up, stats.n_down
        var = s_up ** 2 * n_up + s_down ** 2 * n_down
        hit = var > 0                                 # pulsed devices (a few have dw_min clipped to 0)
        z = (arr.weight - w0 - (s_up * n_up - s_down * n_down))[hit] / var[hit].sqrt()
        out[name] = (torch.stack([n_up, n_down]), z)
    assert torch.equal(out["fast"][0], out["dense"][0])
    for name, (_, z) in out.items():
        assert z.numel() > 2000, name
        assert abs(z.mean().item()) < 0.05 * 0.3 * 3, name
        assert abs(z.std().item() / 0.3 - 1.0) < 0.05, name


@pytest.mark.parametrize("density", [0.05, 0.6])          # the sparse and the dense pulse path
def test_signed_pulses_equal_up_and_down_counts_on_the_same_seed(density):
    """apply_signed_pulses(n) is apply_pulses(n+, n-): the same devices, noise draws and weights."""
    dev = devices.SoftBounds(dw_min=0.01, dw_min_std=0.5, dw_min_dtod=0.2)
    g = torch.Generator().manual_seed(0)
    n = torch.randint(-3, 4, (20, 30), generator=g).float() * (torch.rand(20, 30, generator=g) < density)
    a, b = _array(dev, 20, 30, seed=7), _array(dev, 20, 30, seed=7)
    a.program(torch.rand(20, 30, generator=g) - 0.5)
    b.program(a.weight)
    start = a.weight.clone()
    assert a.apply_signed_pulses(n) == int(n.abs().sum())
    b.apply_pulses(n.clamp_min(0), (-n).clamp_min(0))
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, start)
    assert a.apply_signed_pulses(torch.zeros(20, 30)) == 0
