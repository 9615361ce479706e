"""Where checkpoints live in a store and which one is current (torch-free: Status and the reload check
read ``latest.json`` without loading torch).

Layout: ``STORE/classifiers/vNNNN/{model.pt,report.json}``; ``classifiers/latest.json`` is replaced
atomically after a version is complete, so readers (Classify) never see half a model.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = "classifiers"
LATEST = "latest.json"
MODEL_FILE = "model.pt"
#: the report fields latest.json repeats, so Status answers without opening a version's report
LATEST_FIELDS = ("version", "held_out_accuracy", "held_out_rows", "trained_rows", "trained_at", "description",
                 "latent_dim", "classes", "client_conditioning", "mode", "checkpoint", "anchor_map")


def checkpoint_root(store_dir: str | Path) -> Path:
    return Path(store_dir) / CHECKPOINT_DIR


def model_path(store_dir: str | Path, version: int) -> Path:
    """The model file of checkpoint ``version`` (it may not exist)."""
    return checkpoint_root(store_dir) / f"v{version:04d}" / MODEL_FILE


def latest_key(store_dir: str | Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of latest.json, a cheap change detector; None when nothing is trained."""
    try:
        st = (checkpoint_root(store_dir) / LATEST).stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def latest_info(store_dir: str | Path) -> dict[str, Any] | None:
    """The current checkpoint's summary (LATEST_FIELDS); None when nothing is trained."""
    try:
        return json.loads((checkpoint_root(store_dir) / LATEST).read_text())
    except FileNotFoundError:
        return None


def reserve_version(store_dir: str | Path) -> tuple[int, Path]:
    """The next free version and its new, empty directory (mkdir is atomic: two trainers never share one)."""
    root = checkpoint_root(store_dir)
    root.mkdir(parents=True, exist_ok=True)
    existing = [int(p.name[1:]) for p in root.glob("v[0-9]*") if p.name[1:].isdigit()]
    version = max(existing, default=0) + 1
    while True:
        vdir = root / f"v{version:04d}"
        try:
            vdir.mkdir()
            return version, vdir
        except FileExistsError:
            version += 1


def publish(store_dir: str | Path, version_dir: Path, report: dict[str, Any]) -> None:
    """Write a version's report and make it the current one; call after its model file is written."""
    (version_dir / "report.json").write_text(json.dumps(report, indent=2))
    root = checkpoint_root(store_dir)
    tmp = root / f".{LATEST}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(json.dumps({k: report[k] for k in LATEST_FIELDS}, indent=2))
    os.replace(tmp, root / LATEST)
