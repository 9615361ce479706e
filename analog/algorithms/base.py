"""Training algorithms for analog tiles: a frozen-dataclass recipe (Algorithm) that builds the
per-tile state (AlgorithmState, an nn.Module holding one or more PulsedArrays).

A state is built from the parts of a tile it uses -- the device, the update config and the
forward periphery -- not from the whole TileConfig, so algorithms depend only on the leaf modules
(analog.devices, analog.periphery, analog.pulsed, analog.mvm, analog.rounding) and never on analog.config.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from analog._registry import from_type_table
from analog._rng import generator_on
from analog.devices import Device
from analog.periphery import IOConfig, UpdateConfig

ALGORITHMS: dict[str, type["Algorithm"]] = {}


def register_algorithm(cls: type["Algorithm"]) -> type["Algorithm"]:
    """Add an algorithm class to the name registry used by ``from_dict``."""
    ALGORITHMS[cls.__name__] = cls
    return cls


class AlgorithmState(nn.Module):
    """Per-tile state of an algorithm. Subclasses implement the three methods below."""

    #: update() also takes a conv layer's patches as they come, x (N, in, L) and d (N, out, L) (patch
    #: l of image n is one sample), not only rows: an algorithm that needs only sum_patches d x^T
    #: (a digital outer product) then spares the layer transposing both into rows
    takes_patches: bool = False

    def __init__(self, out_features: int, in_features: int, generator: torch.Generator) -> None:
        super().__init__()
        self.out_features, self.in_features = out_features, in_features
        self._generator = generator

    def generator(self, device: torch.device | None = None) -> torch.Generator:
        """A generator on ``device`` (default: where this state's tensors live)."""
        if device is None:
            tensor = next(iter(self.buffers()), None)
            device = tensor.device if tensor is not None else torch.device("cpu")
        gen = generator_on(self._generator, device)
        if gen is not self._generator:      # (nn.Module attribute writes are slow: only on a move)
            self._generator = gen
        return gen

    def effective_weight(self) -> Tensor:
        """The (out, in) weight the forward and backward MVMs read (no read noise)."""
        raise NotImplementedError

    def program(self, w: Tensor) -> None:
        """Program the weights the forward pass reads (what layer.set_weights does)."""
        raise NotImplementedError

    def update(self, x: Tensor, d: Tensor, lr: float) -> None:
        """One optimizer step: x (B, in) layer inputs, d (B, out) output gradients, learning rate."""
        raise NotImplementedError


@dataclass(frozen=True)
class Algorithm:
    """A training algorithm's hyper-parameters; ``build`` makes the per-tile state."""

    def build(self, out_features: int, in_features: int, *, device: Device, update: UpdateConfig,
              forward: IOConfig, generator: torch.Generator) -> AlgorithmState:
        """The state of one out_features x in_features tile: ``device`` and ``update`` make its pulsed
        arrays, ``forward`` is the periphery the tile reads through (transfers read P with it)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "to_dict"):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = "off" if value is None else value
        return out

    @classmethod
    def from_kwargs(cls, data: dict[str, Any]) -> "Algorithm":
        """Build from a dict without 'type'; subclasses with nested configs may override."""
        return cls(**data)


def algorithm_from_dict(data: Mapping[str, Any] | Algorithm, prefix: str = "") -> Algorithm:
    """``{"type": "AnalogSGD", ...}`` -> algorithm; errors name the field. (A ``{"preset": ...}`` table
    is resolved first by analog.algorithms.presets.resolve, as TileConfig.from_dict does.)"""
    if isinstance(data, Algorithm):
        return data
    return from_type_table(data, ALGORITHMS, "algorithm", prefix, lambda cls, kwargs: cls.from_kwargs(kwargs))
