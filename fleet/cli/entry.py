"""The one `analog-edge` entry point.

Each sub-command lives in the package that owns it and exposes ``register(subparsers)``; the
module adds its parser and sets ``func`` (a callable taking the parsed args and returning an exit
code). Heavy imports (torch, grpc, flwr) happen inside the handlers, so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
from importlib.metadata import PackageNotFoundError, version

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "fleet.cli.fleet_commands",        # fleet, sweep, demo
    "edge_client.cli",       # client
    "server.cli",            # serve, train-classifier
    "fleet.cli.deploy",  # deploy certs / server / local (Flower's deployment engine)
    "fleet.cli.study",       # study response-functions (the analog simulator studies)
)


def _version() -> str:
    try:
        return version("analog-edge")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analog-edge",
        description="Privacy-preserving edge learning on simulated analog in-memory computing hardware.",
    )
    parser.add_argument("--version", action="version", version=f"analog-edge {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def join_dash_values(argv: list[str]) -> list[str]:
    """``--latent-dims -8,16`` -> ``--latent-dims=-8,16``: argparse takes a value that starts with a
    dash and is not a plain negative number for an unknown option ("expected one argument"), so the
    command's own check, which names the flag and what is allowed, would never see it."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg.startswith("--") and "=" not in arg and len(nxt) > 1 and nxt[0] == "-" and nxt[1].isdigit():
            out.append(f"{arg}={nxt}")
            i += 2
        else:
            out.append(arg)
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_dash_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from fleet.processes import Interrupted, interrupt_on_signals

    interrupt_on_signals()        # SIGTERM too runs the `finally` blocks that stop started processes
    try:
        return int(args.func(args) or 0)
    except Interrupted as exc:
        print(f"analog-edge: interrupted by {signal.Signals(exc.signum).name}; the processes it started are "
              "stopped", file=sys.stderr)
        return exc.exit_code      # 143 after SIGTERM, 130 after SIGINT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
