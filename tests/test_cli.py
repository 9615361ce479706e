"""The single `analog-edge` entry point: version, sub-commands, start-up cost, flag validation."""
import argparse
import subprocess
import sys

import pytest

from fleet.cli import fleet_commands as commands
from fleet.cli import entry as cli

COMMANDS = {"fleet", "sweep", "privacy-front", "demo", "client", "serve", "train-classifier", "study", "deploy"}


def test_version_matches_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"analog-edge {version('analog-edge')}"


def test_every_package_contributes_its_commands_and_help_needs_no_torch():
    """Each package registers its own sub-commands; building the parser (what --help does) must
    not import torch, flwr or grpc: the handlers import them when they run."""
    code = ("import sys; from fleet.cli import entry as cli; p = cli.build_parser(); "
            "sub = next(a for a in p._actions if a.dest == 'command'); "
            "print(sorted(sub.choices)); print(sorted(m for m in ('torch', 'flwr', 'grpc', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert set(eval(out[0])) == COMMANDS
    assert eval(out[1]) == []


def test_unknown_command_is_rejected_with_its_name():
    proc = subprocess.run([sys.executable, "-m", "fleet.cli", "no-such-command"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no-such-command" in proc.stderr


@pytest.mark.parametrize("flags, message", [
    (["--partition-id", "5", "--num-partitions", "3"], "--partition-id: got 5, must be in [0, 2] (--num-partitions 3)"),
    (["--num-partitions", "0"], "--num-partitions: got 0, must be >= 1"),
    (["--alpha", "0.3"], "--alpha: got 0.3, only used with --partitioner dirichlet"),
])
def test_client_partition_flags_fail_in_one_line_naming_the_flag(flags, message, capsys, tmp_path):
    rc = cli.main(["client", "--server", "127.0.0.1:1", "--client-id", "edge-x", "--state-dir", str(tmp_path),
                   *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"analog-edge client: {message}"]


def test_client_partition_flags_use_flowers_names():
    from edge_client import cli as edge_cli
    from edge_client.cli import partition_args

    parser = argparse.ArgumentParser()
    edge_cli.register(parser.add_subparsers())
    base = ["client", "--server", "h:1", "--client-id", "c"]
    assert partition_args(parser.parse_args(base)) == (0, 1, None)
    assert partition_args(parser.parse_args(base + ["--partition-id", "2", "--num-partitions", "4"])) == (2, 4, None)
    assert partition_args(parser.parse_args(base + ["--partitioner", "dirichlet"])) == (0, 1, 0.5)
    assert partition_args(parser.parse_args(base + ["--partitioner", "dirichlet", "--alpha", "0.1"])) == (0, 1, 0.1)
    with pytest.raises(SystemExit):      # the old ID/N flag is gone, not silently reinterpreted
        parser.parse_args(base + ["--partition", "0/2"])


def test_fleet_partitioner_flag_and_alpha_check(capsys, tmp_path):
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    fleet = commands.load_fleet_config(parser.parse_args(["fleet", "--partitioner", "dirichlet", "--alpha", "0.3"]))
    assert (fleet.partitioner, fleet.alpha_or_none) == ("dirichlet", 0.3)
    assert commands.load_fleet_config(parser.parse_args(["fleet"])).alpha_or_none is None
    rc = cli.main(["fleet", "--alpha", "0.3", "--out", str(tmp_path)])
    assert rc == 2
    assert capsys.readouterr().err.strip() == ("analog-edge: error: --alpha: got 0.3, only used with "
                                               "--partitioner dirichlet (the partitioner is iid)")
