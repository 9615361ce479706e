"""Analog SGD: the pulsed update applied straight to the one array the forward pass reads.

With asymmetric devices this minimizes f(W) + <Sigma, R(W)> (an implicit penalty pulling W to the
symmetric point), so it converges to a biased point -- the baseline Tiki-Taka & co. improve on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from analog.algorithms.base import Algorithm, AlgorithmState, register_algorithm
from analog.devices import Device
from analog.periphery import IOConfig, UpdateConfig
from analog.pulsed import PulsedArray, PulseStats


class AnalogSGDState(AlgorithmState):
    """One PulsedArray; update = pulse_update."""

    def __init__(self, out_features: int, in_features: int, device: Device, update: UpdateConfig,
                 generator: torch.Generator) -> None:
        super().__init__(out_features, in_features, generator)
        self.array = PulsedArray(out_features, in_features, device, update, generator)

    def effective_weight(self) -> Tensor:
        return self.array.weight

    def program(self, w: Tensor) -> None:
        self.array.program(w)

    def update(self, x: Tensor, d: Tensor, lr: float) -> PulseStats:
        return self.array.pulse_update(x, d, lr)


@register_algorithm
@dataclass(frozen=True)
class AnalogSGD(Algorithm):
    """Plain analog SGD (no hyper-parameters beyond the tile's UpdateConfig)."""

    def build(self, out_features: int, in_features: int, *, device: Device, update: UpdateConfig,
              forward: IOConfig, generator: torch.Generator) -> AnalogSGDState:
        return AnalogSGDState(out_features, in_features, device, update, generator)
