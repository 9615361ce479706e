"""``analog-edge study response-functions | robustness``: run a study of analog.studies, print its
tables, write config.json, results.json, table.txt and its PNGs. Every study runs through one path
(``_run``); what differs is named in a ``Study``. Lives in fleet/ (not analog/) because the robustness
study includes the fleet's own model, and so that `analog-edge --help` need not import torch."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.validation import ConfigError, check_int


@dataclass(frozen=True)
class Study:
    """One study as the command runs it: its settings class (an analog.studies.settings.StudySettings),
    ``run(cfg, show_progress) -> results``, and its report (``checks``, ``tables``, ``plots``)."""

    settings: Any
    run: Callable[[Any, bool], dict[str, Any]]
    checks: Callable[[dict[str, Any]], list[dict[str, Any]]]
    tables: Callable[[dict[str, Any]], str]
    plots: Callable[[dict[str, Any], Path], list[Path]]


# the study modules are imported on use: they import torch, which `analog-edge --help` must not pay for
def _response_functions() -> Study:
    from analog.studies import response_functions, summarize
    from analog.studies.config import StudyConfig

    return Study(StudyConfig, lambda cfg, progress: response_functions.run_study(cfg, show_progress=progress),
                 summarize.checks, summarize.tables, summarize.plots)


def _robustness() -> Study:
    from analog.studies import robustness, robustness_report
    from analog.studies.robustness_config import RobustnessConfig
    from fleet.experiments import fleet_model_spec
    return Study(RobustnessConfig,
                 lambda cfg, progress: robustness.run_study(cfg, extra_models=[fleet_model_spec()],
                                                            show_progress=progress),
                 robustness_report.checks, robustness_report.tables, robustness_report.plots)


def register(subparsers: Any) -> None:
    study = subparsers.add_parser("study", help="reproducible experiments on the analog simulator")
    sub = study.add_subparsers(dest="study", metavar="STUDY")
    p = sub.add_parser(
        "response-functions",
        help="Analog SGD vs Tiki-Taka/TTv2/RLv2 on non-ideal response functions; fixed-point rounding",
        description="Least squares and an MNIST FCN on power/soft-bounds/asymmetric devices (Wu et al. 2025), "
                    "and 16-bit fixed-point training with stochastic vs nearest rounding (Gupta et al. 2015). "
                    "Without --quick the full grid runs (3 seeds; long on a laptop CPU).")
    _common_flags(p, Path("runs/study-response-functions"),
                  "TOML file overlaying the preset ([least_squares], [mnist], ...)", "hide the tqdm bars")
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds, e.g. --seeds 0")
    p.add_argument("--parts", nargs="+", choices=["least_squares", "mnist", "fixed_point"],
                   help="run only these parts")
    p.add_argument("--epochs", type=int, help="override the MNIST and fixed-point epochs")
    p.add_argument("--ls-steps", type=int, help="override the least-squares steps")
    p.add_argument("--gamma-res", type=float, nargs="+", help="override the MNIST gamma_res grid")
    p.set_defaults(func=functools.partial(_run, study=_response_functions, overrides=_response_overrides))

    p = sub.add_parser(
        "robustness",
        help="accuracy on noisy, drifting inference chips: weight-noise eta sweep, PCM drift over time, HWA vs digital",
        description="Trains each model digitally and hardware-aware, deploys it with analog.deploy onto WeightNoise(eta) "
                    "chips (eta 0..1) and PCMLike chips read 1 s .. 1 year after programming (with and without drift "
                    "compensation), and compares input-, output- and weight-only noise (Fagbohungbe & Qian; Le Gallo "
                    "et al. 2023; Rasch et al. 2023).")
    _common_flags(p, Path("runs/study-robustness"), "TOML file with a [robustness] table overlaying the preset",
                  "hide the progress bar")
    p.add_argument("--models", nargs="+", help="run only these models (digits-mlp mnist-mlp mnist-cnn fleet-conv)")
    p.add_argument("--epochs", type=int, help="override the mnist5k training epochs")
    p.add_argument("--seed", type=int, help="override the train seed (weights init, data order, HWA noise; "
                                            "the chips keep their own seeds)")
    p.set_defaults(func=functools.partial(_run, study=_robustness, overrides=_robustness_overrides))
    study.set_defaults(func=lambda args: (study.print_help(), 2)[1])


def _common_flags(p: argparse.ArgumentParser, out: Path, config_help: str, progress_help: str) -> None:
    p.add_argument("--out", type=Path, default=out, help="output folder")
    p.add_argument("--quick", action="store_true", help="reduced study, < 2 minutes on 2 cores")
    p.add_argument("--config", type=Path, help=config_help)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the tiles are small, threads only add overhead)")
    p.add_argument("--no-progress", action="store_true", help=progress_help)


def load_settings(settings: Any, quick: bool, path: Path | None) -> Any:
    """The quick or full preset of ``settings``, overlaid by its table in the TOML file ``path``."""
    cfg = settings.quick() if quick else settings.full()
    if path is None:
        return cfg
    if not path.is_file():
        raise ConfigError(f"--config: got {str(path)!r}, no such file")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    table = settings.TOML_TABLE
    if table is not None:
        if table not in data:
            raise ConfigError(f"--config: {str(path)!r} has no [{table}] table")
        data = data[table]
    return settings.from_dict(data, base=cfg)


def _response_overrides(args: argparse.Namespace, cfg: Any) -> Any:
    replace = dataclasses.replace
    if args.seeds:
        cfg = replace(cfg, seeds=tuple(args.seeds))
    if args.parts:
        cfg = replace(cfg, parts=tuple(args.parts))
    if args.epochs is not None:
        cfg = replace(cfg, mnist=replace(cfg.mnist, epochs=args.epochs),
                      fixed_point=replace(cfg.fixed_point, epochs=args.epochs))
    if args.ls_steps is not None:
        cfg = replace(cfg, least_squares=replace(cfg.least_squares, steps=args.ls_steps))
    if args.gamma_res:
        cfg = replace(cfg, mnist=replace(cfg.mnist, gamma_res=tuple(args.gamma_res)))
    return cfg


def _robustness_overrides(args: argparse.Namespace, cfg: Any) -> Any:
    if args.models:
        cfg = dataclasses.replace(cfg, models=tuple(args.models))
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, train_seed=check_int("--seed", args.seed, 0))
    return cfg


def _run(args: argparse.Namespace, study: Callable[[], Study],
         overrides: Callable[[argparse.Namespace, Any], Any]) -> int:
    """Validate the flags and settings (one-line errors, exit 2, nothing written), run, report."""
    if args.threads < 1:
        print(f"--threads: got {args.threads}, must be >= 1", file=sys.stderr)
        return 2
    parts = study()
    try:
        cfg = overrides(args, load_settings(parts.settings, args.quick, args.config))
    except (ValueError, TypeError) as exc:   # ConfigError, or analog's own checks of the settings
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch  # on use, as the study modules above: start-up time of `analog-edge --help`

    from analog.studies.report import write_json

    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    results = parts.run(cfg, not args.no_progress)
    results["checks"] = parts.checks(results)
    text = parts.tables(results)
    print(text)
    (out / "table.txt").write_text(text + "\n")
    write_json(out / "results.json", results)
    for path in parts.plots(results, out):
        print(f"wrote {path}")
    seconds = results.get("seconds")
    total = sum(seconds.values()) if isinstance(seconds, dict) else seconds
    print(f"wrote {out / 'results.json'}" + (f" ({total:.0f} s)" if isinstance(total, (int, float)) else ""))
    return 0
