"""The tile's periphery and update settings: IOConfig (one MVM direction: DAC -> crossbar -> ADC),
UpdateConfig (how an update becomes pulses) and MappingConfig (weights onto conductances).

A leaf module: it imports nothing else of `analog`, so the algorithms, the pulsed arrays and the
tile can all use these configs while `analog.config.TileConfig` composes them (with a device and an
algorithm) without an import cycle. Every config validates itself on construction (errors name the
field and the reason) and round-trips through TOML-shaped dicts (``to_dict`` / ``from_dict``).
TOML has no null, so "off" settings are written as the string ``"off"`` (bit resolutions) or
``inf`` (bounds).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from analog.validation import check_bool, check_choice, check_fields, check_int, check_number

NOISE_MANAGEMENT = ("abs_max", "constant", "none")
BOUND_MANAGEMENT = ("iterative", "none")
ROUNDING = ("nearest", "stochastic")
PULSE_TYPES = ("stochastic", "mean", "none")
UPDATE_MODES = ("batched", "per_sample")
_OFF = ("off", "none")
_C = TypeVar("_C", bound="_FlatConfig")


def _bits(name: str, value: Any) -> int | None:
    """A resolution in bits, or None for 'off' (TOML has no null)."""
    if value is None or (isinstance(value, str) and value.lower() in _OFF):
        return None
    return check_int(name, value, 1, 32, note=" or 'off'")


def _plain(value: Any) -> Any:
    """TOML-safe value: None -> 'off', tuples -> lists."""
    if value is None:
        return "off"
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class _FlatConfig:
    """to_dict / from_dict of a config whose fields are all plain TOML values (no nested tables)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any], prefix: str = "") -> _C:
        check_fields(prefix.rstrip("."), data, cls)
        try:
            return cls(**dict(data))
        except ValueError as exc:
            raise ValueError(f"{prefix}{exc}") from None


@dataclass(frozen=True)
class IOConfig(_FlatConfig):
    """Periphery of one MVM direction (DAC -> crossbar -> ADC), docs/design.md §2.1.

    inp_res / out_res are bit counts (None = no quantization). A b-bit converter has 2**b - 1
    levels symmetric around zero, step = 2*bound / (2**b - 2) (7 bits -> step 1/63 of [-1, 1]).
    out_noise is added before the ADC, in units of the normalized output, so the residual seen after
    rescaling is out_noise * alpha. w_noise is output-referred read noise of the weights: each input
    vector sees fresh W + w_noise*N(0,1), i.e. output noise w_noise * ||x_scaled||_2 per output.
    """

    inp_res: int | None = 7
    out_res: int | None = 9
    inp_bound: float = 1.0
    out_bound: float = 12.0
    out_noise: float = 0.06
    w_noise: float = 0.0
    inp_rounding: str = "nearest"
    out_rounding: str = "nearest"
    noise_management: str = "abs_max"
    nm_constant: float = 1.0
    bound_management: str = "iterative"
    bm_max_iter: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "inp_res", _bits("inp_res", self.inp_res))
        object.__setattr__(self, "out_res", _bits("out_res", self.out_res))
        object.__setattr__(self, "inp_bound", check_number("inp_bound", self.inp_bound, 0, lo_open=True, finite=False))
        object.__setattr__(self, "out_bound", check_number("out_bound", self.out_bound, 0, lo_open=True, finite=False))
        object.__setattr__(self, "out_noise", check_number("out_noise", self.out_noise, 0, finite=False))
        object.__setattr__(self, "w_noise", check_number("w_noise", self.w_noise, 0, finite=False))
        check_choice("inp_rounding", self.inp_rounding, ROUNDING, quote=True)
        check_choice("out_rounding", self.out_rounding, ROUNDING, quote=True)
        check_choice("noise_management", self.noise_management, NOISE_MANAGEMENT, quote=True)
        object.__setattr__(self, "nm_constant",
                           check_number("nm_constant", self.nm_constant, 0, lo_open=True, finite=False))
        check_choice("bound_management", self.bound_management, BOUND_MANAGEMENT, quote=True)
        check_int("bm_max_iter", self.bm_max_iter, 0)
        if self.out_res is not None and math.isinf(self.out_bound):
            raise ValueError("out_res: an ADC needs a finite out_bound; set out_res='off' or a finite out_bound")
        if self.inp_res is not None and math.isinf(self.inp_bound):
            raise ValueError("inp_res: a DAC needs a finite inp_bound; set inp_res='off' or a finite inp_bound")

    @classmethod
    def ideal(cls) -> "IOConfig":
        """Every non-ideality off: the MVM is the exact float matmul."""
        return cls(inp_res=None, out_res=None, inp_bound=math.inf, out_bound=math.inf, out_noise=0.0,
                   w_noise=0.0, noise_management="none", bound_management="none")

    @property
    def is_ideal(self) -> bool:
        return (self.inp_res is None and self.out_res is None and math.isinf(self.inp_bound)
                and math.isinf(self.out_bound) and self.out_noise == 0.0 and self.w_noise == 0.0)


@dataclass(frozen=True)
class UpdateConfig(_FlatConfig):
    """How the outer product -lr * d x^T becomes pulses (docs/design.md §2.2).

    pulse_type: "stochastic" (coincidences of Bernoulli pulse trains), "mean" (the expected number
    of pulses, deterministic and fractional, for debugging) or "none" (the float update dW applied
    through the device response, no pulse quantization).
    update_management: rebalance A, B so that A*max|x| = B*max|d|.
    bl_management: BL = min(ceil(lr*max|x|*max|d|/dw_min), desired_bl) per sample, else desired_bl.
    mode: "batched" counts the whole mini-batch's coincidences and reads q(w) once;
    "per_sample" applies each sample's pulses in turn (faithful, slower). Both have the same mean.
    """

    desired_bl: int = 31
    pulse_type: str = "stochastic"
    update_management: bool = True
    bl_management: bool = True
    mode: str = "batched"

    def __post_init__(self) -> None:
        check_int("desired_bl", self.desired_bl, 1, 10_000)
        check_choice("pulse_type", self.pulse_type, PULSE_TYPES, quote=True)
        check_choice("mode", self.mode, UPDATE_MODES, quote=True)
        for name in ("update_management", "bl_management"):
            check_bool(name, getattr(self, name))


@dataclass(frozen=True)
class MappingConfig(_FlatConfig):
    """Weight scaling: map each tile's weights onto the conductance range with a digital output scale
    (aihwkit's MappingParameter ``weight_scaling_omega`` / ``weight_scaling_columnwise``).

    Off by default (``weight_scaling_omega=None``): the weights are the conductances, as before.
    On: when the tile is programmed (layer init, set_weights, from_digital) it picks per output
    column j (``per_column=True``; per tile otherwise) a scale ``s_j = max_i |W_ji| / (omega * g)``
    and programs ``W / s`` onto the devices, so the largest weight sits at ``omega * g``, where
    g = min(w_max, -w_min) is the device's nominal bound (1.0 for the unbounded Ideal device).
    omega is a *fraction of the bound* (aihwkit's omega is an absolute weight value on a
    normalized range; here omega=1 puts max|W| on the nominal bound, where soft-bounds devices stop
    responding and device-to-device bound spread clips -- 0.5..0.8 leaves headroom to learn).
    The forward pass returns ``s * noisy_mvm(x, W_analog)`` (output noise and ADC steps shrink by s),
    backward computes ``W_analog^T (s * d)``, and the pulsed update gets ``d / s`` (see AnalogTile).
    The scales stay fixed while training; ``remap_every`` = k re-derives them from the effective
    weights every k optimizer steps and re-programs the tile (a full re-programming on hardware).
    """

    weight_scaling_omega: float | None = None
    per_column: bool = True
    remap_every: int | None = None

    def __post_init__(self) -> None:
        omega = self.weight_scaling_omega
        if isinstance(omega, str) and omega.lower() in _OFF:
            omega = None
        if omega is not None:
            omega = check_number("weight_scaling_omega", omega, 0, 1, lo_open=True,
                                 note=" (a fraction of the device bound) or 'off'")
        object.__setattr__(self, "weight_scaling_omega", omega)
        check_bool("per_column", self.per_column)
        remap = self.remap_every
        if isinstance(remap, str) and remap.lower() in _OFF:
            remap = None
        if remap is not None:
            check_int("remap_every", remap, 1, note=" or 'off'")
        if remap is not None and omega is None:
            raise ValueError(f"remap_every: got {remap}, needs weight_scaling_omega set (mapping is off)")
        object.__setattr__(self, "remap_every", remap)

    @property
    def enabled(self) -> bool:
        return self.weight_scaling_omega is not None
