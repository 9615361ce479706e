"""Shared argument checks for the simulator: one-line ValueErrors naming the field, the value and what is allowed.

A leaf module (imports nothing of the project) so every analog module can use it without cycles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def real(name: str, value: Any) -> float:
    """A real number (int or float, not bool, not NaN) as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name}: got {value!r}, must be a number")
    return float(value)


def finite_number(name: str, value: Any, low: float, *, strict: bool = False, high: float | None = None) -> float:
    """A finite number >= low (> low when strict, <= high when given) as float."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if strict else value >= low) and (high is None or value <= high)
    if not ok:
        rel = ">" if strict else ">="
        upper = f" and <= {high}" if high is not None else ""
        raise ValueError(f"{name}: got {value!r}, must be a finite number {rel} {low}{upper}")
    return float(value)


def positive_int(name: str, value: Any) -> int:
    """An int >= 1 (bool is rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: got {value!r}, must be an integer >= 1")
    return value


def choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """One of the allowed names; the error lists them sorted."""
    options = sorted(allowed)
    if value not in options:
        raise ValueError(f"{name}: got {value!r}, must be one of {', '.join(options)}")
    return value
