"""`analog-edge fleet`, `analog-edge sweep` and `analog-edge demo` sub-commands.

The handlers import the runners (torch, flwr, Ray) when they run, so `analog-edge --help` stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from common.errors import AnalogEdgeError
from fleet.config import (
    DEFAULT_CONFIG,
    PARTITIONERS,
    RADIO_NAMES,
    ConfigError,
    FleetConfig,
    resolve_config_path,
)
from fleet.cli.common import fail, link_latest, print_report
from fleet.names import new_run_dir


def _add_fleet_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"fleet TOML (default {DEFAULT_CONFIG})")
    p.add_argument("--clients", type=int, help="number of edge clients (overrides fleet.num_clients)")
    p.add_argument("--partitioner", choices=list(PARTITIONERS),
                   help="how the dataset is split across clients: iid, or dirichlet (label skew, --alpha)")
    p.add_argument("--alpha", type=float, help="Dirichlet concentration (with --partitioner dirichlet)")
    p.add_argument("--alignment", metavar="ALIGNMENT",
                   help="how client latent spaces are aligned (overrides the [alignment] table's init, anchors and "
                        "conditioning): none, or parts joined by '+' (shared_init | pretrained, anchors, "
                        "embedding | adapter), e.g. pretrained+anchors, shared_init+adapter (docs/fleet.md)")
    p.add_argument("--backend", choices=["ray", "local"], help="ray: Flower simulation; local: in-process")
    p.add_argument("--server", choices=["auto", "inprocess", "subprocess"], help="how the latent service runs")
    p.add_argument("--digital", action="store_true", default=None,
                   help="identical pipeline without analog non-idealities (digital tiles on both sides)")
    p.add_argument("--seed", type=int, help="fleet seed")
    p.add_argument("--radio", choices=list(RADIO_NAMES),
                   help="the clients' radio link priced in the energy report (overrides energy.radio; docs/energy.md)")


def load_fleet_config(args: argparse.Namespace) -> FleetConfig:
    """The fleet config the sub-command runs: the TOML file, then the flags that override it, checked here."""
    fleet = FleetConfig.from_toml(resolve_config_path(args.config))
    if getattr(args, "privacy", None):
        fleet = fleet.with_overrides(privacy=dataclasses.replace(fleet.privacy, enabled=True))
    if getattr(args, "inference_times", None) is not None:
        times = [t.strip() for t in args.inference_times.split(",") if t.strip()]
        try:
            chips = dataclasses.replace(fleet.inference, times=times)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("inference.times", "--inference-times")) from None
        fleet = fleet.with_overrides(inference=chips)
    if getattr(args, "radio", None):
        fleet = fleet.with_overrides(energy=dataclasses.replace(fleet.energy, radio=args.radio))
    fleet = fleet.with_overrides(num_clients=args.clients, partitioner=args.partitioner, alpha=args.alpha,
                                 alignment=args.alignment, backend=args.backend, server=args.server,
                                 digital=args.digital, seed=args.seed, mode=getattr(args, "mode", None))
    if args.alpha is not None and fleet.partitioner != "dirichlet":
        raise ConfigError(f"--alpha: got {args.alpha}, only used with --partitioner dirichlet "
                          f"(the partitioner is {fleet.partitioner})")
    if fleet.mode in ("fedavg", "both") and fleet.backend == "local" and not getattr(args, "compare_alignment", False):
        raise ConfigError(f"fleet.mode: got {fleet.mode!r} with backend 'local'; FedAvg runs through Flower's "
                          f"FedAvg strategy, so use --backend ray (or --mode latent)")
    # here, in this process, before anything starts: a missing file would otherwise fail in every client
    fleet.edge_config.data.check_source("edge.data.path" if fleet.edge_config.data.path else "fleet.dataset")
    return fleet


def _run_fleet(args: argparse.Namespace) -> int:
    from fleet.flower import run_fleet  # imported on use: start-up time of --help
    from fleet.run import ExternalService

    try:
        fleet = load_fleet_config(args)
    except AnalogEdgeError as exc:
        return fail(exc)
    out = Path(args.out) if args.out else new_run_dir(Path("runs"), fleet.name)
    if getattr(args, "compare_alignment", False):
        from fleet.experiments import compare_alignment  # imported on use: start-up time of --help

        only = [o.strip() for o in args.options.split(",") if o.strip()] if args.options else None
        try:
            print(compare_alignment(fleet, out, only)["table"])
        except AnalogEdgeError as exc:
            return fail(exc)
        print(f"alignment: {out / 'alignment.json'}")
        return 0
    external = ExternalService(args.latent_address, args.admin_token or "") if args.latent_address else None
    ray_address = getattr(args, "ray_address", None)
    if ray_address is not None and not _is_host_port(ray_address):
        return fail(ConfigError(f"--ray-address: got {ray_address!r}, must be host:port of a running Ray head"))
    try:
        result = run_fleet(fleet, out, external, verbose=bool(getattr(args, "verbose", False)),
                           ray_address=ray_address)
    except AnalogEdgeError as exc:
        return fail(exc)
    print_report(out)
    del result
    return 0


def _is_host_port(value: str) -> bool:
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def _run_demo(args: argparse.Namespace) -> int:
    args.config = args.config or DEFAULT_CONFIG
    for flag in ("clients", "partitioner", "alpha", "alignment", "backend", "server", "seed", "latent_address",
                 "admin_token", "privacy", "ray_address", "radio"):
        setattr(args, flag, None)
    if args.out:
        return _run_fleet(args)
    try:
        load_fleet_config(args)                     # bad input fails before a run folder exists
    except AnalogEdgeError as exc:
        return fail(exc)
    runs = Path("runs") / "demo"
    if runs.is_symlink() or (runs.exists() and not runs.is_dir()):
        return fail(ConfigError(f"{runs}: exists and is not a folder; move it away or pass --out"))
    args.out = str(new_run_dir(runs, "demo"))
    rc = _run_fleet(args)
    link_latest(Path(args.out), runs / "latest")
    print(f"latest demo: {runs / 'latest'}")
    return rc


def _run_sweep(args: argparse.Namespace) -> int:
    from fleet.experiments import SweepSpec, run_sweep  # imported on use: start-up time of --help

    try:
        fleet = load_fleet_config(args)
        spec = SweepSpec.parse(latent_dims=args.latent_dims, bits=args.bits, devices=args.devices,
                               algorithms=args.algorithms, references=not args.no_references,
                               fedavg=args.fedavg, privacy=bool(args.privacy))
        spec.tiles(fleet)          # every device/algorithm name checked before the output folder exists
    except AnalogEdgeError as exc:
        return fail(exc)
    out = Path(args.out) if args.out else new_run_dir(Path("runs"), f"sweep-{fleet.name}")
    run_sweep(fleet, spec, out)
    print((out / "sweep_table.txt").read_text(), end="")
    print(f"sweep: {out / 'sweep.csv'}, {out / 'sweep.json'}, {out / 'sweep.png'}, {out / 'sweep_energy.png'}")
    return 0


def _run_privacy_front(args: argparse.Namespace) -> int:
    from fleet.experiments import Defense, load_marks, plan, run_front  # imported on use: start-up time

    try:
        fleet = load_fleet_config(args)
        defenses = [Defense.parse(d) for d in args.defense or []]
        marks = load_marks(args.mark or [])
        if not defenses and not marks:
            raise ConfigError("--defense: none given; name at least one KEY=V1,V2,... (or a --mark config)")
        if not args.seeds or any(s < 0 for s in args.seeds):
            raise ConfigError(f"--seeds: got {args.seeds}, must be one or more integers >= 0")
        plan(fleet, defenses, marks)        # every point validated before the output folder exists
    except AnalogEdgeError as exc:
        return fail(exc)
    out = Path(args.out) if args.out else new_run_dir(Path("runs"), f"privacy-front-{fleet.name}")
    run_front(fleet, defenses, list(dict.fromkeys(args.seeds)), out, marks)
    print((out / "front_table.txt").read_text(), end="")
    print(f"privacy front: {out / 'front.csv'}, {out / 'front.json'}, {out / 'front.png'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fleet", help="run a simulated edge fleet end to end (Flower + Ray)",
                              description="Launch N edge clients with Flower's simulation engine: each trains "
                                          "an autoencoder on analog tiles and uploads latents; the server trains "
                                          "the classifier; every client reports accuracy on its own test split.")
    _add_fleet_flags(p)
    p.add_argument("--mode", choices=["latent", "fedavg", "both"], help="latent pipeline, FedAvg baseline, or both")
    p.add_argument("--privacy", action="store_true", default=None,
                   help="measure privacy after the run: the server-side attack suite (no leaked pair; PSNR, SSIM, "
                        "re-identification, gain over the class-mean guess: docs/privacy.md), dCor(X, Z) and a "
                        "model-inversion attack from one client's leaked (x, z) pairs ([privacy] table)")
    p.add_argument("--inference-times", metavar="T1,T2,..",
                   help="after training, program the encoders and the classifier onto PCM-like inference chips "
                        "and evaluate the fleet at these times after programming, e.g. 1h,1d,1y ([inference] times)")
    p.add_argument("--out", help="output folder (default runs/<name>-<time>)")
    p.add_argument("--latent-address", help="use this running latent service (host:port) instead of starting one")
    p.add_argument("--admin-token", help="its TrainClassifier admin token (with --latent-address)")
    p.add_argument("--ray-address", help="simulate on this running Ray cluster (host:port of its head) "
                                         "instead of starting a local one")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    p.add_argument("--compare-alignment", action="store_true",
                   help="measure none / shared_init / embedding / adapter, and with alignment.public_set the public-"
                        "set options (anchor maps lstsq/ridge/procrustes, pretrained init), against an oracle "
                        "encoder (in-process)")
    p.add_argument("--options", help="with --compare-alignment: only these rows (comma list of row names, "
                                     "e.g. 'shared_init+adapter,pretrained+anchors (lstsq),oracle')")
    p.set_defaults(func=_run_fleet)

    s = subparsers.add_parser("sweep", help="sweep latent size x bits x device x algorithm (compression vs accuracy)")
    _add_fleet_flags(s)
    s.add_argument("--latent-dims", default="4,8,16,32,64,128", help="comma list (default 4,8,16,32,64,128)")
    s.add_argument("--bits", default="32,8,4", help="comma list of wire bit widths (default 32,8,4)")
    s.add_argument("--devices", default="", help="comma list of device presets/types (default: the config's)")
    s.add_argument("--algorithms", default="", help="comma list of algorithms (default: the config's)")
    s.add_argument("--no-references", action="store_true", help="skip the digital and raw-pixel reference lines")
    s.add_argument("--fedavg", action="store_true", help="add the FedAvg baseline point (one Flower run)")
    s.add_argument("--privacy", action="store_true",
                   help="run the privacy phase at every point: the strongest server-side attack's PSNR gain over "
                        "the class-mean guess, SSIM and re-identification rate (docs/privacy.md)")
    s.add_argument("--out", help="output folder (default runs/sweep-<name>-<time>)")
    s.set_defaults(func=_run_sweep)

    f = subparsers.add_parser(
        "privacy-front", help="accuracy vs privacy: one curve per defense (dotted config key and its values)",
        description="For each --defense KEY=V1,V2,.. and each value, run the fleet (in-process) once per seed with "
                    "the privacy phase on; plot fleet accuracy against the strongest server-side attack's PSNR gain "
                    "over the class-mean guess (docs/privacy.md). The config as given, and every --mark config, is "
                    "drawn as a star. Writes front.csv, front.json, front_table.txt and front.png.")
    _add_fleet_flags(f)
    f.add_argument("--defense", action="append", metavar="KEY=V1,V2,..",
                   help="a dotted config key and its values, e.g. edge.defense.noise_multiplier=0,0.5,1, or "
                        "alignment=pretrained+anchors,shared_init+adapter (repeat for more curves)")
    f.add_argument("--mark", action="append", metavar="CONFIG", help="a whole config drawn as a labelled star "
                                                                      "(e.g. configs/private.toml); repeatable")
    f.add_argument("--seeds", type=int, nargs="+", default=[0], help="fleet seeds per point (default 0)")
    f.add_argument("--out", help="output folder (default runs/privacy-front-<name>-<time>)")
    f.set_defaults(func=_run_privacy_front)

    d = subparsers.add_parser("demo", help="the quickstart fleet (MNIST 5k, 8 clients), prints its table")
    d.add_argument("--config", default=DEFAULT_CONFIG, help=argparse.SUPPRESS)
    d.add_argument("--digital", action="store_true", default=None, help="digital tiles instead of analog")
    d.add_argument("--out", help="output folder (default: a new runs/demo/demo-<time>, linked from "
                                 "runs/demo/latest)")
    d.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    d.set_defaults(func=_run_demo)
