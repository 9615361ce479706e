"""The response-function study (after Wu et al. 2025 and Gupta et al. 2015), three parts:

1. least squares on one tile, per device (soft bounds, power, asymmetric linear) and algorithm:
   final relative distance ``||W - W*|| / ||W*||`` -- Analog SGD stalls at a biased point, Tiki-Taka
   with zero-shift reaches digital-level error, Tiki-Taka without it fails when the symmetric point
   is off zero;
2. the MNIST FCN with power-response devices (gamma_res sweep): test accuracy per algorithm;
3. the same MLP trained digitally in 16-bit fixed point, stochastic vs nearest rounding vs float32.

Everything is seeded; ``run_study`` returns the results dict that the CLI writes to results.json.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

import analog
from analog import algorithms, devices
from analog.studies.config import (FixedPointSettings, LeastSquaresSettings, MnistSettings, StudyConfig,
                                   parse_device_spec)
from analog.studies.data import LeastSquaresProblem, Split, load_mnist_5k, make_least_squares
from analog.studies.fixed_point import FixedPointSpec, train_fixed_point
from analog.studies.mlp import make_mlp, train
from analog.studies.report import mean_std

ALGO_LABELS = {"digital": "digital SGD", "analog-sgd": "Analog SGD", "tiki-taka": "Tiki-Taka (ZS)",
               "tiki-taka-no-zs": "Tiki-Taka (no ZS)", "ttv2": "TTv2 (ZS)", "rlv2": "RLv2 (ZS)"}

Progress = Callable[[int], None]


# ---------------------------------------------------------------------------------------- builders
def make_device(spec: str, tau: float, dw_min: float, variation: float) -> Any:
    """'softbounds' / 'power:g' / 'asym:c' with bounds +-tau; ``variation`` sets every d2d/c2c spread."""
    kind, arg = parse_device_spec(spec)
    common = dict(dw_min=dw_min, w_max=tau, w_min=-tau, dw_min_dtod=variation, dw_min_std=variation,
                  w_max_dtod=variation, w_min_dtod=variation, up_down_dtod=0.01 * variation)
    if kind == "softbounds":
        return devices.SoftBounds(**common)
    if kind == "power":
        return devices.PowerStep(gamma=arg, **common)
    return devices.AsymmetricLinear(c=arg, **common)


def make_algorithm(name: str, s: LeastSquaresSettings | MnistSettings) -> Any:
    """Study algorithm name -> analog.algorithms instance (None for the digital baseline)."""
    cols = s.columns_per_transfer
    tt = dict(gamma=s.gamma, transfer_every=s.transfer_every, columns_per_transfer=cols)
    if name == "digital":
        return None
    if name == "analog-sgd":
        return algorithms.AnalogSGD()
    if name == "tiki-taka":
        return algorithms.TikiTaka(transfer_lr=s.transfer_lr, reference="zero-shift", **tt)
    if name == "tiki-taka-no-zs":
        return algorithms.TikiTaka(transfer_lr=s.transfer_lr, reference="none", **tt)
    if name == "ttv2":
        return algorithms.TTv2(transfer_lr=s.transfer_lr, reference="zero-shift", max_pulses=s.max_pulses, **tt)
    if name == "rlv2":
        # H <- (1-beta) H + beta * lr_T * P: with lr_T = transfer_lr / beta a large residual fires pulses
        # at TTv2's rate, while H (a low-pass estimate of lr_T * P) filters the read noise
        return algorithms.RLv2(transfer_lr=s.transfer_lr / s.rl_beta, buffer_decay=s.rl_beta,
                               max_pulses=s.max_pulses, **tt)
    raise ValueError(f"algorithms: got {name!r}, must be one of {', '.join(ALGO_LABELS)}")


def tile_config(device: Any, algorithm: Any, io: str, seed: int) -> Any:
    periphery = analog.IOConfig.ideal() if io == "ideal" else analog.IOConfig()
    return analog.TileConfig(device=device, algorithm=algorithm, forward=periphery, backward=periphery,
                             seed=seed)


# ---------------------------------------------------------------------------------- least squares
def run_least_squares_one(problem: LeastSquaresProblem, s: LeastSquaresSettings, device_spec: str,
                          algorithm: str, seed: int, progress: Progress | None = None) -> dict[str, Any]:
    """Train one tile (or nn.Linear for 'digital') from W = 0; log the relative error to W*."""
    torch.manual_seed(seed)
    if algorithm == "digital":
        layer: nn.Module = nn.Linear(s.in_features, s.out_features, bias=False)
        nn.init.zeros_(layer.weight)
        opt: torch.optim.Optimizer = torch.optim.SGD(layer.parameters(), lr=s.lr)
        read = lambda: layer.weight.detach()  # noqa: E731
    else:
        dev = make_device(device_spec, s.tau, s.dw_min, s.variation)
        cfg = tile_config(dev, make_algorithm(algorithm, s), "ideal", seed)
        layer = analog.AnalogLinear(s.in_features, s.out_features, bias=False, config=cfg)
        layer.set_weights(torch.zeros(s.out_features, s.in_features))
        opt = analog.AnalogOptimizer(layer.parameters(), lr=s.lr)
        read = layer.get_weights
    g = torch.Generator().manual_seed(10_000 + seed)
    every = max(1, s.steps // s.log_points)
    steps_logged, errors = [0], [problem.error(read())]
    for step in range(1, s.steps + 1):
        idx = torch.randint(0, len(problem.y), (s.batch_size,), generator=g)
        opt.zero_grad()
        r = layer(problem.x[idx]) - problem.y[idx]
        (0.5 * (r * r).sum(dim=1).mean()).backward()
        opt.step()
        if step % every == 0 or step == s.steps:
            steps_logged.append(step)
            errors.append(problem.error(read()))
            if progress:
                progress(step - (steps_logged[-2] if len(steps_logged) > 1 else 0))
    half = min(range(len(steps_logged)), key=lambda i: abs(steps_logged[i] - s.steps // 2))
    return {"device": device_spec, "algorithm": algorithm, "seed": seed, "steps": steps_logged,
            "error": errors, "final_error": errors[-1], "half_error": errors[half],
            "final_loss": problem.loss(read())}


def run_least_squares(s: LeastSquaresSettings, seeds: tuple[int, ...], progress: Progress | None = None
                      ) -> dict[str, Any]:
    runs = []
    for seed in seeds:
        problem = make_least_squares(s.out_features, s.in_features, s.n_samples, s.w_scale * s.tau, s.noise, seed)
        for spec in s.devices:
            for algo in s.algorithms:
                if algo == "digital" and spec != s.devices[0]:
                    continue  # the digital baseline does not depend on the device
                runs.append(run_least_squares_one(problem, s, spec, algo, seed, progress))
    summary = []
    for spec in s.devices:
        for algo in s.algorithms:
            sel = [r for r in runs if r["algorithm"] == algo and (algo == "digital" or r["device"] == spec)]
            m, sd = mean_std([r["final_error"] for r in sel])
            hm, _ = mean_std([r["half_error"] for r in sel])
            summary.append({"device": spec, "algorithm": algo, "final_error_mean": m, "final_error_std": sd,
                            "half_error_mean": hm, "n": len(sel)})
    return {"runs": runs, "summary": summary}


def ls_total_units(s: LeastSquaresSettings, seeds: tuple[int, ...]) -> int:
    n_analog = sum(1 for a in s.algorithms if a != "digital") * len(s.devices)
    n_digital = 1 if "digital" in s.algorithms else 0
    return len(seeds) * (n_analog + n_digital) * s.steps


# ------------------------------------------------------------------------------------------ MNIST
def run_mnist_one(split: Split, s: MnistSettings, gamma_res: float, algorithm: str, seed: int,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Train the FCN once: digital (nn.Linear + SGD) or converted to analog tiles with a power device."""
    torch.manual_seed(seed)
    model = make_mlp(tuple(s.sizes), s.activation)
    if algorithm == "digital":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=s.lr)
    else:
        dev = make_device(f"power:{gamma_res}", s.tau, s.dw_min, s.variation)
        model = analog.convert_to_analog(model, tile_config(dev, make_algorithm(algorithm, s), s.io, seed))
        opt = analog.AnalogOptimizer(model.parameters(), lr=s.lr)
    t0 = time.perf_counter()
    try:
        curve = train(model, opt, split, s.epochs, s.batch_size, seed, progress=progress)
        acc, losses, diverged = curve.test_accuracy, curve.train_loss, False
    except FloatingPointError:
        acc, losses, diverged = [float("nan")], [float("nan")], True
    return {"gamma_res": gamma_res, "algorithm": algorithm, "seed": seed, "test_accuracy": acc,
            "train_loss": losses, "final_accuracy": acc[-1], "diverged": diverged,
            "seconds": time.perf_counter() - t0}


def run_mnist(s: MnistSettings, seeds: tuple[int, ...], progress: Progress | None = None) -> dict[str, Any]:
    runs = []
    split = load_mnist_5k(s.n_train, s.n_test, seed=0)  # one fixed split; seeds vary init/noise/order
    for seed in seeds:
        for g in s.gamma_res:
            for algo in s.algorithms:
                if algo == "digital" and g != s.gamma_res[0]:
                    continue  # digital does not depend on gamma_res
                runs.append(run_mnist_one(split, s, g, algo, seed, progress))
    summary = []
    for g in s.gamma_res:
        for algo in s.algorithms:
            sel = [r for r in runs if r["algorithm"] == algo and (algo == "digital" or r["gamma_res"] == g)]
            accs = [r["final_accuracy"] for r in sel]
            m, sd = mean_std(accs)
            summary.append({"gamma_res": g, "algorithm": algo, "accuracy_mean": m, "accuracy_std": sd,
                            "n": len(sel)})
    return {"runs": runs, "summary": summary}


def mnist_total_units(s: MnistSettings, seeds: tuple[int, ...]) -> int:
    n_analog = sum(1 for a in s.algorithms if a != "digital") * len(s.gamma_res)
    n_digital = 1 if "digital" in s.algorithms else 0
    return len(seeds) * (n_analog + n_digital) * s.epochs * s.n_train


# ------------------------------------------------------------------------------------ fixed point
def run_fixed_point(s: FixedPointSettings, seeds: tuple[int, ...], progress: Progress | None = None
                    ) -> dict[str, Any]:
    split = load_mnist_5k(s.n_train, s.n_test, seed=0)
    specs = [FixedPointSpec(s.word_bits - fb, fb, mode) for fb in s.frac_bits for mode in s.modes]
    if s.float_baseline:
        specs.append(FixedPointSpec(mode=None))
    runs = []
    for seed in seeds:
        for spec in specs:
            curve = train_fixed_point(split, spec, sizes=(784, 256, 128, 10), activation=s.activation,
                                      epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=seed,
                                      progress=progress)
            runs.append({"label": spec.label, "int_bits": spec.int_bits if spec.mode else None,
                         "frac_bits": spec.frac_bits if spec.mode else None, "mode": spec.mode or "float32",
                         "seed": seed, "test_accuracy": curve.test_accuracy, "train_loss": curve.train_loss,
                         "final_accuracy": curve.final_accuracy})
    summary = []
    for spec in specs:
        sel = [r for r in runs if r["label"] == spec.label]
        m, sd = mean_std([r["final_accuracy"] for r in sel])
        summary.append({"label": spec.label, "frac_bits": sel[0]["frac_bits"], "mode": sel[0]["mode"],
                        "accuracy_mean": m, "accuracy_std": sd, "n": len(sel)})
    return {"runs": runs, "summary": summary}


def fixed_point_total_units(s: FixedPointSettings, seeds: tuple[int, ...]) -> int:
    n = len(s.frac_bits) * len(s.modes) + int(s.float_baseline)
    return len(seeds) * n * s.epochs * s.n_train


# ----------------------------------------------------------------------------------------- driver
def run_study(cfg: StudyConfig, show_progress: bool = True) -> dict[str, Any]:
    """Run the selected parts with tqdm progress; returns {config, least_squares, mnist, fixed_point, seconds}."""
    results: dict[str, Any] = {"config": cfg.to_dict(), "seconds": {}}
    plan = [("least_squares", run_least_squares, cfg.least_squares, ls_total_units, "least squares (steps)"),
            ("mnist", run_mnist, cfg.mnist, mnist_total_units, "MNIST FCN (samples)"),
            ("fixed_point", run_fixed_point, cfg.fixed_point, fixed_point_total_units, "fixed point (samples)")]
    for name, fn, settings, units, desc in plan:
        if name not in cfg.parts:
            continue
        t0 = time.perf_counter()
        with tqdm(total=units(settings, cfg.seeds), desc=desc, unit_scale=True, disable=not show_progress,
                  leave=True, dynamic_ncols=True) as bar:
            results[name] = fn(settings, cfg.seeds, bar.update)
        results["seconds"][name] = round(time.perf_counter() - t0, 2)
    return results
