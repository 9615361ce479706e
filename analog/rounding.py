"""Rounding onto a grid: unbiased stochastic rounding and saturating signed fixed point.

Stochastic rounding (Gupta et al. 2015, "Deep learning with limited numerical precision") rounds x
to floor(x/eps)*eps and then up one step with probability frac(x/eps), so E[round(x)] = x: small
updates survive on average where round-to-nearest would drop them. Used by the DAC/ADC option of
IOConfig, by TTv2's digital buffer and by the edge client's latent quantizer.
"""
from __future__ import annotations


import torch
from torch import Tensor

from analog.validation import check_int, check_number

MODES = ("stochastic", "nearest")


def _check_step(step: float | Tensor) -> None:
    if isinstance(step, Tensor):
        if not bool(torch.isfinite(step).all()) or bool((step <= 0).any()):
            raise ValueError("step: got a tensor with entries <= 0 or non-finite, all must be > 0 and finite")
    else:
        check_number("step", step, 0, lo_open=True)


def stochastic_round(x: Tensor, step: float | Tensor = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Round x to the grid step*Z: down to floor, up with probability (x - floor)/step. Unbiased.

    step may be a tensor broadcastable to x (e.g. a per-feature scale). The generator, if given,
    must live on x's device.
    """
    _check_step(step)
    y = x / step
    low = torch.floor(y)
    u = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    return (low + (u < (y - low)).to(y.dtype)) * step


def nearest_round(x: Tensor, step: float | Tensor = 1.0) -> Tensor:
    """Round x to the nearest point of step*Z (ties to even, as torch.round)."""
    _check_step(step)
    return torch.round(x / step) * step


def round_to_grid(x: Tensor, step: float | Tensor, mode: str = "nearest",
                  generator: torch.Generator | None = None) -> Tensor:
    """Dispatch on mode in {"stochastic", "nearest"}."""
    if mode == "stochastic":
        return stochastic_round(x, step, generator)
    if mode == "nearest":
        return nearest_round(x, step)
    raise ValueError(f"mode: got {mode!r}, must be one of {', '.join(map(repr, MODES))}")


def fixed_point_range(int_bits: int, frac_bits: int) -> tuple[float, float, float]:
    """(step, lowest, highest) of signed fixed point <int_bits, frac_bits>; int_bits counts the sign
    bit (Gupta et al.'s <IL, FL>): step 2^-FL, range [-2^(IL-1), 2^(IL-1) - 2^-FL]."""
    for name, value, low in (("int_bits", int_bits, 1), ("frac_bits", frac_bits, 0)):
        check_int(name, value, low)
    if int_bits + frac_bits > 53:
        raise ValueError(f"int_bits: got int_bits + frac_bits = {int_bits + frac_bits}, must be <= 53")
    step = 2.0 ** -frac_bits
    top = 2.0 ** (int_bits - 1)
    return step, -top, top - step


def quantize_fixed(x: Tensor, int_bits: int, frac_bits: int, mode: str = "stochastic",
                   generator: torch.Generator | None = None) -> Tensor:
    """Round x to signed fixed point <int_bits (incl. sign), frac_bits>, saturating at the range ends."""
    step, low, high = fixed_point_range(int_bits, frac_bits)
    return round_to_grid(x, step, mode, generator).clamp(low, high)
