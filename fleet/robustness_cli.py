"""``analog-edge study robustness``: the inference-robustness study of analog.studies.robustness, with
the fleet's own conv encoder + server classifier as one of its models. Imports torch only when run."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "robustness",
        help="accuracy on noisy, drifting inference chips: weight-noise eta sweep, PCM drift over time, HWA vs digital",
        description="Trains each model digitally and hardware-aware, deploys it with analog.deploy onto WeightNoise(eta) "
                    "chips (eta 0..1) and PCMLike chips read 1 s .. 1 year after programming (with and without drift "
                    "compensation), and compares input-, output- and weight-only noise (Fagbohungbe & Qian; Le Gallo "
                    "et al. 2023; Rasch et al. 2023).")
    p.add_argument("--out", type=Path, default=Path("runs/study-robustness"), help="output folder")
    p.add_argument("--quick", action="store_true", help="reduced study, < 2 minutes on 2 cores")
    p.add_argument("--config", type=Path, help="TOML file with a [robustness] table overlaying the preset")
    p.add_argument("--models", nargs="+", help="run only these models (digits-mlp mnist-mlp mnist-cnn fleet-conv)")
    p.add_argument("--epochs", type=int, help="override the mnist5k training epochs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)


def _config(args: argparse.Namespace) -> Any:
    # imports inside the functions: `analog-edge --help` must not pay for importing torch
    from analog.studies.robustness_config import RobustnessConfig

    cfg = RobustnessConfig.quick() if args.quick else RobustnessConfig.full()
    if args.config is not None:
        import tomllib

        if not args.config.is_file():
            raise ValueError(f"--config: got {str(args.config)!r}, no such file")
        with args.config.open("rb") as fh:
            data = tomllib.load(fh)
        if "robustness" not in data:
            raise ValueError(f"--config: {str(args.config)!r} has no [robustness] table")
        cfg = RobustnessConfig.from_dict(data["robustness"], base=cfg)
    if args.models:
        cfg = dataclasses.replace(cfg, models=tuple(args.models))
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    return cfg


def fleet_model_spec() -> Any:
    """The fleet's conv encoder (edge_client, latent 32) followed by the server's classifier MLP
    (hidden 128), trained end to end here so that both kinds of training see the same model."""
    import torch
    from torch import nn

    from analog.studies.robustness import ModelSpec
    from edge_client.autoencoder import build_autoencoder
    from edge_client.config import EdgeConfig
    from server.config import ClassifierConfig

    edge, clf = EdgeConfig(), ClassifierConfig()

    def build(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ae = build_autoencoder((1, 28, 28), edge.latent_dim, "conv", conv_channels=tuple(edge.conv_channels),
                                   init_seed=seed)
            dims = [edge.latent_dim, *clf.hidden]
            layers: list[nn.Module] = []
            for a, b in zip(dims[:-1], dims[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            layers.append(nn.Linear(dims[-1], 10))
            return nn.Sequential(nn.Unflatten(1, (1, 28, 28)), ae.encoder, nn.Sequential(*layers))

    return ModelSpec("fleet-conv", "mnist5k", build,
                     f"fleet conv encoder (z={edge.latent_dim}) + classifier MLP {clf.hidden} on mnist5k")


def _run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        print(f"--threads: got {args.threads}, must be >= 1", file=sys.stderr)
        return 2
    try:
        cfg = _config(args)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    from analog.studies.report import write_json
    from analog.studies.robustness import run_study
    from analog.studies.robustness_report import checks, plots, tables

    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    results = run_study(cfg, extra_models=[fleet_model_spec()], show_progress=not args.no_progress)
    results["checks"] = checks(results)
    text = tables(results)
    print(text)
    (out / "table.txt").write_text(text + "\n")
    write_json(out / "results.json", results)
    for path in plots(results, out):
        print(f"wrote {path}")
    print(f"wrote {out / 'results.json'} ({results['seconds']:.0f} s)")
    return 0
