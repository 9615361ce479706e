"""Gupta et al. (2015): train the MLP digitally with its weights kept in fixed point <IL, FL>.

After every SGD step each parameter is re-quantized, ``w <- Q(w - lr * g)``; with ``w`` on the grid this
is the same as quantizing the update itself. Round-to-nearest drops every update smaller than half a
step (eps/2 = 2^-(FL+1)), so with few fractional bits training stalls; stochastic rounding keeps the
update in expectation and trains like float32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from analog.rounding import quantize_fixed
from analog.studies.data import Split
from analog.studies.mlp import Curve, make_mlp, train

ROUNDING_MODES = ("stochastic", "nearest")


@dataclass(frozen=True)
class FixedPointSpec:
    """<int_bits, frac_bits> with the sign inside ``int_bits`` (word length = int + frac);
    ``mode=None`` means plain float32."""

    int_bits: int = 4
    frac_bits: int = 12
    mode: str | None = "stochastic"

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in ROUNDING_MODES:
            raise ValueError(f"mode: got {self.mode!r}, must be one of {ROUNDING_MODES} or None")
        if self.int_bits < 1:
            raise ValueError(f"int_bits: got {self.int_bits}, must be >= 1 (it holds the sign)")
        if self.frac_bits < 0:
            raise ValueError(f"frac_bits: got {self.frac_bits}, must be >= 0")

    @property
    def label(self) -> str:
        if self.mode is None:
            return "float32"
        return f"<{self.int_bits},{self.frac_bits}> {self.mode}"


def train_fixed_point(split: Split, spec: FixedPointSpec, *, sizes: tuple[int, ...], activation: str,
                      epochs: int, batch_size: int, lr: float, seed: int,
                      progress: Callable[[int], None] | None = None) -> Curve:
    """Train the MLP with SGD, quantizing all parameters after initialization and after every step."""
    torch.manual_seed(seed)
    model = make_mlp(sizes, activation)
    gen = torch.Generator().manual_seed(seed + 7919)
    params = list(model.parameters())

    @torch.no_grad()
    def requantize() -> None:
        if spec.mode is None:
            return
        for p in params:
            p.copy_(quantize_fixed(p, spec.int_bits, spec.frac_bits, mode=spec.mode, generator=gen))

    requantize()
    opt = torch.optim.SGD(params, lr=lr)
    return train(model, opt, split, epochs, batch_size, seed, after_step=requantize, progress=progress)
