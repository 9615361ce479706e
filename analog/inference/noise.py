"""Inference noise models: what programming a trained weight onto a chip, waiting, and reading it does.

A noise model is a frozen, validated description with three steps (the ``NoiseModel`` protocol):

    g   = model.program(w, generator)     # target conductances + programming noise (+ drift exponents)
    g_t = model.drift(g, t_seconds)       # conductances t seconds after programming
    w_t = model.read(g_t, generator)      # the weights a read at that time sees (read noise)

``Conductances`` carries a differential pair per weight, ``w = (g_plus - g_minus) * scale``, and
the state drift needs. Everything is vectorized over the whole tile; randomness comes only from the
generator passed in, so a seed fixes the chip. The physics is in docs/design.md §2.7.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Protocol, runtime_checkable

import torch
from torch import Tensor

from analog.validation import check_bool, check_fields, check_number


@dataclass
class Conductances:
    """A programmed tile: differential pairs ``w = (g_plus - g_minus) * scale``.

    g_plus / g_minus: (out, in) conductances (uS for PCMLike); scale: weight per conductance unit,
    a scalar or (out, 1) for per-column mapping; nu_plus / nu_minus: drift exponents (None: no drift);
    t_seconds: time since programming these values correspond to.
    """

    g_plus: Tensor
    g_minus: Tensor
    scale: Tensor
    nu_plus: Tensor | None = None
    nu_minus: Tensor | None = None
    t_seconds: float = 0.0

    def weights(self) -> Tensor:
        """The weights these conductances encode, without read noise."""
        return (self.g_plus - self.g_minus) * self.scale


@runtime_checkable
class NoiseModel(Protocol):
    """program -> drift -> read; see the module docstring."""

    def program(self, weights: Tensor, generator: torch.Generator) -> Conductances: ...

    def drift(self, g: Conductances, t_seconds: float) -> Conductances: ...

    def read(self, g: Conductances, generator: torch.Generator) -> Tensor: ...


def _randn(like: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normals drawn on the generator's device, returned on ``like``'s device and dtype."""
    return torch.randn(like.shape, generator=generator, device=generator.device).to(like)


def _check_time(t_seconds: Any) -> float:
    return check_number("t_seconds", t_seconds, 0.0)


class _Dict:
    """to_dict / from_dict for flat frozen dataclasses (TOML-shaped)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "") -> Any:
        check_fields(prefix.rstrip("."), data, cls)
        try:
            return cls(**dict(data))
        except ValueError as exc:
            raise ValueError(f"{prefix}{exc}") from None


@dataclass(frozen=True)
class PCMLike(_Dict):
    """Phase-change memory statistics measured on a million-device 90 nm array (Nandakumar et al.,
    ICECS 2019; used by Le Gallo et al. 2023 and IBM aihwkit's PCMLikeNoiseModel).

    Mapping: per tile (or per output column with ``per_column``) ``max|w|`` maps to ``g_max`` uS;
    a positive weight is written to G+, a negative one to G- (the other device stays at 0).
    Programming (program-and-verify residual): ``G_p = G_T + sigma_prog(G_T) N(0, 1)``, clipped at 0,
    with ``sigma_prog = (c0 + c1 x + c2 x^2) * g_max / 25 uS`` and ``x = G_T / g_max``
    (coefficients fitted at g_max = 25 uS: 0.26348, 1.9650, -1.1731).
    Drift: ``G(t) = G_p ((t + t0) / t0)^-nu`` per device with ``nu ~ |N(mu_nu, sigma_nu)|``,
    ``mu_nu = clip(-0.0155 ln x + 0.0244, 0.049, 0.1)``, ``sigma_nu = clip(-0.0125 ln x - 0.0059,
    0.008, 0.045)``: low conductances drift faster and spread more (device-to-device).
    Read noise, 1/f-like, integrated since programming, so it grows with time:
    ``sigma_read = Q_s sqrt(ln((t + t0 + t_read) / (2 t_read)))`` relative to G(t), with
    ``Q_s = min(0.0088 / max(x^0.65, 1e-3), 0.2)`` and t_read = 250 ns.
    The ``*_scale`` factors switch each effect off (0) or exaggerate it.
    """

    g_max: float = 25.0
    prog_coeff: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
    prog_coeff_g_max: float = 25.0
    t0: float = 20.0
    t_read: float = 250e-9
    prog_noise_scale: float = 1.0
    drift_scale: float = 1.0
    read_noise_scale: float = 1.0
    per_column: bool = False

    def __post_init__(self) -> None:
        for name in ("g_max", "prog_coeff_g_max", "t0", "t_read"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), 0.0, lo_open=True))
        for name in ("prog_noise_scale", "drift_scale", "read_noise_scale"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), 0.0))
        coeff = self.prog_coeff
        if not isinstance(coeff, (list, tuple)) or len(coeff) < 1:
            raise ValueError(f"prog_coeff: got {coeff!r}, must be a list of polynomial coefficients")
        object.__setattr__(self, "prog_coeff",
                           tuple(check_number(f"prog_coeff[{i}]", c) for i, c in enumerate(coeff)))
        check_bool("per_column", self.per_column)

    def _scale(self, w: Tensor) -> Tensor:
        top = w.abs().amax(dim=1, keepdim=True) if self.per_column else w.abs().amax().reshape(1, 1)
        top = torch.where(top > 0, top, torch.ones_like(top))
        return top / self.g_max

    def prog_sigma(self, g_target: Tensor) -> Tensor:
        """Programming-noise std (uS) for target conductances g_target (uS)."""
        x = g_target / self.g_max
        sigma = torch.zeros_like(x)
        for c in reversed(self.prog_coeff):          # Horner
            sigma = sigma * x + c
        return (sigma * (self.g_max / self.prog_coeff_g_max)).clamp_min(0.0)

    def _nu(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        x = (g_target / self.g_max).clamp_min(1e-7)
        mu = (-0.0155 * torch.log(x) + 0.0244).clamp(0.049, 0.1)
        sig = (-0.0125 * torch.log(x) - 0.0059).clamp(0.008, 0.045)
        return (mu + sig * _randn(x, generator)).abs() * self.drift_scale

    def program(self, weights: Tensor, generator: torch.Generator) -> Conductances:
        w = weights.detach()
        scale = self._scale(w)
        g_plus = (w.clamp_min(0.0) / scale)
        g_minus = ((-w).clamp_min(0.0) / scale)
        nu_plus, nu_minus = self._nu(g_plus, generator), self._nu(g_minus, generator)
        noisy = []
        for g in (g_plus, g_minus):
            noise = self.prog_noise_scale * self.prog_sigma(g) * _randn(g, generator)
            noisy.append((g + noise).clamp_min(0.0))
        return Conductances(noisy[0], noisy[1], scale, nu_plus, nu_minus, 0.0)

    def drift(self, g: Conductances, t_seconds: float) -> Conductances:
        t = _check_time(t_seconds)
        if g.t_seconds != 0.0:
            raise ValueError("g: drift starts from freshly programmed conductances (t_seconds = 0)")
        ratio = torch.tensor((t + self.t0) / self.t0, dtype=g.g_plus.dtype, device=g.g_plus.device)
        if g.nu_plus is None or g.nu_minus is None:
            return replace(g, t_seconds=t)
        return replace(g, g_plus=g.g_plus * ratio.pow(-g.nu_plus), g_minus=g.g_minus * ratio.pow(-g.nu_minus),
                       t_seconds=t)

    def read_sigma(self, g: Tensor, t_seconds: float) -> Tensor:
        """Relative 1/f read-noise std of conductances g read t_seconds after programming."""
        q_s = (0.0088 / (g.abs() / self.g_max).pow(0.65).clamp_min(1e-3)).clamp_max(0.2)
        t = t_seconds + self.t0
        return q_s * math.sqrt(math.log((t + self.t_read) / (2 * self.t_read))) * self.read_noise_scale

    def read(self, g: Conductances, generator: torch.Generator) -> Tensor:
        out = []
        for gg in (g.g_plus, g.g_minus):
            out.append((gg + gg.abs() * self.read_sigma(gg, g.t_seconds) * _randn(gg, generator)).clamp_min(0.0))
        return (out[0] - out[1]) * g.scale


@dataclass(frozen=True)
class WeightNoise(_Dict):
    """Gaussian weight noise, drawn once at programming (Fagbohungbe & Qian's robustness benchmark).

    Additive (default): ``w + eta * std(W) * N(0, 1)`` with std(W) over the layer's weights;
    relative: ``w * (1 + eta * N(0, 1))``. No drift, no read noise. eta = 0 returns w unchanged.
    """

    eta: float = 0.1
    relative: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "eta", check_number("eta", self.eta, 0.0))
        check_bool("relative", self.relative)

    def perturb(self, w: Tensor, noise: Tensor) -> Tensor:
        """w with the noise of this model, given standard normals ``noise`` (training uses it too)."""
        if self.eta == 0.0:
            return w
        if self.relative:
            return w + self.eta * w * noise
        std = w.detach().std() if w.numel() > 1 else w.detach().abs().reshape(())
        return w + self.eta * std * noise

    def program(self, weights: Tensor, generator: torch.Generator) -> Conductances:
        w = weights.detach()
        noisy = self.perturb(w, _randn(w, generator)) if self.eta > 0 else w.clone()
        one = torch.ones((), dtype=w.dtype, device=w.device)
        return Conductances(noisy, torch.zeros_like(noisy), one)

    def drift(self, g: Conductances, t_seconds: float) -> Conductances:
        return replace(g, t_seconds=_check_time(t_seconds))

    def read(self, g: Conductances, generator: torch.Generator) -> Tensor:
        return g.weights()


NOISE_MODELS: dict[str, type] = {"pcm": PCMLike, "weight_noise": WeightNoise}


def noise_model_from_dict(data: Mapping[str, Any], prefix: str = "") -> NoiseModel:
    """``{"type": "pcm" | "weight_noise", ...fields}`` -> the noise model (for config files)."""
    if not isinstance(data, Mapping) or "type" not in data:
        raise ValueError(f"{prefix}type: missing, must be one of {', '.join(sorted(NOISE_MODELS))}")
    kind = data["type"]
    if kind not in NOISE_MODELS:
        raise ValueError(f"{prefix}type: got {kind!r}, must be one of {', '.join(sorted(NOISE_MODELS))}")
    return NOISE_MODELS[kind].from_dict({k: v for k, v in data.items() if k != "type"}, prefix)
