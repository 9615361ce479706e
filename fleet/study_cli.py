"""``analog-edge study response-functions``: run the study of analog.studies, print tables, write
results.json + PNGs. Lives in fleet/ (not analog/) so that `analog-edge --help` need not import torch."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tomllib
from pathlib import Path
from typing import Any

from fleet.robustness_cli import register as register_robustness


def register(subparsers: Any) -> None:
    study = subparsers.add_parser("study", help="reproducible experiments on the analog simulator")
    sub = study.add_subparsers(dest="study", metavar="STUDY")
    p = sub.add_parser(
        "response-functions",
        help="Analog SGD vs Tiki-Taka/TTv2/RLv2 on non-ideal response functions; fixed-point rounding",
        description="Least squares and an MNIST FCN on power/soft-bounds/asymmetric devices (Wu et al. 2025), "
                    "and 16-bit fixed-point training with stochastic vs nearest rounding (Gupta et al. 2015). "
                    "Without --quick the full grid runs (3 seeds; long on a laptop CPU).")
    p.add_argument("--out", type=Path, default=Path("runs/study-response-functions"), help="output folder")
    p.add_argument("--quick", action="store_true", help="reduced study, < 2 minutes on 2 cores")
    p.add_argument("--config", type=Path, help="TOML file overlaying the preset ([least_squares], [mnist], ...)")
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds, e.g. --seeds 0")
    p.add_argument("--parts", nargs="+", choices=["least_squares", "mnist", "fixed_point"],
                   help="run only these parts")
    p.add_argument("--epochs", type=int, help="override the MNIST and fixed-point epochs")
    p.add_argument("--ls-steps", type=int, help="override the least-squares steps")
    p.add_argument("--gamma-res", type=float, nargs="+", help="override the MNIST gamma_res grid")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the tiles are small, threads only add overhead)")
    p.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")
    p.set_defaults(func=_run)
    register_robustness(sub)
    study.set_defaults(func=lambda args: (study.print_help(), 2)[1])


def _build_config(args: argparse.Namespace) -> Any:
    from analog.studies.config import StudyConfig  # imported on use (torch): start-up time of --help

    cfg = StudyConfig.quick() if args.quick else StudyConfig.full()
    if args.config is not None:
        if not args.config.is_file():
            raise ValueError(f"--config: got {str(args.config)!r}, no such file")
        with args.config.open("rb") as fh:
            cfg = StudyConfig.from_dict(tomllib.load(fh), base=cfg)
    if args.seeds:
        cfg = dataclasses.replace(cfg, seeds=tuple(args.seeds))
    if args.parts:
        cfg = dataclasses.replace(cfg, parts=tuple(args.parts))
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, mnist=dataclasses.replace(cfg.mnist, epochs=args.epochs),
                                  fixed_point=dataclasses.replace(cfg.fixed_point, epochs=args.epochs))
    if args.ls_steps is not None:
        cfg = dataclasses.replace(cfg, least_squares=dataclasses.replace(cfg.least_squares, steps=args.ls_steps))
    if args.gamma_res:
        cfg = dataclasses.replace(cfg, mnist=dataclasses.replace(cfg.mnist, gamma_res=tuple(args.gamma_res)))
    return cfg


def _run(args: argparse.Namespace) -> int:
    import torch  # imported on use: start-up time of --help

    from analog.studies.report import write_json
    from analog.studies.response_functions import run_study
    from analog.studies.summarize import checks, plots, tables

    if args.threads < 1:
        print(f"--threads: got {args.threads}, must be >= 1", file=sys.stderr)
        return 2
    try:
        cfg = _build_config(args)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    results = run_study(cfg, show_progress=not args.no_progress)
    results["checks"] = checks(results)
    text = tables(results)
    print(text)
    (out / "table.txt").write_text(text + "\n")
    write_json(out / "results.json", results)
    for path in plots(results, out):
        print(f"wrote {path}")
    print(f"wrote {out / 'results.json'}")
    return 0
