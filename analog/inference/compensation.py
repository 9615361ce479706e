"""Drift compensation: a digital gain after the ADC that undoes the average conductance decay.

Right after programming the chip reads its tile once with a fixed set of probe inputs and keeps the
result; at inference time t it reads the same probes again and rescales the outputs by the ratio
(Le Gallo et al. 2023; aihwkit's GlobalDriftCompensation reads an all-ones probe). The probes here
are the all-ones vector plus seeded uniform [0, 1] vectors: non-negative, like the activations a
layer sees after ReLU/sigmoid, and the same on every deployment. ``per_column`` keeps one ratio per output
column, which also follows the column-to-column differences of drift (not only the mean).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from analog.validation import check_bool, check_int


@dataclass(frozen=True)
class GlobalDriftCompensation:
    """One gain per tile (``per_column=False``) or one per output column; ``probes``: how many."""

    per_column: bool = False
    probes: int = 32

    def __post_init__(self) -> None:
        check_bool("per_column", self.per_column)
        check_int("probes", self.probes, 1, 4096)

    def _read(self, w: Tensor) -> Tensor:
        g = torch.Generator().manual_seed(0x5EED)
        x = torch.rand(self.probes, w.shape[1], generator=g)
        x[0] = 1.0
        x = x.to(w)
        y = (x @ w.t()).abs()                       # (probes, out)
        return y.sum(dim=0) if self.per_column else y.sum().reshape(1)

    def scale(self, w_reference: Tensor, w_now: Tensor) -> Tensor:
        """The gain that brings w_now's probe read back to w_reference's (1 where w_now reads 0)."""
        ref, now = self._read(w_reference), self._read(w_now)
        ok = (now > 0) & (ref > 0)
        return torch.where(ok, ref / torch.where(ok, now, torch.ones_like(now)), torch.ones_like(now))


def ColumnDriftCompensation(probes: int = 32) -> GlobalDriftCompensation:  # noqa: N802 (a named preset)
    """Per-column drift compensation (one gain per output)."""
    return GlobalDriftCompensation(per_column=True, probes=probes)


def resolve(compensation: bool | GlobalDriftCompensation | None) -> GlobalDriftCompensation | None:
    """True -> the global default, False/None -> off, an instance -> itself."""
    if compensation is True:
        return GlobalDriftCompensation()
    if compensation is False or compensation is None:
        return None
    if isinstance(compensation, GlobalDriftCompensation):
        return compensation
    raise ValueError(f"compensation: got {compensation!r}, must be true, false or a GlobalDriftCompensation")


