"""The noisy matrix-vector multiply of an analog tile (docs/design.md §2.1).

y = W x as the hardware computes it, vectorized over the batch: noise management (scale by
alpha), DAC (clip + quantize), output-referred weight read noise, output noise, ADC (clip +
quantize), iterative bound management (halve the input of the rows that saturated and retry), and
rescale. The backward pass calls the same function with W^T and the backward IOConfig.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from analog.energy import counters as _counters
from analog.periphery import IOConfig


def converter_step(bits: int, bound: float) -> float:
    """Step of a symmetric b-bit converter over [-bound, bound]: 2**b - 1 levels incl. zero."""
    return 2.0 * bound / (2 ** bits - 2) if bits > 1 else bound


#: an abs-max MVM over at least this many input vectors skips the all-zero ones (see noisy_mvm)
_SKIP_MIN_ROWS = 256
#: ... when at least this fraction of them is all-zero
_SKIP_FRACTION = 0.125


def _draw(fn: Callable[..., Tensor], shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None,
          channels: bool) -> Tensor:
    """fn (torch.rand / torch.randn) of ``shape`` on like's device and dtype; for the channels layout
    (N, C, L) drawn in the rows order (N, L, C) and viewed back, so that every patch gets the very
    numbers it gets on rows (the two layouts give the same result on the same seed)."""
    if channels:
        n, c, length = shape
        return fn((n, length, c), generator=generator, device=like.device, dtype=like.dtype).transpose(1, 2)
    return fn(shape, generator=generator, device=like.device, dtype=like.dtype)


def _crossbar(noise: Tensor, lv: Tensor, weight: Tensor, beta: float, gain: float, channels: bool) -> Tensor:
    """beta * noise + gain * (the crossbar product of the DAC levels lv), one fused kernel: rows
    (N, in) -> (N, out), or channels (N, in, L) -> (N, out, L) (one weight for every patch). The
    channels noise comes in the rows order (see _draw); with more outputs than inputs (a conv
    layer's backward MVM) the product is computed in that order too, so the noise is not copied,
    and the result is its transposed view."""
    # (in place into the freshly drawn noise: an out-of-place addmm would first copy it into its result)
    if channels:
        if weight.shape[0] > weight.shape[1]:
            rows = noise.transpose(1, 2).baddbmm_(lv.transpose(1, 2), weight.t().expand(lv.shape[0], -1, -1),
                                                  beta=beta, alpha=gain)
            return rows.transpose(1, 2)
        if noise.is_contiguous():
            return noise.baddbmm_(weight.expand(lv.shape[0], -1, -1), lv, beta=beta, alpha=gain)
        return torch.baddbmm(noise, weight.expand(lv.shape[0], -1, -1), lv, beta=beta, alpha=gain)
    return noise.addmm_(lv, weight.t(), beta=beta, alpha=gain)


def _one_pass(x: Tensor, unit: Tensor | float, weight: Tensor, io: IOConfig,
              generator: torch.Generator | None, need_rows: bool, within: bool = False,
              channels: bool = False) -> tuple[Tensor, Tensor | None]:
    """DAC -> crossbar -> ADC for inputs x; ``unit`` is the input value of one DAC level (alpha *
    DAC step), so the DAC levels are x / unit. Returns (y in ADC levels, i.e. in units of the ADC
    step -- 1 without an ADC -- and of alpha; saturated-rows mask or None when no output saturated).

    Few kernels (the MVM of a small layer costs what its launches cost): the DAC works in integer
    levels, and one ``addmm`` computes the crossbar product, its scaling into ADC levels and the
    output noise (drawn first, as one ``randn``). Weight read noise (``w_noise * ||x||`` per input
    vector, see below) and output noise are independent Gaussians on the same output, so they are
    drawn as one Gaussian of the summed variance. ``within``: |x| <= alpha for every input (abs-max
    noise management), so |x / unit| <= 1 / DAC step: with nearest rounding and inp_bound >= 1 the
    DAC clip is a no-op and is skipped (round() of a value an ulp above the top level gives the top).
    ``channels``: x is (N, in, L) and y (N, out, L) (see noisy_mvm); the saturated mask is then (N, L)."""
    if io.inp_res is not None:
        in_step = converter_step(io.inp_res, io.inp_bound)
        top = io.inp_bound / in_step
        lv = torch.div(x, unit)
        if not (within and io.inp_rounding == "nearest" and io.inp_bound >= 1.0):
            lv = lv.clamp_(-top, top)
        if io.inp_rounding == "stochastic":
            low = torch.floor(lv)
            lv = low.add_(_draw(torch.rand, lv.shape, lv, generator, channels) < lv.sub_(low))
        else:
            lv = lv.round_()
    else:
        in_step = 1.0
        lv = x / unit if not (isinstance(unit, float) and unit == 1.0) else x
        if math.isfinite(io.inp_bound):
            lv = lv.clamp(-io.inp_bound, io.inp_bound)
    out_step = converter_step(io.out_res, io.out_bound) if io.out_res is not None else 1.0
    gain = in_step / out_step
    feat = 1 if channels else -1
    out_shape = (x.shape[0], weight.shape[0], x.shape[2]) if channels else (x.shape[0], weight.shape[0])
    if io.w_noise > 0:
        # fresh W + w_noise*N per input vector == output noise w_noise * ||x||_2 (exact marginal)
        var = lv.square().sum(dim=feat, keepdim=True).mul_((io.w_noise * in_step) ** 2)
        sigma = var.add_(io.out_noise ** 2).sqrt_().mul_(1.0 / out_step)
        noise = _draw(torch.randn, out_shape, x, generator, channels)
        y = _crossbar(noise.mul_(sigma), lv, weight, 1.0, gain, channels)
    elif io.out_noise > 0:
        noise = _draw(torch.randn, out_shape, x, generator, channels)
        y = _crossbar(noise, lv, weight, io.out_noise / out_step, gain, channels)
    else:
        y = torch.matmul(weight, lv) if channels else torch.mm(lv, weight.t())
        if gain != 1.0:
            y = y.mul_(gain)
    saturated = None
    if math.isfinite(io.out_bound):
        top_out = io.out_bound / out_step
        clip = True
        if need_rows and y.numel():
            # (over every element: on the rows-order buffer of a channels result, which is contiguous)
            lo, hi = torch.aminmax(y if not channels or y.is_contiguous() else y.transpose(1, 2))
            if hi.item() >= top_out or lo.item() <= -top_out:
                saturated = (y.abs() >= top_out).any(dim=feat)
            else:
                clip = False            # nothing reached the ADC's range: the clip would be a no-op
        if clip:
            y = y.clamp_(-top_out, top_out)
    if io.out_res is not None:
        if io.out_rounding == "stochastic":
            low = torch.floor(y)
            y = low.add_(_draw(torch.rand, y.shape, y, generator, channels) < y.sub_(low))
        else:
            y = y.round_()
    return y, saturated


def _retry_saturated(x2: Tensor, unit: Tensor | float, y: Tensor, saturated: Tensor, weight: Tensor,
                     io: IOConfig, generator: torch.Generator | None, within: bool) -> Tensor:
    """Iterative bound management on rows: halve the input of the rows that saturated and read them
    again (their outputs come back doubled), up to ``io.bm_max_iter`` times. y (rows, out) holds
    the first pass in ADC levels; returns it with the retried rows replaced."""
    scale = torch.ones((x2.shape[0], 1), dtype=x2.dtype, device=x2.device)
    for _ in range(io.bm_max_iter):
        sat = saturated.nonzero().squeeze(1)
        rec = _counters.ACTIVE
        if rec is not None:
            rec.retry(sat.numel(), weight.shape[1], weight.shape[0], io.inp_res, io.out_res)
        scale[sat] *= 2.0
        sat_unit = (unit[sat] if isinstance(unit, Tensor) else unit) * scale[sat]
        y_rows, sat_rows = _one_pass(x2[sat], sat_unit, weight, io, generator, True, within)
        y = y.index_copy(0, sat, y_rows * scale[sat])
        if sat_rows is None:
            break
        saturated = torch.zeros_like(saturated).index_copy(0, sat, sat_rows)
    return y


def noisy_mvm(x: Tensor, weight: Tensor, io: IOConfig, generator: torch.Generator | None = None,
              channels: bool = False) -> Tensor:
    """y = x @ weight.T through the analog periphery ``io``. x: (..., in), weight: (out, in).

    With abs-max noise management an all-zero input vector has alpha = 0 and reads out exactly 0
    (its output noise is scaled by alpha too); on large batches (conv patches, sparse images,
    ReLU errors) those vectors are skipped rather than pushed through the DAC/ADC chain, and their
    outputs are set to 0. The other vectors see the same periphery as without skipping (the noise
    is drawn for them only, so a seeded run draws a different stream than a dense pass would).

    ``channels=True``: x is (N, in, L), F.unfold's layout of a conv layer's patches (input vector
    x[n, :, l]), and the result is (N, out, L), the conv output's layout: the same periphery per
    patch as on the rows x.transpose(1, 2).reshape(-1, in) -- the same random numbers for the same
    patch, alpha, DAC and ADC levels and bound management, so the same result on the same seed up
    to the summation order of the matmul -- without transposing x or y."""
    if channels:
        return _noisy_mvm_channels(x, weight, io, generator)
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"x: got last dim {x.shape[-1]}, must equal weight's in_features {weight.shape[-1]}")
    if io.is_ideal:
        return F.linear(x, weight)
    lead = x.shape[:-1] if x.dim() != 2 else None
    x2 = x.reshape(-1, x.shape[-1]) if lead is not None else x
    unit: Tensor | float
    in_step = converter_step(io.inp_res, io.inp_bound) if io.inp_res is not None else 1.0
    rows = None
    if io.noise_management == "abs_max":
        alpha = x2.abs().amax(dim=-1, keepdim=True)        # (faster than an inf-norm on CPU)
        n = x2.shape[0]
        if n >= _SKIP_MIN_ROWS:
            rows = alpha.view(-1).nonzero().squeeze(1)
            if rows.numel() > (1.0 - _SKIP_FRACTION) * n:
                rows = None
            elif rows.numel() == 0:
                out = x2.new_zeros((n, weight.shape[0]))
                return out if lead is None else out.reshape(*lead, weight.shape[0])
            else:
                x2, alpha = x2.index_select(0, rows), alpha.index_select(0, rows)
        # all-zero rows left: a tiny alpha keeps them exactly zero before noise, and ~0 after
        # rescaling (sqrt(tiny): the DAC levels x / (alpha * step) must stay finite)
        unit = alpha.clamp_min_(torch.finfo(x2.dtype).tiny ** 0.5).mul_(in_step)
    elif io.noise_management == "constant":
        unit = io.nm_constant * in_step
    else:
        unit = in_step
    use_bm = io.bound_management == "iterative" and math.isfinite(io.out_bound) and io.bm_max_iter > 0
    within = io.noise_management == "abs_max"
    y, saturated = _one_pass(x2, unit, weight, io, generator, use_bm, within)
    if use_bm and saturated is not None:
        y = _retry_saturated(x2, unit, y, saturated, weight, io, generator, within)
    y = _rescale(y, unit, io, in_step)
    if rows is not None:
        y = x.new_zeros((x.numel() // x.shape[-1], weight.shape[0])).index_copy_(0, rows, y)
    return y if lead is None else y.reshape(*lead, weight.shape[0])


def _rescale(y: Tensor, unit: Tensor | float, io: IOConfig, in_step: float) -> Tensor:
    """ADC levels back to input units: levels * out_step * alpha = levels * unit * (out_step / in_step)."""
    out_step = converter_step(io.out_res, io.out_bound) if io.out_res is not None else 1.0
    if isinstance(unit, Tensor):
        return y.mul_(unit.mul_(out_step / in_step) if out_step != in_step else unit)   # one pass over y
    if unit * out_step / in_step != 1.0:
        return y.mul_(unit * out_step / in_step)
    return y


def _noisy_mvm_channels(x: Tensor, weight: Tensor, io: IOConfig, generator: torch.Generator | None) -> Tensor:
    """noisy_mvm on (N, in, L) patches -> (N, out, L). Mostly-zero patches (a sparse image's
    background) go through the rows path, which skips them; bound management retries the patches
    that saturated as rows (a few)."""
    if x.dim() != 3 or x.shape[1] != weight.shape[-1]:
        raise ValueError(f"x: got shape {tuple(x.shape)}, must be (batch, {weight.shape[-1]}, patches)")
    if io.is_ideal:
        return torch.matmul(weight, x)
    n, k, length = x.shape
    unit: Tensor | float
    in_step = converter_step(io.inp_res, io.inp_bound) if io.inp_res is not None else 1.0
    if io.noise_management == "abs_max":
        alpha = x.abs().amax(dim=1, keepdim=True)                                  # (N, 1, L)
        if n * length >= _SKIP_MIN_ROWS and int(torch.count_nonzero(alpha)) <= (1.0 - _SKIP_FRACTION) * n * length:
            rows = noisy_mvm(x.transpose(1, 2).reshape(-1, k), weight, io, generator)
            return rows.view(n, length, -1).transpose(1, 2)
        unit = alpha.clamp_min_(torch.finfo(x.dtype).tiny ** 0.5).mul_(in_step)
    elif io.noise_management == "constant":
        unit = io.nm_constant * in_step
    else:
        unit = in_step
    use_bm = io.bound_management == "iterative" and math.isfinite(io.out_bound) and io.bm_max_iter > 0
    within = io.noise_management == "abs_max"
    y, saturated = _one_pass(x, unit, weight, io, generator, use_bm, within, channels=True)
    if use_bm and saturated is not None:
        rows_x, rows_y = x.transpose(1, 2), y.transpose(1, 2)                      # (N, L, .) views
        rows_unit = unit.transpose(1, 2)[saturated] if isinstance(unit, Tensor) else unit
        first = rows_y[saturated]
        retried = _retry_saturated(rows_x[saturated], rows_unit, first,
                                   torch.ones(first.shape[0], dtype=torch.bool, device=y.device),
                                   weight, io, generator, within)
        rows_y[saturated] = retried                                                # writes into y
    return _rescale(y, unit, io, in_step)
