"""Process memory settings shared by the training processes of every package (server, fleet clients)."""
from __future__ import annotations

import ctypes
import ctypes.util


def keep_heap_warm(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Keep freed megabyte-sized buffers in the process heap instead of returning them to the OS.

    Why: by default glibc serves every allocation above ~128 KiB-32 MiB with a fresh mmap and
    unmaps it on free, so each received chunk, parsed message and SQLite blob binding page-faults
    its memory in again. On a VM a page fault is expensive (benchmarks/ingest.py measures the protobuf
    ceiling with and without a warm heap side by side; figures in README.md). The price is up
    to ``trim_threshold`` bytes of freed memory kept resident. Returns False where mallopt is absent.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
