"""`analog-edge serve` and `analog-edge train-classifier`: config from TOML, CLI flags override it."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tomllib
from pathlib import Path

from common.errors import AnalogEdgeError
from server.config import CONDITIONING, ClassifierConfig, ConfigError, ServerConfig


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the latent service (gRPC) over a durable store",
                              description="Run the LatentService with health checking and reflection. "
                                          "SIGTERM/SIGINT stop it gracefully.")
    p.add_argument("--config", help="server TOML (flags below override it)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port, 0 = pick a free one (default 50051)")
    p.add_argument("--store", help="store directory (latents.sqlite3, classifiers/)")
    p.add_argument("--port-file", help="write the bound port here (useful with --port 0)")
    p.add_argument("--tls-cert", help="PEM certificate chain; with --tls-key serves TLS only")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--tls-client-ca", help="PEM CA bundle: require client certificates (mutual TLS)")
    p.add_argument("--insecure", action="store_true", default=None,
                   help="allow plaintext on a non-loopback --host (tokens travel in clear); loopback needs no flag")
    p.add_argument("--enrollment-secret", help="Register requires this secret")
    p.add_argument("--admin-token", help="enables TrainClassifier and admin Status/Register/RevokeTokens "
                                         "(without it TrainClassifier is disabled)")
    p.add_argument("--max-upload-bytes", type=int, help="payload limit of one upload")
    p.add_argument("--max-rows-per-client", type=int, help="row quota per client (0 = none)")
    p.add_argument("--max-workers", type=int, help="server threads")
    p.add_argument("--store-sync", choices=("full", "normal"),
                   help="full (default): fsync every commit, an ack survives power loss; normal: an ack "
                        "survives a server crash (kill -9) but not an OS crash, and commits cost no fsync")
    p.add_argument("--torch-threads", type=int, help="torch intra-op threads for training (0 = torch default; default 1)")
    p.add_argument("--grace-seconds", type=float, help="grace period for in-flight RPCs at shutdown")
    p.add_argument("--header-timeout-seconds", type=float, help="an Upload must send its header within this")
    p.add_argument("--idle-timeout-seconds", type=float, help="... and each chunk within this of the previous one")
    p.add_argument("--max-inflight-bytes", type=int, help="payload bytes of all uploads in flight (server-wide)")
    p.add_argument("--max-pending-streams", type=int, help="Upload streams allowed to wait for a header at once")
    p.add_argument("--max-tokens-per-client", type=int, help="tokens a client may hold (oldest retired first)")
    p.add_argument("--max-classifier-bytes", type=int, help="estimated training memory a classifier config may need")
    p.add_argument("--train-memory-bytes", type=int, help="address-space limit of the training process (0 = none)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    p.set_defaults(func=_serve)

    t = subparsers.add_parser("train-classifier", help="train the server's classifier on the stored latents",
                              description="Train the MLP classifier on a store's latents, with a held-out "
                                          "split, and save a new checkpoint version that a running server's "
                                          "Classify picks up. It runs on analog tiles unless --digital: the "
                                          "config's [classifier.analog], else its [analog] table (a fleet "
                                          "config), else the reference tile (analog.TileConfig defaults).")
    t.add_argument("--store", required=True, help="store directory of `analog-edge serve` (holds latents.sqlite3)")
    t.add_argument("--config", help="classifier TOML ([classifier] table or top-level keys) or a fleet config")
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--conditioning", choices=CONDITIONING, help="client_conditioning")
    t.add_argument("--digital", action="store_true", help="a digital classifier (ignore any analog tile config)")
    t.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    t.set_defaults(func=_train)


def _serve(args: argparse.Namespace) -> int:
    # gRPC's C core logs to stderr on its own (e.g. a raw "add_port.cc ... Failed to add port" line
    # before our one-line error); it reads this when grpc loads. --log-level DEBUG or the variable keeps it.
    if (args.log_level or "").upper() != "DEBUG":
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from server.app import serve  # only now: grpc reads GRPC_VERBOSITY when it loads (and start-up time)

    try:
        cfg = ServerConfig.from_toml(args.config) if args.config else ServerConfig()
        cfg = cfg.replace(host=args.host, port=args.port, store=args.store, port_file=args.port_file,
                          tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                          enrollment_secret=args.enrollment_secret, admin_token=args.admin_token,
                          max_upload_bytes=args.max_upload_bytes, max_rows_per_client=args.max_rows_per_client,
                          max_workers=args.max_workers, torch_threads=args.torch_threads,
                          insecure=args.insecure,
                          store_sync=args.store_sync,
                          grace_seconds=args.grace_seconds, log_level=args.log_level,
                          header_timeout_seconds=args.header_timeout_seconds,
                          idle_timeout_seconds=args.idle_timeout_seconds, max_inflight_bytes=args.max_inflight_bytes,
                          max_pending_streams=args.max_pending_streams,
                          max_tokens_per_client=args.max_tokens_per_client,
                          max_classifier_bytes=args.max_classifier_bytes, train_memory_bytes=args.train_memory_bytes)
    except ConfigError as exc:
        print(f"analog-edge serve: {exc}", file=sys.stderr)
        return 2
    try:
        rc = serve(cfg)
    except OSError as exc:
        print(f"analog-edge serve: {exc}", file=sys.stderr)
        return 1
    # The store is closed and the logs are written: exit now. Interpreter teardown of gRPC's threads
    # can take seconds more, and shutdown is promised within the grace period.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def _classifier_config(args: argparse.Namespace) -> tuple[ClassifierConfig, str]:
    """The hand run's ClassifierConfig and a line saying what it trains on.

    Analog tiles unless --digital, as the fleet does: a fleet config's top-level [analog] table is the
    TileConfig of both sides, so it applies here too when [classifier] has no analog table of its own."""
    import analog  # on use (start-up time of `analog-edge --help`): torch

    cfg = ClassifierConfig.from_toml(args.config) if args.config else ClassifierConfig()
    source = f"{args.config} [classifier.analog]" if cfg.analog is not None else \
        "the reference tile (analog.TileConfig defaults)"
    if args.digital:
        cfg = dataclasses.replace(cfg, analog=None)
    elif cfg.analog is None:
        shared = tomllib.loads(Path(args.config).read_text()).get("analog") if args.config else None
        if isinstance(shared, dict):
            cfg, source = ClassifierConfig.from_dict({**cfg.to_dict(), "analog": shared}), f"{args.config} [analog]"
        else:
            cfg = dataclasses.replace(cfg, analog=analog.TileConfig().to_dict())
    over = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("seed", args.seed),
                              ("client_conditioning", args.conditioning)) if v is not None}
    cfg = dataclasses.replace(cfg, **over)
    if cfg.analog is None:
        return cfg, "digital classifier (--digital)"
    dev = (cfg.analog.get("device") or {}).get("type", "ConstantStep")
    table = cfg.analog.get("algorithm") or {}
    alg = table.get("preset") or table.get("type", "AnalogSGD")      # a preset by its name
    return cfg, f"analog classifier: {dev} / {alg} tiles from {source} (--digital for a digital one)"


def _train(args: argparse.Namespace) -> int:
    # on use (start-up time of `analog-edge --help`): grpc, numpy and torch
    from server.app import setup_logging
    from server.classifier.report import format_result
    from server.classifier.training import train_classifier
    from server.store import DB_NAME

    store = Path(args.store)
    db = store if store.suffix in (".sqlite3", ".db") else store / DB_NAME
    if not db.is_file():  # checked first: training must not create an empty store where none was
        print(f"analog-edge train-classifier: --store: got {args.store!r}, no latent store there "
              f"(no {db.name}); give the --store of `analog-edge serve`", file=sys.stderr)
        return 2
    setup_logging("INFO")
    try:
        cfg, what = _classifier_config(args)
        print(f"train-classifier: {what}", file=sys.stderr)
        result = train_classifier(args.store, cfg, progress=True)
    except AnalogEdgeError as exc:
        print(f"analog-edge train-classifier: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0
