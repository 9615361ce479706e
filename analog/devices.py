"""Resistive devices: each is a frozen dataclass whose job is its response functions q+(w), q-(w).

One up pulse moves a device by ``dw_min*(1+up_down)*q+(w)``, one down pulse by
``-dw_min*(1-up_down)*q-(w)`` (times ``1 + dw_min_std*xi`` cycle-to-cycle noise), docs/design.md §2.3-2.4.
The tile (analog.pulsed.PulsedArray), not the device, owns state, randomness and pulses; it draws
device-to-device variation of dw_min, bounds and up_down once from the ``*_dtod`` spreads below.
Adding a device = subclass Device, implement q_up/q_down, decorate with @register_device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
from torch import Tensor

from analog._registry import from_type_table
from analog.validation import check_number

DEVICES: dict[str, type["Device"]] = {}


def register_device(cls: type["Device"]) -> type["Device"]:
    """Add a device class to the name registry used by ``from_dict``."""
    DEVICES[cls.__name__] = cls
    return cls


@dataclass(frozen=True)
class Device:
    """Common parameters (aihwkit reference values as defaults).

    dw_min: mean step of one pulse at w = 0. w_max, w_min: bounds. up_down: up/down bias beta.
    dw_min_dtod, w_max_dtod, w_min_dtod: device-to-device spread, relative to dw_min / |bound|.
    up_down_dtod: absolute device-to-device spread of beta. dw_min_std: cycle-to-cycle spread of one
    pulse, relative to its step.
    """

    dw_min: float = 0.001
    w_max: float = 0.6
    w_min: float = -0.6
    up_down: float = 0.0
    dw_min_dtod: float = 0.3
    dw_min_std: float = 0.3
    w_max_dtod: float = 0.3
    w_min_dtod: float = 0.3
    up_down_dtod: float = 0.01

    #: bounded response functions (q -> 0 at the bound) need w_min < 0 < w_max
    needs_zero_inside = False
    #: floating point update instead of pulses (Ideal)
    is_ideal = False
    #: q+ = q- = 1 everywhere (the tile skips evaluating them)
    constant_response = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                object.__setattr__(self, f.name, check_number(f.name, value, finite=False))
            elif f.type in ("float", float):
                raise ValueError(f"{f.name}: got {value!r}, must be a number")
        if not self.is_ideal and not (self.dw_min > 0 and math.isfinite(self.dw_min)):
            raise ValueError(f"dw_min: got {self.dw_min}, must be > 0 and finite")
        if not self.w_min < self.w_max:
            raise ValueError(f"w_min: got {self.w_min}, must be < w_max ({self.w_max})")
        if not self.is_ideal and not (math.isfinite(self.w_min) and math.isfinite(self.w_max)):
            raise ValueError(f"w_max: got bounds [{self.w_min}, {self.w_max}], must be finite for {type(self).__name__}")
        if self.needs_zero_inside and not (self.w_min < 0 < self.w_max):
            raise ValueError(f"w_min: got bounds [{self.w_min}, {self.w_max}], "
                             f"{type(self).__name__} needs w_min < 0 < w_max")
        if not -1.0 < self.up_down < 1.0:
            raise ValueError(f"up_down: got {self.up_down}, must be in (-1, 1)")
        for name in ("dw_min_dtod", "dw_min_std", "w_max_dtod", "w_min_dtod", "up_down_dtod"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: got {getattr(self, name)}, must be >= 0")

    # -- response functions: pure, vectorized, take per-device bounds (tensors broadcastable to w) --
    def q_up(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        raise NotImplementedError

    def linear_slopes(self) -> tuple[float, float] | None:
        """(gamma_up, gamma_down) when q+ = max(0, 1 - gamma_up w / w_max) and
        q- = max(0, 1 - gamma_down w / w_min), else None. The pulsed update then folds the response
        into per-device slopes (one fused multiply-add per direction instead of four kernels); a
        subclass that changes q_up/q_down must change this too."""
        return None

    def q_down(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _unit_response(self: Device, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
    """q+ = q- = 1 everywhere: the response of the constant_response devices (Ideal, ConstantStep)."""
    return torch.ones_like(w)


@register_device
@dataclass(frozen=True)
class Ideal(Device):
    """Floating-point update W -= lr d x^T, no bounds, no noise: the digital reference."""

    dw_min: float = 0.0
    w_max: float = math.inf
    w_min: float = -math.inf
    dw_min_dtod: float = 0.0
    dw_min_std: float = 0.0
    w_max_dtod: float = 0.0
    w_min_dtod: float = 0.0
    up_down_dtod: float = 0.0
    is_ideal = True
    constant_response = True
    q_up = q_down = _unit_response


@register_device
@dataclass(frozen=True)
class ConstantStep(Device):
    """Same step everywhere, hard-clipped at the bounds (q = 1)."""

    constant_response = True
    q_up = q_down = _unit_response


@register_device
@dataclass(frozen=True)
class SoftBounds(Device):
    """Linear (soft-bounds) response: q+ = 1 - w/w_max, q- = 1 - w/w_min; symmetric point 0 (beta=0)."""

    needs_zero_inside = True

    def linear_slopes(self) -> tuple[float, float] | None:
        return 1.0, 1.0

    def q_up(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return (1.0 - w / w_max).clamp_min(0.0)

    def q_down(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return (1.0 - w / w_min).clamp_min(0.0)


@register_device
@dataclass(frozen=True)
class LinearStep(Device):
    """Linear response with its own slopes: q+ = 1 - gamma_up*w/w_max, q- = 1 - gamma_down*w/w_min
    (clipped at 0 and at the bounds). gamma = 1 is SoftBounds, gamma = 0 ConstantStep."""

    gamma_up: float = 0.5
    gamma_down: float = 0.5
    needs_zero_inside = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("gamma_up", "gamma_down"):
            if not 0.0 <= getattr(self, name) <= 10.0:
                raise ValueError(f"{name}: got {getattr(self, name)}, must be in [0, 10]")

    def linear_slopes(self) -> tuple[float, float] | None:
        return self.gamma_up, self.gamma_down

    def q_up(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return (1.0 - self.gamma_up * w / w_max).clamp_min(0.0)

    def q_down(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return (1.0 - self.gamma_down * w / w_min).clamp_min(0.0)


@register_device
@dataclass(frozen=True)
class PowerStep(Device):
    """Power response: q+ = (1 - w/w_max)^gamma, q- = (1 - w/w_min)^gamma (gamma=1: soft bounds)."""

    gamma: float = 1.0
    needs_zero_inside = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gamma > 0:
            raise ValueError(f"gamma: got {self.gamma}, must be > 0")

    def q_up(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return (1.0 - w / w_max).clamp_min(0.0).pow(self.gamma)

    def q_down(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return (1.0 - w / w_min).clamp_min(0.0).pow(self.gamma)


@register_device
@dataclass(frozen=True)
class ExpStep(Device):
    """Exponential response: q+ = (exp(g(1 - w/w_max)) - 1)/(exp(g) - 1), q- likewise with w_min."""

    gamma: float = 1.0
    needs_zero_inside = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gamma > 0:
            raise ValueError(f"gamma: got {self.gamma}, must be > 0")

    def _q(self, r: Tensor) -> Tensor:
        return torch.expm1(self.gamma * r.clamp_min(0.0)) / math.expm1(self.gamma)

    def q_up(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return self._q(1.0 - w / w_max)

    def q_down(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return self._q(1.0 - w / w_min)


@register_device
@dataclass(frozen=True)
class AsymmetricLinear(Device):
    """q+ = (1 + c)(1 - w/w_max), q- = (1 - c)(1 - w/w_min): symmetric point at c*tau."""

    c: float = 0.1
    needs_zero_inside = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not -1.0 < self.c < 1.0:
            raise ValueError(f"c: got {self.c}, must be in (-1, 1)")

    def q_up(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return (1.0 + self.c) * (1.0 - w / w_max).clamp_min(0.0)

    def q_down(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return (1.0 - self.c) * (1.0 - w / w_min).clamp_min(0.0)


@register_device
@dataclass(frozen=True)
class Piecewise(Device):
    """Measured response: q+ and q- given at equally spaced nodes from w_min to w_max, linearly
    interpolated (e.g. from a device's pulse-response curve normalized to its step at w=0)."""

    piecewise_up: tuple[float, ...] = (1.2, 1.1, 1.0, 0.8, 0.5)
    piecewise_down: tuple[float, ...] = (0.5, 0.8, 1.0, 1.1, 1.2)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("piecewise_up", "piecewise_down"):
            nodes = getattr(self, name)
            if isinstance(nodes, (str, bytes)) or not hasattr(nodes, "__len__"):
                raise ValueError(f"{name}: got {nodes!r}, must be a list of >= 2 numbers")
            nodes = tuple(check_number(f"{name}[{i}]", v, finite=False) for i, v in enumerate(nodes))
            if len(nodes) < 2:
                raise ValueError(f"{name}: got {len(nodes)} nodes, must have >= 2")
            if any(v < 0 for v in nodes):
                raise ValueError(f"{name}: got {nodes}, all nodes must be >= 0")
            object.__setattr__(self, name, nodes)

    @staticmethod
    def _interp(nodes: tuple[float, ...], w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        table = torch.tensor(nodes, dtype=w.dtype, device=w.device)
        n = len(nodes) - 1
        t = ((w - w_min) / (w_max - w_min) * n).clamp(0.0, float(n))
        i0 = t.floor().clamp(max=n - 1)
        frac = t - i0
        i0 = i0.long()
        return table[i0] * (1.0 - frac) + table[i0 + 1] * frac

    def q_up(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return self._interp(self.piecewise_up, w, w_min, w_max)

    def q_down(self, w: Tensor, w_min: Tensor, w_max: Tensor) -> Tensor:
        return self._interp(self.piecewise_down, w, w_min, w_max)


# ---------------------------------------------------------------- presets of published devices
@register_device
@dataclass(frozen=True)
class ReRAMSoftBounds(SoftBounds):
    """HfO2 ReRAM as soft bounds, after aihwkit's ReRamSBPresetDevice, a loose fit to Gong et al.,
    "Signal and noise extraction from analog memory elements for neuromorphic computing",
    Nat. Commun. 9, 2102 (2018): asymmetric bounds, few states, very large cycle-to-cycle noise.
    The symmetric point is assumed calibrated to 0 (a reference device subtracted); aihwkit's
    additional write noise is not modelled."""

    dw_min: float = 0.002
    w_max: float = 1.25
    w_min: float = -0.75
    up_down: float = 0.0
    dw_min_dtod: float = 0.3
    dw_min_std: float = 3.75
    w_max_dtod: float = 0.3 / 1.25
    w_min_dtod: float = 0.3 / 0.75
    up_down_dtod: float = 0.01


@register_device
@dataclass(frozen=True)
class ECRAM(LinearStep):
    """Li-ion electro-chemical RAM: small, nearly linear steps with unequal up/down slopes, after
    aihwkit's EcRamPresetDevice, a fit to Tang et al., "ECRAM as scalable synaptic cell for
    high-speed, low-power neuromorphic computing", IEDM 2018 (range shifted so that the symmetric
    point is near 0)."""

    dw_min: float = 0.002
    w_max: float = 1.1724
    w_min: float = -0.8276
    up_down: float = 0.0
    gamma_up: float = 0.1153
    gamma_down: float = 0.5085
    dw_min_dtod: float = 0.1
    dw_min_std: float = 0.3
    w_max_dtod: float = 0.05
    w_min_dtod: float = 0.05
    up_down_dtod: float = 0.01


@register_device
@dataclass(frozen=True)
class Capacitor(LinearStep):
    """Capacitor-based cell (charge on a capacitor, CMOS read-out): near-perfect symmetry and
    linearity, after aihwkit's CapacitorPresetDevice, a fit to Li et al., "Capacitor-based
    cross-point array for analog neural network with record symmetry and linearity", VLSI 2018
    (its charge leakage is not modelled)."""

    dw_min: float = 0.005
    w_max: float = 1.0
    w_min: float = -1.0
    up_down: float = 0.0
    gamma_up: float = 0.05
    gamma_down: float = 0.05
    dw_min_dtod: float = 0.1
    dw_min_std: float = 0.3
    w_max_dtod: float = 0.07
    w_min_dtod: float = 0.07
    up_down_dtod: float = 0.06


def _build_device(cls: type[Device], kwargs: dict[str, Any]) -> Device:
    for key in ("piecewise_up", "piecewise_down"):
        if key in kwargs and isinstance(kwargs[key], list):
            kwargs[key] = tuple(kwargs[key])
    return cls(**kwargs)


def device_from_dict(data: Mapping[str, Any] | Device, prefix: str = "") -> Device:
    """``{"type": "SoftBounds", "dw_min": 0.001, ...}`` -> device; errors name the field."""
    if isinstance(data, Device):
        return data
    return from_type_table(data, DEVICES, "device", prefix, _build_device)
