"""The robustness study: how much accuracy a trained model keeps on a noisy, drifting inference chip.

After Fagbohungbe & Qian (accuracy vs additive Gaussian weight noise per architecture), Le Gallo et
al. 2023 (PCM programming noise, drift and drift compensation) and Rasch et al. 2023 (hardware-aware
training; noise on inputs/outputs vs on weights). Each model is trained twice with the same seed,
data order and optimizer (Adam): digitally and hardware-aware (analog.inference.hardware_aware:
weight noise at every forward, the reference periphery, clipping at k std), then deployed with
``analog.deploy`` onto

1. ``WeightNoise(eta)`` chips, eta in 0..1, ideal periphery (pure weight noise), one chip per seed;
2. ``PCMLike`` chips with the reference periphery (7-bit DAC, 9-bit ADC, out_noise 0.06), read at
   1 s .. 1 year after programming, with and without global drift compensation;
3. input-only, output-only and weight-only Gaussian noise, each with std = strength * std of its
   tensor per layer (so the three perturb their tensor by the same relative amount).

``run_study`` returns the results dict the CLI writes to results.json; models beyond the built-in
ones (the fleet's encoder + classifier) are passed in as ``ModelSpec``s by the caller.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import analog
from analog import inference
from analog.studies.data import Split, load_mnist_5k
from analog.studies.mlp import accuracy, make_mlp, train
from analog.studies.report import mean_std
from analog.studies.robustness_config import NOISE_KINDS, TRAININGS, RobustnessConfig

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ModelSpec:
    """A model of the study: its name, dataset ("digits" or "mnist5k", flattened pixels in [0, 1]),
    a builder ``build(seed) -> nn.Module`` and a one-line description for the tables."""

    name: str
    dataset: str
    build: Callable[[int], nn.Module]
    description: str


def _seeded(build: Callable[[], nn.Module]) -> Callable[[int], nn.Module]:
    def make(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build()
    return make


def small_cnn() -> nn.Sequential:
    """28x28 -> two stride-2 3x3 convolutions (8, 16 channels) -> linear classifier."""
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


BUILTIN_MODELS: dict[str, ModelSpec] = {
    "digits-mlp": ModelSpec("digits-mlp", "digits", _seeded(lambda: make_mlp((64, 64, 10), "relu")),
                            "MLP 64-64-10 on sklearn digits"),
    "mnist-mlp": ModelSpec("mnist-mlp", "mnist5k", _seeded(lambda: make_mlp((784, 256, 128, 10), "relu")),
                           "MLP 784-256-128-10 on mnist5k"),
    "mnist-cnn": ModelSpec("mnist-cnn", "mnist5k", _seeded(small_cnn), "CNN conv8-conv16-linear on mnist5k"),
}


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """sklearn's 1,797 8x8 digits (ships offline), pixels / 16, stratified seeded split."""
    from sklearn.datasets import load_digits  # on use (start-up time): only the digits model needs sklearn

    d = load_digits()
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(d.target):
        idx = rng.permutation(np.flatnonzero(d.target == c))
        k = int(round(test_fraction * len(idx)))
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    tr, te = rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))
    x = torch.from_numpy((d.data / 16.0).astype(np.float32))
    y = torch.from_numpy(d.target.astype(np.int64))
    return Split(x[tr], y[tr], x[te], y[te])


def load_dataset(name: str, seed: int, n_train: int | None) -> Split:
    split = load_digits_split(seed) if name == "digits" else load_mnist_5k(seed=seed)
    if n_train is not None and n_train < len(split.y_train):
        split = Split(split.x_train[:n_train], split.y_train[:n_train], split.x_test, split.y_test)
    return split


def hwa_config(cfg: RobustnessConfig) -> inference.HWAConfig:
    return inference.HWAConfig(weight_noise=inference.WeightNoise(cfg.hwa_eta, cfg.hwa_relative),
                               forward=analog.IOConfig(), clip_sigma=cfg.clip_sigma, seed=cfg.train_seed)


def train_pair(spec: ModelSpec, split: Split, cfg: RobustnessConfig, progress: Progress | None) -> dict[str, Any]:
    """The digital and the HWA model of a spec, trained alike; returns {training: (model, acc, s)}."""
    epochs = cfg.digits_epochs if spec.dataset == "digits" else cfg.epochs
    out: dict[str, Any] = {}
    for training in TRAININGS:
        model = spec.build(cfg.train_seed)
        if training == "hwa":
            model = inference.hardware_aware(model, hwa_config(cfg))
        start = time.perf_counter()
        curve = train(model, torch.optim.Adam(model.parameters(), lr=cfg.lr), split, epochs, cfg.batch_size,
                      cfg.train_seed, progress=progress)
        out[training] = (model, curve.final_accuracy, time.perf_counter() - start)
    return out


def _noise_hooks(model: nn.Module, kind: str, strength: float, seed: int) -> None:
    """Add Gaussian noise of std strength * std(tensor) to every analog layer's input or output."""
    g = torch.Generator().manual_seed(seed)

    def noisy(t: torch.Tensor) -> torch.Tensor:
        return t + strength * t.std() * torch.randn(t.shape, generator=g).to(t)

    for mod in model.modules():
        if isinstance(mod, (analog.AnalogLinear, analog.AnalogConv2d)):
            if kind == "input":
                mod.register_forward_pre_hook(lambda _m, args: (noisy(args[0]),) + tuple(args[1:]))
            else:
                mod.register_forward_hook(lambda _m, _args, y: noisy(y))


def eta_sweep(model: nn.Module, split: Split, cfg: RobustnessConfig, progress: Progress | None) -> dict[str, Any]:
    runs = []
    for eta in cfg.etas:
        row = []
        for seed in cfg.eta_seeds:
            chip = analog.deploy(model, inference.WeightNoise(eta), 0.0, compensation=False, seed=seed,
                                 forward=analog.IOConfig.ideal())
            row.append(accuracy(chip, split.x_test, split.y_test))
            _tick(progress)
        runs.append(row)
    return _summary("eta", list(cfg.etas), runs)


def time_sweep(model: nn.Module, split: Split, cfg: RobustnessConfig, progress: Progress | None) -> dict[str, Any]:
    runs: dict[str, list[list[float]]] = {"compensated": [[] for _ in cfg.times], "uncompensated": [[] for _ in cfg.times]}
    for seed in cfg.time_seeds:
        chip = inference.program(model, inference.PCMLike(), seed=seed, forward=analog.IOConfig())
        for i, t in enumerate(cfg.times):
            for key, comp in (("compensated", True), ("uncompensated", False)):
                runs[key][i].append(accuracy(chip.at(t, comp), split.x_test, split.y_test))
                _tick(progress)
    return {key: _summary("t_seconds", list(cfg.times), rows) for key, rows in runs.items()}


def noise_kinds(model: nn.Module, split: Split, cfg: RobustnessConfig, progress: Progress | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in NOISE_KINDS:
        runs = []
        for strength in cfg.noise_strengths:
            row = []
            for seed in cfg.eta_seeds:
                eta = strength if kind == "weight" else 0.0
                chip = analog.deploy(model, inference.WeightNoise(eta), 0.0, compensation=False, seed=seed,
                                     forward=analog.IOConfig.ideal())
                if kind != "weight":
                    _noise_hooks(chip, kind, strength, seed)
                row.append(accuracy(chip, split.x_test, split.y_test))
                _tick(progress)
            runs.append(row)
        out[kind] = _summary("strength", list(cfg.noise_strengths), runs)
    return out


def _summary(axis: str, xs: list[float], runs: list[list[float]]) -> dict[str, Any]:
    stats = [mean_std(r) for r in runs]
    return {axis: xs, "mean": [m for m, _ in stats], "std": [s for _, s in stats], "runs": runs}


def _tick(progress: Progress | None) -> None:
    if progress is not None:
        progress(1)


def evaluations(cfg: RobustnessConfig) -> int:
    """How many deployed evaluations one trained model costs (for the progress bar)."""
    return (len(cfg.etas) * len(cfg.eta_seeds) + 2 * len(cfg.times) * len(cfg.time_seeds)
            + len(NOISE_KINDS) * len(cfg.noise_strengths) * len(cfg.eta_seeds))


def run_study(cfg: RobustnessConfig, extra_models: Iterable[ModelSpec] = (), show_progress: bool = True) -> dict[str, Any]:
    """Train, deploy and evaluate every model of ``cfg.models`` (built-in or in ``extra_models``)."""
    specs = dict(BUILTIN_MODELS)
    specs.update({s.name: s for s in extra_models})
    missing = [m for m in cfg.models if m not in specs]
    if missing:
        raise ValueError(f"models: {missing[0]!r} has no builder here (the fleet models come from the CLI)")
    splits: dict[str, Split] = {}
    results: dict[str, Any] = {"config": cfg.to_dict(), "models": {}}
    start = time.perf_counter()
    with tqdm(total=len(cfg.models) * len(TRAININGS) * evaluations(cfg), desc="robustness", unit="eval",
              disable=not show_progress) as bar:
        for name in cfg.models:
            spec = specs[name]
            if spec.dataset not in splits:
                splits[spec.dataset] = load_dataset(spec.dataset, cfg.train_seed, cfg.n_train)
            split = splits[spec.dataset]
            bar.set_postfix_str(f"{name}: training")
            trained = train_pair(spec, split, cfg, None)
            entry: dict[str, Any] = {"description": spec.description, "dataset": spec.dataset,
                                     "n_train": len(split.y_train), "n_test": len(split.y_test)}
            for training, (model, acc, seconds) in trained.items():
                bar.set_postfix_str(f"{name}: {training}")
                entry[training] = {"test_accuracy": acc, "train_seconds": seconds,
                                   "eta": eta_sweep(model, split, cfg, bar.update),
                                   "time": time_sweep(model, split, cfg, bar.update),
                                   "noise_kind": noise_kinds(model, split, cfg, bar.update)}
            results["models"][name] = entry
    results["seconds"] = time.perf_counter() - start
    return results
