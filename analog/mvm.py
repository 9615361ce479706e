"""The noisy matrix-vector multiply of an analog tile (DESIGN.md §2, "Forward").

y = W x as the hardware computes it, vectorized over the batch: noise management (scale by
alpha), DAC (clip + quantize), output-referred weight read noise, output noise, ADC (clip +
quantize), iterative bound management (halve the input of the rows that saturated and retry), and
rescale. The backward pass calls the same function with W^T and the backward IOConfig.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from analog.config import IOConfig
from analog.rounding import round_to_grid


def converter_step(bits: int, bound: float) -> float:
    """Step of a symmetric b-bit converter over [-bound, bound]: 2**b - 1 levels incl. zero."""
    return 2.0 * bound / (2 ** bits - 2) if bits > 1 else bound


def _one_pass(xs: Tensor, weight: Tensor, io: IOConfig, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """DAC -> crossbar -> ADC for already scaled inputs. Returns (y, saturated rows mask)."""
    if math.isfinite(io.inp_bound):
        xs = xs.clamp(-io.inp_bound, io.inp_bound)
    if io.inp_res is not None:
        xs = round_to_grid(xs, converter_step(io.inp_res, io.inp_bound), io.inp_rounding, generator)
    y = F.linear(xs, weight)
    if io.w_noise > 0:
        # fresh W + w_noise*N per input vector == output noise w_noise * ||x||_2 (exact marginal)
        norm = xs.norm(dim=-1, keepdim=True)
        y = y + io.w_noise * norm * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    if io.out_noise > 0:
        y = y + io.out_noise * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    if math.isfinite(io.out_bound):
        saturated = (y.abs() >= io.out_bound).any(dim=-1)
        y = y.clamp(-io.out_bound, io.out_bound)
    else:
        saturated = torch.zeros(y.shape[:-1], dtype=torch.bool, device=y.device)
    if io.out_res is not None:
        y = round_to_grid(y, converter_step(io.out_res, io.out_bound), io.out_rounding, generator)
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
        alpha = x2.abs().amax(dim=-1, keepdim=True)
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    elif io.noise_management == "constant":
        alpha = torch.full((x2.shape[0], 1), io.nm_constant, dtype=x2.dtype, device=x2.device)
    else:
        alpha = torch.ones((x2.shape[0], 1), dtype=x2.dtype, device=x2.device)
    xs = x2 / alpha
    y, saturated = _one_pass(xs, weight, io, generator)
    if io.bound_management == "iterative" and math.isfinite(io.out_bound) and io.bm_max_iter > 0:
        scale = torch.ones_like(alpha)
        for _ in range(io.bm_max_iter):
            if not bool(saturated.any()):
                break
            rows = saturated.nonzero().squeeze(1)
            scale[rows] *= 2.0
            y_rows, sat_rows = _one_pass(xs[rows] / scale[rows], weight, io, generator)
            y = y.index_copy(0, rows, y_rows)
            saturated = torch.zeros_like(saturated).index_copy(0, rows, sat_rows)
        alpha = alpha * scale
    return (y * alpha).reshape(*lead, weight.shape[0])
