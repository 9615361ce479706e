"""The `analog-edge` command line: one entry point, one module per group of sub-commands.

`main` parses and dispatches; `fleet_commands` (fleet, sweep, privacy-front, demo), `deploy` (Flower's
deployment engine) and `study` (the simulator's studies) each add their sub-commands; `common` holds
what they share (loading a config, failing with one line, naming run folders).
"""
from fleet.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
