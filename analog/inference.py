"""Deploying a trained analog model for inference: programming noise, conductance drift, global
drift compensation, and the Gaussian weight-noise robustness sweep (docs/design.md §2.7).

    import analog
    from analog.inference import InferenceConfig, program_for_inference, drift_to
    program_for_inference(model, InferenceConfig(prog_noise=0.03, drift_nu=0.05), seed=0)
    drift_to(model, 86400.0)        # weights as read one day after programming (compensated)

Models: programming writes ``W + prog_noise * max|W| * N(0,1)`` per device (max over the tile);
conductances then drift as ``g(t) = g(t0) * (t / t0)^-nu`` with a per-device exponent
``nu ~ N(drift_nu, drift_nu_std)`` (>= 0), applied to the signed weight (a differential pair whose
two conductances drift alike). Global drift compensation reads the tile with a fixed probe input
right after programming and at time t and rescales the outputs digitally by the ratio
(Le Gallo et al. 2023, aihwkit's GlobalDriftCompensation). Weight-noise robustness: add
``eta * std(W)`` Gaussian noise per layer (Fagbohungbe & Qian).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from analog._rng import make_generator, mix_seed
from analog.tile import AnalogTile


@dataclass(frozen=True)
class InferenceConfig:
    """prog_noise: programming error std relative to max|W| of the tile. drift_nu / drift_nu_std:
    mean and device-to-device std of the drift exponent (PCM-like ~0.05). t0: seconds after
    programming at which the programmed weights are first read. drift_compensation: rescale
    outputs by a probe read at t0 vs t."""

    prog_noise: float = 0.03
    drift_nu: float = 0.05
    drift_nu_std: float = 0.02
    t0: float = 20.0
    drift_compensation: bool = True

    def __post_init__(self) -> None:
        for name in ("prog_noise", "drift_nu", "drift_nu_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}: got {value!r}, must be a finite number >= 0")
        if isinstance(self.t0, bool) or not isinstance(self.t0, (int, float)) or not (self.t0 > 0 and math.isfinite(self.t0)):
            raise ValueError(f"t0: got {self.t0!r}, must be a finite number > 0 (seconds)")
        if not isinstance(self.drift_compensation, bool):
            raise ValueError(f"drift_compensation: got {self.drift_compensation!r}, must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "InferenceConfig":
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key for InferenceConfig; allowed: {', '.join(sorted(allowed))}")
        return cls(**dict(data))


def analog_tiles(model: nn.Module) -> list[AnalogTile]:
    """The distinct analog tiles of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, AnalogTile)]


class _Programmed:
    """What programming left on a tile: the programmed weights, drift exponents, probe reference."""

    def __init__(self, w_prog: Tensor, nu: Tensor, probe_ref: Tensor, config: InferenceConfig) -> None:
        self.w_prog, self.nu, self.probe_ref, self.config = w_prog, nu, probe_ref, config


def _probe_norm(w: Tensor) -> Tensor:
    """|W @ 1|_1: the global read of the tile with an all-ones probe (exact, no periphery noise)."""
    return (w @ torch.ones(w.shape[1], dtype=w.dtype, device=w.device)).abs().sum()


@torch.no_grad()
def program_for_inference(model: nn.Module, config: InferenceConfig | None = None, seed: int | None = None) -> int:
    """Program every analog tile's current weights with programming noise and draw its drift
    exponents; returns the number of tiles. Tiles keep the result for ``drift_to``."""
    config = InferenceConfig() if config is None else config
    tiles = analog_tiles(model)
    if not tiles:
        raise ValueError("model: has no analog tiles (convert it with analog.convert_to_analog first)")
    for index, tile in enumerate(tiles):
        w = tile.get_weights()
        g = make_generator(mix_seed(tile.seed if seed is None else seed, index, 0x1F), "cpu")
        noise = torch.randn(w.shape, generator=g).to(w)
        nu = (config.drift_nu + config.drift_nu_std * torch.randn(w.shape, generator=g)).clamp_min(0.0).to(w)
        w_prog = w + config.prog_noise * w.abs().max() * noise
        tile.set_weights(w_prog)
        w_prog = tile.get_weights()                                   # after clipping to the bounds
        tile._inference = _Programmed(w_prog, nu, _probe_norm(w_prog), config)
        tile.output_scale = 1.0
    return len(tiles)


@torch.no_grad()
def drift_to(model: nn.Module, t_seconds: float) -> list[float]:
    """Set every programmed tile to its weights at ``t_seconds`` after programming (>= t0), with
    global drift compensation if configured; returns the per-tile compensation factors."""
    if isinstance(t_seconds, bool) or not isinstance(t_seconds, (int, float)) or not math.isfinite(t_seconds):
        raise ValueError(f"t_seconds: got {t_seconds!r}, must be a finite number")
    factors = []
    for tile in analog_tiles(model):
        state: _Programmed | None = getattr(tile, "_inference", None)
        if state is None:
            raise ValueError("model: a tile was not programmed; call program_for_inference(model) first")
        t = max(float(t_seconds), state.config.t0)
        w_t = state.w_prog * torch.pow(torch.tensor(t / state.config.t0, dtype=state.w_prog.dtype,
                                                    device=state.w_prog.device), -state.nu)
        tile.set_weights(w_t, remap=False)      # drift moves conductances; mapping scales stay
        scale = 1.0
        if state.config.drift_compensation:
            now = _probe_norm(w_t)
            scale = float(state.probe_ref / now) if float(now) > 0 else 1.0
        tile.output_scale = scale
        factors.append(scale)
    return factors


@torch.no_grad()
def add_weight_noise(model: nn.Module, eta: float, seed: int = 0) -> None:
    """Gaussian weight noise with std eta * std(W) on every analog tile (and digital Linear/Conv2d),
    the robustness benchmark of Fagbohungbe & Qian. Modifies the model in place."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (eta >= 0 and math.isfinite(eta)):
        raise ValueError(f"eta: got {eta!r}, must be a finite number >= 0")
    g = make_generator(seed, "cpu")
    for tile in analog_tiles(model):
        w = tile.get_weights()
        tile.set_weights(w + eta * w.std() * torch.randn(w.shape, generator=g).to(w))
    for m in model.modules():
        if type(m) in (nn.Linear, nn.Conv2d):
            m.weight.add_(eta * m.weight.std() * torch.randn(m.weight.shape, generator=g).to(m.weight))
