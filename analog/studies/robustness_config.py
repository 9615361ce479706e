"""Settings of the robustness study (``analog-edge study robustness``): a validated frozen dataclass.

``full()`` is the study of the issue (5 chip seeds, eta 0..1, five times after programming);
``quick()`` the reduced run the test uses (< 2 minutes on 2 cores); a TOML table or CLI flags
override either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from analog.studies.settings import check_subset, float_list, int_list, overlay, plain
from analog.validation import check_bool, check_int, check_number

MODEL_NAMES = ("digits-mlp", "mnist-mlp", "mnist-cnn", "fleet-conv")
TRAININGS = ("digital", "hwa")
NOISE_KINDS = ("input", "output", "weight")
DAY = 86400.0
TIMES = (1.0, 3600.0, DAY, 30 * DAY, 365 * DAY)


@dataclass(frozen=True)
class RobustnessConfig:
    """models: which of MODEL_NAMES; train_seed: weights init, data order, HWA noise; epochs /
    digits_epochs: training length (Adam, lr, batch_size); hwa_eta / hwa_relative / clip_sigma: the
    HWA training noise (weight noise at every forward, the reference periphery, clipping at k std;
    0.5 by default: HWA is trained at or above the noise it is meant to survive, Rasch et al. 2023,
    and at eta = 0.1 a digitally trained model loses almost nothing, docs/design.md §2.7);
    etas + eta_seeds: the weight-noise sweep (one chip per seed); times + time_seeds: seconds after
    programming under PCMLike, with and without global drift compensation; noise_strengths: the
    input-only / output-only / weight-only comparison (each std = strength * std of its tensor);
    n_train: cap on training samples per dataset (None: all). A ``StudySettings``
    (analog.studies.settings); a --config file holds it in a [robustness] table."""

    TOML_TABLE: ClassVar[str | None] = "robustness"
    models: tuple[str, ...] = MODEL_NAMES
    train_seed: int = 0
    epochs: int = 8
    digits_epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    hwa_eta: float = 0.5
    hwa_relative: bool = False
    clip_sigma: float = 2.5
    etas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    eta_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    times: tuple[float, ...] = TIMES
    time_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    noise_strengths: tuple[float, ...] = (0.1, 0.3)
    n_train: int | None = None

    def __post_init__(self) -> None:
        check_subset("models", self.models, MODEL_NAMES)
        object.__setattr__(self, "models", tuple(self.models))
        for name, low in (("train_seed", 0), ("epochs", 1), ("digits_epochs", 1), ("batch_size", 1)):
            check_int(name, getattr(self, name), low)
        for name in ("lr", "clip_sigma"):
            check_number(name, getattr(self, name), 0, lo_open=True)
        check_number("hwa_eta", self.hwa_eta, 0, 2, finite=False)
        check_bool("hwa_relative", self.hwa_relative)
        object.__setattr__(self, "etas", float_list("etas", self.etas, 0.0, 5.0))
        object.__setattr__(self, "times", float_list("times", self.times, 0.0, 1e10))
        object.__setattr__(self, "noise_strengths", float_list("noise_strengths", self.noise_strengths, 0.0, 5.0))
        object.__setattr__(self, "eta_seeds", int_list("eta_seeds", self.eta_seeds, 0))
        object.__setattr__(self, "time_seeds", int_list("time_seeds", self.time_seeds, 0))
        if self.n_train is not None:
            check_int("n_train", self.n_train, 10)

    @classmethod
    def full(cls) -> "RobustnessConfig":
        return cls()

    @classmethod
    def quick(cls) -> "RobustnessConfig":
        """The reduced study the test runs: fewer epochs, etas, times and chips. The mnist5k models
        still get 4 epochs on all 4,000 images: HWA training converges more slowly under its noise,
        and after 2 epochs on 2,000 images the HWA-trained CNN had not caught up with the digital one
        and lost to it at every eta."""
        return cls(epochs=4, digits_epochs=12, etas=(0.0, 0.1, 0.3, 0.6, 1.0), eta_seeds=(0, 1, 2),
                   times=(1.0, DAY, 365 * DAY), time_seeds=(0, 1), noise_strengths=(0.3,), n_train=None)

    def to_dict(self) -> dict[str, Any]:
        out = plain(self)
        if out["n_train"] is None:
            out["n_train"] = "all"
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: "RobustnessConfig | None" = None) -> "RobustnessConfig":
        """Override ``base`` (default: full) with a TOML-shaped table; unknown keys are errors."""
        if isinstance(data, Mapping) and data.get("n_train") == "all":
            data = {**data, "n_train": None}
        return overlay(base or cls.full(), data, "the robustness study")
