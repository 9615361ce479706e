"""Settings of the robustness study (``analog-edge study robustness``): a validated frozen dataclass.

``full()`` is the study of the issue (5 chip seeds, eta 0..1, five times after programming);
``quick()`` the reduced run the test uses (< 2 minutes on 2 cores); a TOML table or CLI flags
override either.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

MODEL_NAMES = ("digits-mlp", "mnist-mlp", "mnist-cnn", "fleet-conv")
TRAININGS = ("digital", "hwa")
NOISE_KINDS = ("input", "output", "weight")
DAY = 86400.0
TIMES = (1.0, 3600.0, DAY, 30 * DAY, 365 * DAY)


def _ints(name: str, values: Any, low: int) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name}: got {values!r}, must be a non-empty list of integers >= {low}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name}: got {v!r} in the list, must be integers >= {low}")
    return tuple(values)


def _floats(name: str, values: Any, low: float, high: float = math.inf) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name}: got {values!r}, must be a non-empty list of numbers in [{low}, {high}]")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and low <= v <= high):
            raise ValueError(f"{name}: got {v!r} in the list, must be finite numbers in [{low}, {high}]")
    return tuple(float(v) for v in values)


def _int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: got {value!r}, must be an integer >= {low}")


def _pos(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: got {value!r}, must be a finite number > 0")


@dataclass(frozen=True)
class RobustnessConfig:
    """models: which of MODEL_NAMES; train_seed: weights init, data order, HWA noise; epochs /
    digits_epochs: training length (Adam, lr, batch_size); hwa_eta / hwa_relative / clip_sigma: the
    HWA training noise (weight noise at every forward, the reference periphery, clipping at k std);
    etas + eta_seeds: the weight-noise sweep (one chip per seed); times + time_seeds: seconds after
    programming under PCMLike, with and without global drift compensation; noise_strengths: the
    input-only / output-only / weight-only comparison (each std = strength * std of its tensor);
    n_train: cap on training samples per dataset (None: all)."""

    models: tuple[str, ...] = MODEL_NAMES
    train_seed: int = 0
    epochs: int = 8
    digits_epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    hwa_eta: float = 0.1
    hwa_relative: bool = False
    clip_sigma: float = 2.5
    etas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    eta_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    times: tuple[float, ...] = TIMES
    time_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    noise_strengths: tuple[float, ...] = (0.1, 0.3)
    n_train: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.models, (list, tuple)) or not self.models:
            raise ValueError(f"models: got {self.models!r}, must list some of {', '.join(MODEL_NAMES)}")
        for m in self.models:
            if m not in MODEL_NAMES:
                raise ValueError(f"models: got {m!r}, must be one of {', '.join(MODEL_NAMES)}")
        object.__setattr__(self, "models", tuple(self.models))
        for name, low in (("train_seed", 0), ("epochs", 1), ("digits_epochs", 1), ("batch_size", 1)):
            _int(name, getattr(self, name), low)
        for name in ("lr", "clip_sigma"):
            _pos(name, getattr(self, name))
        if isinstance(self.hwa_eta, bool) or not isinstance(self.hwa_eta, (int, float)) or not 0 <= self.hwa_eta <= 2:
            raise ValueError(f"hwa_eta: got {self.hwa_eta!r}, must be a number in [0, 2]")
        if not isinstance(self.hwa_relative, bool):
            raise ValueError(f"hwa_relative: got {self.hwa_relative!r}, must be true or false")
        object.__setattr__(self, "etas", _floats("etas", self.etas, 0.0, 5.0))
        object.__setattr__(self, "times", _floats("times", self.times, 0.0, 1e10))
        object.__setattr__(self, "noise_strengths", _floats("noise_strengths", self.noise_strengths, 0.0, 5.0))
        object.__setattr__(self, "eta_seeds", _ints("eta_seeds", self.eta_seeds, 0))
        object.__setattr__(self, "time_seeds", _ints("time_seeds", self.time_seeds, 0))
        if self.n_train is not None:
            _int("n_train", self.n_train, 10)

    @classmethod
    def full(cls) -> "RobustnessConfig":
        return cls()

    @classmethod
    def quick(cls) -> "RobustnessConfig":
        """The reduced study the test runs: fewer epochs, samples, etas and chips."""
        return cls(epochs=2, digits_epochs=12, etas=(0.0, 0.1, 0.3, 0.6, 1.0), eta_seeds=(0, 1, 2),
                   times=(1.0, 3600.0, DAY, 365 * DAY), time_seeds=(0, 1), noise_strengths=(0.3,), n_train=2000)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}
        if out["n_train"] is None:
            out["n_train"] = "all"
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: "RobustnessConfig | None" = None) -> "RobustnessConfig":
        """Override ``base`` (default: full) with a TOML-shaped table; unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise ValueError(f"robustness: got {type(data).__name__}, must be a table")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key for the robustness study; allowed: {', '.join(sorted(allowed))}")
        data = dict(data)
        if data.get("n_train") == "all":
            data["n_train"] = None
        return dataclasses.replace(base or cls.full(), **data)
