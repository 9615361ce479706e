"""What every sub-command shares: one-line failures, the report it prints, the "latest" link."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def fail(exc: Exception) -> int:
    """Print ``exc`` as the command's one-line error and return the usage-error exit code."""
    print(f"analog-edge: error: {exc}", file=sys.stderr)
    return 2


def print_report(out: Path) -> None:
    """The run's terminal table, then where its report.json is."""
    print((out / "table.txt").read_text(), end="")
    print(f"report: {out / 'report.json'}")


def link_latest(run: Path, link: Path) -> None:
    """Point ``link`` at ``run`` (relative, replaced atomically), so "the latest" is one fixed path."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(run, link.parent))
    os.replace(tmp, link)
