"""Mixed-precision training (Nandakumar et al., "Mixed-precision deep learning based on computational
memory", Front. Neurosci. 14, 2020; aihwkit's MixedPrecisionCompound).

The forward and backward MVMs run on the tile as usual, but the weight gradient ``-lr * d^T x`` is
accumulated digitally in a buffer chi (out, in, in units of the device's nominal dw_min) instead of
being pulsed as stochastic coincidences. Where ``|chi| >= threshold`` the device gets trunc(chi) single
pulses (at most ``max_pulses`` per step) and chi keeps the remainder. Why: on a device with large cycle-to-cycle
noise every pulse costs noise, and a stochastic pulsed update fires many pulses whose signs cancel
over a batch and over steps; here a device is pulsed only for the net change it must make, so the
pulse count (and the write noise) is the minimum the update needs. The digital cost is one outer
product per step (what a digital trainer computes anyway) and one float per weight. A threshold above 1
is a dead zone: mini-batch noise that walks chi back and forth below it fires nothing, at the price of
a lag of up to ``threshold`` steps per weight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from analog.algorithms.base import Algorithm, AlgorithmState, register_algorithm
from analog.devices import Device
from analog.periphery import IOConfig, UpdateConfig
from analog.pulsed import SPARSE_FRACTION, PulsedArray
from analog.validation import check_int, check_number


class MixedPrecisionState(AlgorithmState):
    """One PulsedArray (what the MVMs read) and the digital gradient accumulator chi."""

    takes_patches = True        # chi needs only sum d x^T, which a batched matmul takes from patches
    digital_accumulation = True  # the outer product d^T x is digital work (analog.energy counts it)

    def __init__(self, out_features: int, in_features: int, device: Device, update: UpdateConfig,
                 generator: torch.Generator, algorithm: "MixedPrecision") -> None:
        super().__init__(out_features, in_features, generator)
        self.algorithm = algorithm
        self.array = PulsedArray(out_features, in_features, device, update, generator)
        self.register_buffer("chi", torch.zeros(out_features, in_features))
        self.pulses_fired = 0

    def get_extra_state(self) -> dict[str, int]:
        return {"pulses_fired": self.pulses_fired}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.pulses_fired = int(state.get("pulses_fired", 0))

    @property
    def pulse_size(self) -> float:
        """One chi unit in weight units: the device's nominal dw_min (what the digital side knows;
        each device's own step varies around it)."""
        return self.array.device_model.dw_min

    def effective_weight(self) -> Tensor:
        return self.array.weight

    @torch.no_grad()
    def program(self, w: Tensor) -> None:
        self.array.program(w)
        self.chi.zero_()

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float) -> int:
        """chi -= lr d^T x / dw_min; where |chi| >= threshold fire trunc(chi) pulses (clamped to
        max_pulses) and keep the rest. Returns the number of pulses fired this step. x, d: rows
        (B, in), (B, out) or conv patches (N, in, L), (N, out, L) (``takes_patches``)."""
        x, d = x.to(self.chi.dtype), d.to(self.chi.dtype)
        # rows (B, in)/(B, out), or a conv layer's patches (N, in, L)/(N, out, L): sum over n, l
        grad = d.t() @ x if x.dim() == 2 else torch.bmm(d, x.transpose(1, 2)).sum(0)
        if self.array.device_model.is_ideal:
            self.array.weight.add_(grad, alpha=-float(lr))
            return 0
        chi = self.chi
        chi.add_(grad, alpha=-float(lr) / self.pulse_size)
        # a device fires iff |chi| >= threshold (>= 1, so trunc(chi) != 0 there). Usually few do:
        # find them first and truncate, clamp and subtract on those only; where a quarter or more
        # fire, the whole-array formula (the same devices, draws and result either way)
        a = self.algorithm
        fires = chi.abs() >= a.threshold
        count = int(torch.count_nonzero(fires))
        if count == 0:
            return 0
        if count < SPARSE_FRACTION * chi.numel():
            flat = fires.view(-1).nonzero().squeeze(1)
            n = chi.view(-1).index_select(0, flat).trunc_().clamp_(-a.max_pulses, a.max_pulses)
            chi.view(-1).index_add_(0, flat, n, alpha=-1.0)
            fired = self.array.pulse_signed(flat, n)
        else:
            n = torch.trunc(chi).clamp_(-a.max_pulses, a.max_pulses)
            if a.threshold > 1.0:
                n.masked_fill_(~fires, 0.0)                       # the dead zone fires nothing
            chi.sub_(n)
            fired = self.array.pulse_signed(None, n)
        self.pulses_fired += fired
        return fired


@register_algorithm
@dataclass(frozen=True)
class MixedPrecision(Algorithm):
    """Digital gradient accumulation, thresholded into single device pulses (see the module docstring).
    ``threshold``: how much accumulated update (in the device's dw_min) makes a device fire: 1 = every
    full step; above 1 a dead zone against mini-batch noise (then trunc(chi) pulses fire at once).
    ``max_pulses``: the most pulses one device gets in one step (a burst); the rest stays in chi."""

    threshold: float = 1.0
    max_pulses: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold",
                           check_number("threshold", self.threshold, 1, note=" (in steps of dw_min)"))
        check_int("max_pulses", self.max_pulses, 1)

    def build(self, out_features: int, in_features: int, *, device: Device, update: UpdateConfig,
              forward: IOConfig, generator: torch.Generator) -> MixedPrecisionState:
        return MixedPrecisionState(out_features, in_features, device, update, generator, self)


__all__ = ["MixedPrecision", "MixedPrecisionState"]
