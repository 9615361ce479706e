"""The noisy matrix-vector multiply of an analog tile (DESIGN.md §2, "Forward").

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


def _quantize(x: Tensor, bits: int, bound: float, mode: str, generator: torch.Generator | None) -> Tensor:
    """Clip to [-bound, bound] and round to the b-bit grid (no argument checks: hot path)."""
    step = converter_step(bits, bound)
    y = x.clamp(-bound, bound).div_(step)
    if mode == "stochastic":
        y = y.floor_().add_(torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype)
                            < (x.clamp(-bound, bound) / step - y))
    else:
        y = y.round_()
    return y.mul_(step)


def _one_pass(xs: Tensor, weight: Tensor, io: IOConfig, generator: torch.Generator | None,
              need_rows: bool) -> tuple[Tensor, Tensor | None]:
    """DAC -> crossbar -> ADC for already scaled inputs. Returns (y, saturated-rows mask or None
    when no output saturated)."""
    if io.inp_res is not None:
        xs = _quantize(xs, io.inp_res, io.inp_bound, io.inp_rounding, generator)
    elif math.isfinite(io.inp_bound):
        xs = xs.clamp(-io.inp_bound, io.inp_bound)
    y = F.linear(xs, weight)
    if io.w_noise > 0:
        # fresh W + w_noise*N per input vector == output noise w_noise * ||x||_2 (exact marginal)
        scale = xs.norm(dim=-1, keepdim=True).mul_(io.w_noise)
        y = y.addcmul_(scale, torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype))
    if io.out_noise > 0:
        y = y.add_(torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype), alpha=io.out_noise)
    saturated = None
    if math.isfinite(io.out_bound):
        if need_rows:
            over = y.abs() >= io.out_bound
            if bool(over.any()):
                saturated = over.any(dim=-1)
        if io.out_res is None:
            y = y.clamp_(-io.out_bound, io.out_bound)
    if io.out_res is not None:
        y = _quantize(y, io.out_res, io.out_bound, io.out_rounding, generator)
    return y, saturated


def noisy_mvm(x: Tensor, weight: Tensor, io: IOConfig, generator: torch.Generator | None = None) -> Tensor:
    """y = x @ weight.T through the analog periphery ``io``. x: (..., in), weight: (out, in)."""
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"x: got last dim {x.shape[-1]}, must equal weight's in_features {weight.shape[-1]}")
    if io.is_ideal:
        return F.linear(x, weight)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if io.noise_management == "abs_max":
        # all-zero rows: alpha = tiny keeps them exactly zero before noise, and ~0 after rescaling
        alpha = x2.abs().amax(dim=-1, keepdim=True).clamp_min_(torch.finfo(x2.dtype).tiny)
        xs = x2 / alpha
    elif io.noise_management == "constant":
        alpha = io.nm_constant
        xs = x2 / alpha
    else:
        alpha, xs = 1.0, x2
    use_bm = io.bound_management == "iterative" and math.isfinite(io.out_bound) and io.bm_max_iter > 0
    y, saturated = _one_pass(xs, weight, io, generator, use_bm)
    if use_bm and saturated is not None:
        scale = torch.ones((x2.shape[0], 1), dtype=x2.dtype, device=x2.device)
        for _ in range(io.bm_max_iter):
            rows = saturated.nonzero().squeeze(1)
            scale[rows] *= 2.0
            y_rows, sat_rows = _one_pass(xs[rows] / scale[rows], weight, io, generator, True)
            y = y.index_copy(0, rows, y_rows * scale[rows])
            if sat_rows is None:
                break
            saturated = torch.zeros_like(saturated).index_copy(0, rows, sat_rows)
    if not (isinstance(alpha, float) and alpha == 1.0):
        y = y * alpha
    return y.reshape(*lead, weight.shape[0])
