"""The conv fast path (MVMs on F.unfold's (N, in, L) layout, strided im2col/col2im) against the rows
reference it replaces: the same numbers on the same seed, every periphery option included, up to
the matmul's summation order (bit for bit on some CPUs, not on others: the BLAS kernel a layout
gets differs between machines)."""
import pytest
import torch
import torch.nn.functional as F

import analog
from analog.layers import ConvGeometry
from analog.mvm import noisy_mvm

IOS = {
    "default": analog.IOConfig(),
    "stochastic+w_noise": analog.IOConfig(inp_rounding="stochastic", out_rounding="stochastic", w_noise=0.03),
    "saturating": analog.IOConfig(out_bound=2.0),
    "constant_nm": analog.IOConfig(noise_management="constant", nm_constant=2.0),
    "no_nm_no_adc": analog.IOConfig(noise_management="none", out_res=None, inp_bound=3.0),
}


def _assert_same_up_to_summation_order(y: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal but for float rounding: the same random numbers, levels and bound management give
    differences of ~1e-7 relative; where an ADC rounds, a sum that lands on a level's edge may
    round the other way (one level), so a few elements in a thousand may differ by more. Another
    noise stream, scaling or periphery changes nearly every element."""
    close = torch.isclose(y, ref, rtol=1e-5, atol=1e-6)
    assert close.float().mean() >= 0.999, (close.float().mean(), (y - ref).abs().max())


def _rows_reference(x: torch.Tensor, w: torch.Tensor, io: analog.IOConfig, seed: int) -> torch.Tensor:
    n, k, length = x.shape
    rows = noisy_mvm(x.transpose(1, 2).reshape(-1, k), w, io, torch.Generator().manual_seed(seed))
    return rows.view(n, length, -1).transpose(1, 2)


@pytest.mark.parametrize("k,out", [(18, 6), (6, 18)])   # a forward-like and a backward-like (wide) MVM
@pytest.mark.parametrize("zero_patches", [5, 60])      # dense layout path / sparse: the rows path skips
@pytest.mark.parametrize("name", sorted(IOS))
def test_channels_mvm_equals_rows_on_the_same_seed(name, zero_patches, k, out):
    io = IOS[name]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, k, 100, generator=g)
    x[:, :, :zero_patches] = 0.0
    w = torch.randn(out, k, generator=g) * (3.0 if name == "saturating" else 0.3)
    y = noisy_mvm(x, w, io, torch.Generator().manual_seed(1), channels=True)
    assert y.shape == (4, out, 100)
    _assert_same_up_to_summation_order(y, _rows_reference(x, w, io, 1))
    other_seed = noisy_mvm(x, w, io, torch.Generator().manual_seed(2), channels=True)
    assert torch.isclose(y, other_seed, rtol=1e-5, atol=1e-6).float().mean() < 0.9   # what a wrong stream looks like
    if name == "saturating":           # bound management did retry patches (else the test proves little)
        no_bm = analog.IOConfig(out_bound=2.0, bound_management="none")
        assert not torch.allclose(y, noisy_mvm(x, w, no_bm, torch.Generator().manual_seed(1), channels=True))


@pytest.mark.parametrize("kernel,stride,padding,dilation,size", [
    (3, 2, 1, 1, (28, 28)), (3, 1, 1, 1, (28, 28)), ((2, 3), (1, 2), (0, 1), (2, 1), (30, 24)), (3, 1, 0, 1, (9, 9))])
def test_strided_im2col_col2im_match_aten(kernel, stride, padding, dilation, size):
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    geo = ConvGeometry(pair(kernel), pair(dilation), pair(padding), pair(stride), size)
    x = torch.randn(4, 8, *size, generator=torch.Generator().manual_seed(0))
    cols = F.unfold(x, kernel, dilation, padding, stride)
    assert torch.equal(geo.unfold(x), cols)
    assert torch.equal(geo.fold(cols), F.fold(cols, size, kernel, dilation, padding, stride))


@pytest.mark.parametrize("analog_bias", [False, True])
def test_conv_layer_matches_the_rows_reference(analog_bias):
    """Forward output, input gradient and the recorded (x, d) of AnalogConv2d equal the rows path:
    unfold -> transpose to rows -> tile MVMs -> fold, with the tile's generator rewound."""
    cfg = analog.TileConfig(analog_bias=analog_bias, backward=analog.IOConfig(out_noise=0.05), seed=3)
    layer = analog.AnalogConv2d(3, 5, 3, stride=1, padding=1, config=cfg)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    gen = layer.tile.generator(torch.device("cpu"))
    state = gen.get_state()
    y = layer(x)
    grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    y.backward(grad_out)
    (x_rec, d_rec), = layer.tile._pending

    gen.set_state(state)
    with torch.no_grad():
        cols = F.unfold(x, 3, 1, 1, 1)
        rows = cols.transpose(1, 2).reshape(-1, 27)
        if analog_bias:
            rows = torch.cat([rows, torch.ones(rows.shape[0], 1)], dim=1)
        y_rows = layer.tile.forward_mvm(rows)
        if layer.bias is not None and not analog_bias:
            y_rows = y_rows + layer.bias
        y_ref = y_rows.view(2, 144, 5).transpose(1, 2).reshape(2, 5, 12, 12)
        d_rows = grad_out.reshape(2, 5, 144).transpose(1, 2).reshape(-1, 5)
        g_rows = layer.tile.backward_mvm(d_rows)[:, :27]
        grad_ref = F.fold(g_rows.view(2, 144, 27).transpose(1, 2), (12, 12), 3, 1, 1, 1)
    assert torch.equal(y.detach(), y_ref)
    assert torch.equal(x.grad, grad_ref)
    assert torch.equal(x_rec, rows) and torch.equal(d_rec, d_rows)


def test_mixed_precision_takes_conv_patches_as_rows_would_give_them():
    """MixedPrecision's update sums d x^T over the patches it is given as (N, in, L)/(N, out, L): the
    same accumulator and the same pulses as the rows (one per patch) it replaces; two recorded
    batches of different image sizes fall back to rows."""
    cfg = analog.TileConfig(algorithm=analog.algorithms.MixedPrecision(), seed=5)
    layer = analog.AnalogConv2d(2, 4, 3, padding=1, config=cfg)
    assert layer.tile.takes_patches
    twin = __import__("copy").deepcopy(layer)
    x = torch.rand(3, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    layer(x).square().sum().backward()
    (cols, grad), = layer.tile._pending
    assert cols.shape == (3, 18, 81) and grad.shape == (3, 4, 81)
    for _ in range(3):                                        # chi accumulates over steps: pulses fire
        layer.tile.update(cols, grad, 0.5)
        twin.tile.update(cols.transpose(1, 2).reshape(-1, 18), grad.transpose(1, 2).reshape(-1, 4), 0.5)
    st, ref = layer.tile.algorithm_state, twin.tile.algorithm_state
    assert st.pulses_fired == ref.pulses_fired > 0
    assert torch.allclose(st.chi, ref.chi, atol=1e-4) and torch.equal(st.array.weight, ref.array.weight)
    layer.tile.clear_pending()
    layer(x).sum().backward()
    layer(torch.rand(1, 2, 5, 5)).sum().backward()             # L = 81 and L = 25: recorded apart
    before = st.array.weight.clone()
    layer.tile.apply_pending_update(0.5)
    assert not layer.tile.has_pending and st.pulses_fired > ref.pulses_fired
    assert not torch.equal(before, st.array.weight)
