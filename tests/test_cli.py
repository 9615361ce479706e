"""The single `analog-edge` entry point: version, help, and unknown commands."""
import subprocess
import sys

import pytest

from fleet import cli


def test_version_matches_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"analog-edge {version('analog-edge')}"


def test_help_lists_every_registered_command():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    help_text = parser.format_help()
    assert sub.choices, "no sub-command registered"
    for name in sub.choices:
        assert name in help_text


def test_unknown_command_is_rejected_with_its_name():
    proc = subprocess.run([sys.executable, "-m", "fleet.cli", "no-such-command"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no-such-command" in proc.stderr
