"""The noisy matrix-vector multiply of an analog tile (docs/design.md §2.1).

y = W x as the hardware computes it, vectorized over the batch: noise management (scale by
alpha), DAC (clip + quantize), output-referred weight read noise, output noise, ADC (clip +
quantize), iterative bound management (halve the input of the rows that saturated and retry), and
rescale. The backward pass calls the same function with W^T and the backward IOConfig.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from analog.config import IOConfig


def converter_step(bits: int, bound: float) -> float:
    """Step of a symmetric b-bit converter over [-bound, bound]: 2**b - 1 levels incl. zero."""
    return 2.0 * bound / (2 ** bits - 2) if bits > 1 else bound


def _quantize(x: Tensor, bits: int, bound: float, mode: str, generator: torch.Generator | None,
              inplace: bool = False) -> Tensor:
    """Clip to [-bound, bound] and round to the b-bit grid (no argument checks: hot path)."""
    step = converter_step(bits, bound)
    y = x.clamp_(-bound, bound) if inplace else x.clamp(-bound, bound)
    y = y.mul_(1.0 / step)
    if mode == "stochastic":
        low = torch.floor(y)
        y = low.add_(torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype) < y.sub_(low))
    else:
        y = y.round_()
    return y.mul_(step)


def _saturated(y: Tensor, bound: float) -> bool:
    """Whether any output reached the ADC bound (one pass over y)."""
    lo, hi = torch.aminmax(y)
    return bool((hi >= bound) | (lo <= -bound))


def _one_pass(x: Tensor, inv: Tensor | float, weight: Tensor, io: IOConfig, generator: torch.Generator | None,
              need_rows: bool) -> tuple[Tensor, Tensor | None]:
    """DAC -> crossbar -> ADC for inputs x scaled by inv (1/alpha). Returns (normalized y,
    saturated-rows mask or None when no output saturated). The DAC works in integer levels, so
    the input is touched only by scale, clip and round."""
    if io.inp_res is not None:
        step = converter_step(io.inp_res, io.inp_bound)
        top = io.inp_bound / step
        lv = (x * (inv / step) if isinstance(inv, Tensor) else x * (inv / step)).clamp_(-top, top)
        if io.inp_rounding == "stochastic":
            low = torch.floor(lv)
            lv = low.add_(torch.rand(lv.shape, generator=generator, device=lv.device, dtype=lv.dtype) < lv.sub_(low))
        else:
            lv = lv.round_()
        y = F.linear(lv, weight).mul_(step)
        xs_norm = (lambda: lv.norm(dim=-1, keepdim=True).mul_(step)) if io.w_noise > 0 else None
    else:
        xs = x * inv if not (isinstance(inv, float) and inv == 1.0) else x
        if math.isfinite(io.inp_bound):
            xs = xs.clamp(-io.inp_bound, io.inp_bound)
        y = F.linear(xs, weight)
        xs_norm = (lambda: xs.norm(dim=-1, keepdim=True)) if io.w_noise > 0 else None
    if xs_norm is not None:
        # fresh W + w_noise*N per input vector == output noise w_noise * ||x||_2 (exact marginal)
        y = y.addcmul_(xs_norm().mul_(io.w_noise),
                       torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype))
    if io.out_noise > 0:
        y = y.add_(torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype), alpha=io.out_noise)
    saturated = None
    if math.isfinite(io.out_bound):
        if need_rows and y.numel() and _saturated(y, io.out_bound):
            saturated = (y.abs() >= io.out_bound).any(dim=-1)
        if io.out_res is None:
            y = y.clamp_(-io.out_bound, io.out_bound)
    if io.out_res is not None:
        y = _quantize(y, io.out_res, io.out_bound, io.out_rounding, generator, inplace=True)
    return y, saturated


def noisy_mvm(x: Tensor, weight: Tensor, io: IOConfig, generator: torch.Generator | None = None) -> Tensor:
    """y = x @ weight.T through the analog periphery ``io``. x: (..., in), weight: (out, in)."""
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"x: got last dim {x.shape[-1]}, must equal weight's in_features {weight.shape[-1]}")
    if io.is_ideal:
        return F.linear(x, weight)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    alpha: Tensor | float
    if io.noise_management == "abs_max":
        # all-zero rows: a tiny alpha keeps them exactly zero before noise, and ~0 after rescaling
        # (sqrt(tiny): 1/alpha times the DAC levels must stay finite)
        alpha = x2.abs().amax(dim=-1, keepdim=True).clamp_min_(torch.finfo(x2.dtype).tiny ** 0.5)
        inv: Tensor | float = 1.0 / alpha
    elif io.noise_management == "constant":
        alpha = io.nm_constant
        inv = 1.0 / alpha
    else:
        alpha = inv = 1.0
    use_bm = io.bound_management == "iterative" and math.isfinite(io.out_bound) and io.bm_max_iter > 0
    y, saturated = _one_pass(x2, inv, weight, io, generator, use_bm)
    if use_bm and saturated is not None:
        scale = torch.ones((x2.shape[0], 1), dtype=x2.dtype, device=x2.device)
        for _ in range(io.bm_max_iter):
            rows = saturated.nonzero().squeeze(1)
            scale[rows] *= 2.0
            inv_rows = (inv[rows] if isinstance(inv, Tensor) else inv) / scale[rows]
            y_rows, sat_rows = _one_pass(x2[rows], inv_rows, weight, io, generator, True)
            y = y.index_copy(0, rows, y_rows * scale[rows])
            if sat_rows is None:
                break
            saturated = torch.zeros_like(saturated).index_copy(0, rows, sat_rows)
    if not (isinstance(alpha, float) and alpha == 1.0):
        y = y * alpha
    return y.reshape(*lead, weight.shape[0])
