"""Names every part of a fleet run agrees on: a partition's client id, the files of a run folder and
the run folders themselves.

They live here, below every fleet package, because the run's phases, the privacy attacks and the
inference-chip phase all name the same clients and read the same files.
"""
from __future__ import annotations

import time
from pathlib import Path

PRETRAINED_FILE = "pretrained-autoencoder.pt"   # the server's copy, in its run folder (devices get a message)


def client_name(partition_id: int) -> str:
    """The client_id a partition registers under (stable, so reruns map to the same rows)."""
    return f"client-{partition_id:03d}"


def new_run_dir(parent: Path, name: str) -> Path:
    """A folder of its own for one run, ``parent/name-YYYYmmdd-HHMMSS`` (``-2``, ``-3``... when two
    start in the same second), created now so no other run can take it."""
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 1000):
        path = parent / (stem if i == 1 else f"{stem}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: no free run folder for {stem}")
