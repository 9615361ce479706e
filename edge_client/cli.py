"""`analog-edge client`: train the local autoencoder, upload quantized latents, print a summary.

Config comes from `--config edge.toml` (an `[edge]` table or top-level keys, with an optional
`[edge.analog]` TileConfig table); flags override it. Secrets can come from the environment
(ANALOG_EDGE_ENROLLMENT_SECRET, ANALOG_EDGE_TOKEN) so they stay out of shell history and `ps`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
from pathlib import Path

from common.errors import AnalogEdgeError

from .config import ConfigError, EdgeConfig, check_client_id
from .state import ClientState
from .summary import EvaluationSummary, UploadSummary


PARTITIONERS = ("iid", "dirichlet")   # Flower Datasets' IidPartitioner / DirichletPartitioner
DEFAULT_ALPHA = 0.5


def _alpha(text: str) -> float:
    try:
        a = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, must be a number > 0") from None
    if not math.isfinite(a) or a <= 0:
        raise argparse.ArgumentTypeError(f"got {text!r}, must be a number > 0")
    return a


def partition_args(args: argparse.Namespace) -> tuple[int, int, float | None]:
    """(partition_id, num_partitions, Dirichlet alpha or None for IID), checked together; flags not
    given take their defaults (partition 0 of 1, IID)."""
    pid = 0 if args.partition_id is None else args.partition_id
    n = 1 if args.num_partitions is None else args.num_partitions
    partitioner = args.partitioner or "iid"
    if n < 1:
        raise ConfigError(f"--num-partitions: got {n}, must be >= 1")
    if not 0 <= pid < n:
        raise ConfigError(f"--partition-id: got {pid}, must be in [0, {n - 1}] (--num-partitions {n})")
    if partitioner == "iid":
        if args.alpha is not None:
            raise ConfigError(f"--alpha: got {args.alpha}, only used with --partitioner dirichlet")
        return pid, n, None
    return pid, n, args.alpha if args.alpha is not None else DEFAULT_ALPHA


def saved_partition_args(args: argparse.Namespace, saved) -> tuple[int, int, float | None]:
    """--evaluate-only: the partition recorded in the state folder (``saved``, a ClientState); a flag
    that is given must agree with it (ConfigError naming the flag otherwise)."""
    recorded = {"--partition-id": saved.partition_id, "--num-partitions": saved.num_partitions,
                "--partitioner": "iid" if saved.alpha is None else "dirichlet"}
    given = {"--partition-id": args.partition_id, "--num-partitions": args.num_partitions,
             "--partitioner": args.partitioner}
    for flag, value in given.items():
        if value is not None and value != recorded[flag]:
            raise ConfigError(f"{flag}: got {value!r}, but the state folder was trained with {recorded[flag]!r}")
    if args.alpha is not None and args.alpha != saved.alpha:
        raise ConfigError(f"--alpha: got {args.alpha}, but the state folder was trained with {saved.alpha!r}")
    return saved.partition_id, saved.num_partitions, saved.alpha


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "client", help="run one edge client: train the AE on analog tiles, upload quantized latents",
        description="Train this edge device's autoencoder (on analog tiles, or digital with --digital) on "
                    "its partition of the data, quantize the training latents and upload them to the "
                    "latent service. Images and the decoder never leave the device.")
    p.add_argument("--server", required=True, help="HOST:PORT of the latent service")
    p.add_argument("--client-id", required=True, help="this device's id ([A-Za-z0-9._-], 1..64)")
    p.add_argument("--config", help="edge TOML ([edge] table or top-level keys; [edge.analog] = TileConfig)")
    p.add_argument("--dataset", help="mnist5k, digits, or a path (idx files, CIFAR-10 batches, .npz)")
    p.add_argument("--partition-id", type=int, default=None,
                   help="this client's partition, 0-based (default 0)")
    p.add_argument("--num-partitions", type=int, default=None,
                   help="how many partitions the dataset is split into (default 1 = all data)")
    p.add_argument("--partitioner", choices=PARTITIONERS, default=None,
                   help="iid (default), or dirichlet: Dirichlet(alpha) label skew")
    p.add_argument("--alpha", type=_alpha, default=None,
                   help=f"Dirichlet concentration, with --partitioner dirichlet (default {DEFAULT_ALPHA})")
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--bits", type=int, choices=(32, 16, 8, 4), help="latent precision on the wire")
    p.add_argument("--per-feature-scale", action="store_true", default=None,
                   help="one quantization scale per latent column")
    p.add_argument("--autoencoder", choices=("auto", "conv", "mlp"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, help="fleet seed (partitions); the client's own seed derives from it")
    p.add_argument("--init-seed", type=int, help="shared initial AE weights across clients (option a)")
    p.add_argument("--max-samples", type=int, help="cap this client's partition (quick runs)")
    p.add_argument("--digital", action="store_true", help="plain torch AE (ignore the analog config)")
    p.add_argument("--analog-preset", metavar="NAME",
                   help="train on a named analog tile preset (analog.presets: default, reram-sb, ecram, ...)")
    p.add_argument("--chunk-bytes", type=int)
    p.add_argument("--rows-per-upload", type=int)
    p.add_argument("--state-dir", help="where the encoder/decoder/token stay (default runs/edge/CLIENT_ID)")
    p.add_argument("--out", help="summary JSON path (default STATE_DIR/summary.json)")
    p.add_argument("--evaluate", action="store_true",
                   help="after uploading, classify the local held-out split via the server (needs a classifier)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="skip training/upload; evaluate the encoder saved in --state-dir with the config and "
                        "partition it was trained with (read from its state.json; training flags are not needed, "
                        "and a partition flag that is given must match)")
    p.add_argument("--tls-ca", help="PEM root CA: connect with TLS")
    p.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    p.add_argument("--tls-key", help="PEM client key (mutual TLS)")
    p.add_argument("--tls-server-name", help="name to verify in the server certificate")
    p.add_argument("--enrollment-secret", help="Register secret (or env ANALOG_EDGE_ENROLLMENT_SECRET)")
    p.add_argument("--token", help="an issued token, skips Register (or env ANALOG_EDGE_TOKEN)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: $OMP_NUM_THREADS or 1; the AE is small, and "
                        "more threads on shared cores slow it down)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.set_defaults(func=_run)


def _config(args: argparse.Namespace):
    cfg = EdgeConfig.from_toml(args.config) if args.config else EdgeConfig()
    over = {"model.latent_dim": args.latent_dim, "wire.bits": args.bits,
            "wire.per_feature_scale": args.per_feature_scale,
            "model.autoencoder": args.autoencoder, "training.epochs": args.epochs,
            "training.batch_size": args.batch_size, "training.lr": args.lr, "seed": args.seed,
            "init.seed": args.init_seed, "data.max_samples": args.max_samples, "wire.chunk_bytes": args.chunk_bytes,
            "wire.rows_per_upload": args.rows_per_upload, "link.tls_ca": args.tls_ca, "link.tls_cert": args.tls_cert,
            "link.tls_key": args.tls_key, "link.tls_server_name": args.tls_server_name,
            "link.enrollment_secret": args.enrollment_secret or os.environ.get("ANALOG_EDGE_ENROLLMENT_SECRET"),
            "link.token": args.token or os.environ.get("ANALOG_EDGE_TOKEN")}
    if args.dataset is not None:  # a dataset flag wins over both dataset and path of the file
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset=args.dataset, path=None))
    if args.digital and args.analog_preset:
        raise ConfigError("--digital and --analog-preset exclude each other")
    if args.digital:
        cfg = dataclasses.replace(cfg, analog=None)
    elif args.analog_preset:
        cfg = dataclasses.replace(cfg, analog={"preset": args.analog_preset})
    return cfg.replace(over)


def format_table(summary: UploadSummary, evaluation: EvaluationSummary | None = None) -> str:
    """A readable two-column table of the figures a user looks at first."""
    w, t = summary.wire, summary.timings
    rows = [
        ("client", summary.client_id),
        ("dataset / partition", f"{summary.dataset} {summary.partition} alpha={summary.alpha}"),
        ("autoencoder", f"{summary.autoencoder} ({'analog tiles' if summary.analog else 'digital'})"),
        ("train / test samples", f"{summary.n_train} / {summary.n_test}"),
        ("latent dim, bits", f"{w.latent_dim}, {w.bits}"),
        ("rows uploaded (stored)", f"{w.rows} ({summary.rows_stored}, client total {summary.client_total_rows})"),
        ("payload / wire bytes", f"{w.payload_bytes} / {w.wire_bytes}"),
        ("bytes per sample", f"{w.bytes_per_sample:.2f}"),
        ("compression pixels/latent", f"{w.compression_pixels:.1f}x"),
        ("compression raw/wire bytes", f"{_or_nan(w.compression_wire):.1f}x"),
        ("recon MSE held-out (init)", f"{summary.recon_mse:.5f} ({summary.recon_mse_initial:.5f})"),
        ("quantization RMSE / std(z)", f"{summary.quantization_rmse_rel:.4f}"),
        ("upload attempts", summary.attempts),
        ("time total (train, upload)", f"{t.total_s:.1f}s ({t.train_s:.1f}s, {t.upload_s:.2f}s)"),
    ]
    if evaluation is not None:
        rows.append(("held-out accuracy (server)", f"{evaluation.accuracy:.4f} "
                                                  f"({evaluation.correct}/{evaluation.n_test})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _or_nan(x: float | None) -> float:
    return float("nan") if x is None else x


def _run(args: argparse.Namespace) -> int:
    # on use (start-up time of `analog-edge --help`): numpy, grpc and, below, torch
    from protos.client import UploadError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    prog = "analog-edge client"
    try:
        check_client_id(args.client_id)
        state_dir = Path(args.state_dir or Path("runs") / "edge" / args.client_id)
        if args.evaluate_only:
            pid, n, alpha = saved_partition_args(args, ClientState.load(state_dir))
        else:
            pid, n, alpha = partition_args(args)
        cfg = _config(args)
    except (AnalogEdgeError, FileNotFoundError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    import torch

    from .runner import evaluate_with_server, saved_config, train_and_upload

    env_threads = os.environ.get("OMP_NUM_THREADS", "")
    threads = args.threads or (int(env_threads) if env_threads.isdigit() else 0) or 1
    torch.set_num_threads(max(1, threads))
    evaluation: EvaluationSummary | None = None
    try:
        if args.evaluate_only:
            # the encoder is rebuilt from the config it was trained with; connection options from here
            cfg = saved_config(state_dir).replace(
                {f"link.{k}": getattr(cfg.link, k) for k in ("tls_ca", "tls_cert", "tls_key", "tls_server_name",
                                                             "token", "max_attempts", "rpc_timeout_s")})
            evaluation = evaluate_with_server(cfg, args.server, args.client_id, pid, n, alpha, state_dir)
            report = {"client_id": args.client_id, "partition": f"{pid}/{n}", "alpha": alpha,
                      "evaluation": evaluation.to_dict()}
            out = Path(args.out) if args.out else state_dir / "evaluation.json"
        else:
            summary = train_and_upload(cfg, args.server, args.client_id, pid, n, alpha, state_dir,
                                       progress=not args.quiet)
            report = summary.to_dict()
            if args.evaluate:  # the upload succeeded: keep its summary even if evaluation cannot run
                try:
                    evaluation = evaluate_with_server(cfg, args.server, args.client_id, pid, n, alpha, state_dir)
                    report["evaluation"] = evaluation.to_dict()
                except UploadError as exc:
                    report["evaluation"] = {"error": str(exc)}
                    print(f"{prog}: evaluation failed: {exc}", file=sys.stderr)
            out = Path(args.out) if args.out else state_dir / "summary.json"
    except UploadError as exc:        # the server refused or could not be reached
        print(f"{prog}: {exc}", file=sys.stderr)
        return 3
    except (AnalogEdgeError, FileNotFoundError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # training diverged
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.evaluate_only:
        print(f"held-out accuracy {evaluation.accuracy:.4f} ({evaluation.correct}/{evaluation.n_test}) "
              f"for {args.client_id}")
    else:
        table = format_table(summary, evaluation)
        out.with_suffix(".txt").write_text(table + "\n")
        print(table)
    print(f"summary written to {out}", file=sys.stderr)
    return 0
