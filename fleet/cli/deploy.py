"""`analog-edge deploy {certs,server,local}`: the fleet on Flower's deployment engine.

  analog-edge deploy certs --out pki --nodes 3 [--host 192.168.1.10]   # CA, server cert, node keys
  analog-edge deploy server --pki pki --config F [--host H]           # server machine (see README)
  analog-edge deploy local --clients 3 --config F                     # server + 3 SuperNodes on loopback

Handlers import the deployment code when they run, so `analog-edge --help` stays fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import AnalogEdgeError
from fleet.config import DEFAULT_CONFIG, ConfigError, FleetConfig, resolve_config_path
from fleet.cli.common import fail, print_report
from fleet.names import new_run_dir
from fleet.processes import ProcessGroup


def _load(args: argparse.Namespace) -> FleetConfig:
    fleet = FleetConfig.from_toml(resolve_config_path(args.config))
    return fleet.with_overrides(num_clients=args.clients)


# fleet.flower is imported on use: it loads Flower (seconds), which `analog-edge --help` must not pay for
def _certs(args: argparse.Namespace) -> int:
    from fleet.flower import make_pki
    if args.nodes < 1:
        return fail(ConfigError(f"--nodes: got {args.nodes}, must be >= 1"))
    hosts = list(dict.fromkeys([*(args.host or []), "127.0.0.1", "localhost"]))
    pki = make_pki(Path(args.out), args.nodes, hosts=hosts)
    print(f"pki: {pki.ca}, {pki.cert} (valid for {', '.join(hosts)}), node-0..{args.nodes - 1}.key/.pub in {pki.root}")
    return 0


def _server(args: argparse.Namespace) -> int:
    from fleet.flower import Pki, serve_fleet
    try:
        fleet = _load(args)
        for flag in ("superlink_port", "latent_port"):
            if not 0 <= getattr(args, flag) < 65536:
                raise ConfigError(f"--{flag.replace('_', '-')}: got {getattr(args, flag)}, must be in [0, 65535]")
    except AnalogEdgeError as exc:
        return fail(exc)
    out = (Path(args.out) if args.out else new_run_dir(Path("runs"), f"deploy-{fleet.name}")).resolve()
    procs = ProcessGroup()

    def announce(runtime) -> None:
        print(f"superlink: {runtime.address} (TLS, SuperNode authentication on); waiting for "
              f"{fleet.num_clients} SuperNodes. On device i:\n  flower-supernode --superlink {runtime.address} "
              f"--root-certificates {args.pki}/ca.crt --auth-supernode-private-key {args.pki}/node-$i.key "
              f"--node-config \"partition-id=$i num-partitions={fleet.num_clients} state-dir='<folder>'\"",
              file=sys.stderr, flush=True)

    try:
        serve_fleet(fleet, out, Pki(Path(args.pki).resolve()), procs, host=args.host, verbose=args.verbose,
                    on_ready=announce, superlink_port=args.superlink_port, latent_port=args.latent_port)
    except AnalogEdgeError as exc:
        return fail(exc)
    finally:
        procs.stop()
    print_report(out)
    return 0


def _local(args: argparse.Namespace) -> int:
    from fleet.flower import deploy_local
    try:
        fleet = _load(args)
    except AnalogEdgeError as exc:
        return fail(exc)
    out = (Path(args.out) if args.out else new_run_dir(Path("runs"), f"deploy-{fleet.name}")).resolve()
    try:
        deploy_local(fleet, out, verbose=args.verbose)
    except AnalogEdgeError as exc:
        return fail(exc)
    print_report(out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    d = subparsers.add_parser("deploy", help="run the fleet on Flower's deployment engine (SuperLink + SuperNodes)",
                              description="A real flower-superlink and flower-supernode processes, TLS on and "
                                          "SuperNode authentication enabled; the same report as `fleet`.")
    sub = d.add_subparsers(dest="deploy_command", metavar="WHAT", required=True)

    c = sub.add_parser("certs", help="make the CA, the server certificate and one key pair per SuperNode")
    c.add_argument("--out", required=True, help="folder for ca.crt, server.pem/.key, node-<i>.key/.pub")
    c.add_argument("--nodes", type=int, required=True, help="number of SuperNodes (devices)")
    c.add_argument("--host", action="append", help="a name or address the devices use to reach the server "
                                                    "(repeatable; 127.0.0.1 and localhost are always included)")
    c.set_defaults(func=_certs)

    for name, helptext, func in (("server", "the server machine: latent service + SuperLink, then the fleet run",
                                  _server),
                                 ("local", "server and --clients SuperNodes on this machine (loopback)", _local)):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--config", default=DEFAULT_CONFIG, help=f"fleet TOML (default {DEFAULT_CONFIG})")
        p.add_argument("--clients", type=int, help="number of SuperNodes (overrides fleet.num_clients)")
        p.add_argument("--out", help="output folder (default runs/deploy-<name>-<time>)")
        p.add_argument("--verbose", action="store_true", help="show Flower's logs")
        if name == "server":
            p.add_argument("--pki", required=True, help="folder made by `analog-edge deploy certs`")
            p.add_argument("--host", default="127.0.0.1", help="address the SuperLink and latent service bind "
                                                               "(default 127.0.0.1)")
            p.add_argument("--superlink-port", type=int, default=0, help="SuperLink port (default: a free one)")
            p.add_argument("--latent-port", type=int, default=0, help="latent service port (default: a free one)")
        p.set_defaults(func=func)
