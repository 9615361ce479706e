"""Shared argument checks for the simulator: one-line ValueErrors naming the field, the value and what is allowed.

A leaf module (imports nothing of the project) so every analog module can use it without cycles.
The messages are the project's one format (common/validation.py words ranges the same way:
"got 40, must be in [1, 32]"; a test holds the two to it); analog keeps its own copy because it is
usable alone (docs/design.md, Conventions).
Each check returns the value it accepted; ``note`` appends wording to the "must be ..." part (an
alternative such as " or 'off'", or the unit), so a caller keeps its field's exact message.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _bounds(low: float | None, strict: bool, high: float | None, high_strict: bool) -> str:
    """A range as the project words it everywhere (common/validation.py too): ">= 1", "< 2",
    "in [1, 32]", "in (0, 1)"; an interval when both bounds are given."""
    if high is None:
        return f"{'>' if strict else '>='} {low}"
    if low is None:
        return f"{'<' if high_strict else '<='} {high}"
    return f"in {'(' if strict else '['}{low}, {high}{')' if high_strict else ']'}"


def real(name: str, value: Any, *, finite: bool = False, what: str | None = None) -> float:
    """A real number (int or float, not bool, not NaN; not infinite when ``finite``) as float.

    ``what`` words the "must be ..." part when the caller checks a range next ("a number >= 0")."""
    if not _is_number(value) or math.isnan(value) or (finite and math.isinf(value)):
        what = what or ("a finite number" if finite else "a number")
        raise ValueError(f"{name}: got {value!r}, must be {what}")
    return float(value)


def number(name: str, value: Any, low: float, *, strict: bool = False, high: float | None = None,
           finite: bool = True, note: str = "", what: str | None = None) -> float:
    """A number >= low (> low when strict, <= high when given; finite unless ``finite=False``) as float;
    one message for a wrong type and a value out of range (``what`` words its "must be ..." part)."""
    ok = _is_number(value) and not math.isnan(value) and (not finite or math.isfinite(value))
    if ok:
        ok = (value > low if strict else value >= low) and (high is None or value <= high)
    if not ok:
        what = what or f"a {'finite ' if finite else ''}number {_bounds(low, strict, high, False)}{note}"
        raise ValueError(f"{name}: got {value!r}, must be {what}")
    return float(value)


def finite_number(name: str, value: Any, low: float, *, strict: bool = False, high: float | None = None,
                  note: str = "") -> float:
    """A finite number >= low (> low when strict, <= high when given) as float."""
    return number(name, value, low, strict=strict, high=high, note=note)


def in_range(name: str, value: Any, low: float | None = None, *, strict: bool = False, high: float | None = None,
             high_strict: bool = False, note: str = "") -> Any:
    """A value already known to be a number, within the bounds given (None = unbounded on that side);
    the message states the bounds only ("got 40, must be in [1, 32]")."""
    bad = low is not None and (value <= low if strict else value < low)
    bad = bad or (high is not None and (value >= high if high_strict else value > high))
    if bad:
        raise ValueError(f"{name}: got {value}, must be {_bounds(low, strict, high, high_strict)}{note}")
    return value


def integer(name: str, value: Any, low: int | None = None, *, high: int | None = None, note: str = "") -> int:
    """An int (bool is rejected) >= low and <= high when given; with neither, any int."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok:
        ok = (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        rule = f" {_bounds(low, False, high, False)}" if low is not None or high is not None else ""
        raise ValueError(f"{name}: got {value!r}, must be an integer{rule}{note}")
    return value


def positive_int(name: str, value: Any) -> int:
    """An int >= 1 (bool is rejected)."""
    return integer(name, value, 1)


def boolean(name: str, value: Any) -> bool:
    """True or False exactly (1, 0 and strings are rejected)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}: got {value!r}, must be true or false")
    return value


def instance(name: str, value: Any, cls: type | tuple[type, ...], what: str) -> Any:
    """An instance of ``cls``; the message names the type got and ``what`` is wanted."""
    if not isinstance(value, cls):
        raise ValueError(f"{name}: got {type(value).__name__}, must be {what}")
    return value


def choice(name: str, value: Any, allowed: Iterable[str], *, sort: bool = True, quote: bool = False) -> str:
    """One of the allowed names; the error lists them (sorted unless ``sort=False``, in quotes when ``quote``)."""
    options = sorted(allowed) if sort else list(allowed)
    if value not in options:
        listed = ", ".join(map(repr, options) if quote else options)
        raise ValueError(f"{name}: got {value!r}, must be one of {listed}")
    return value


def known_keys(data: Mapping[str, Any], allowed: Iterable[str], owner: str, *, prefix: str = "",
               none: str = "") -> None:
    """Every key of ``data`` is allowed; else the first unknown one (sorted) is named with the allowed
    ones ("{prefix}{key}: unknown key for {owner}; allowed: a, b", ``none`` when nothing is)."""
    allowed = set(allowed)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{prefix}{unknown[0]}: unknown key for {owner}; allowed: {', '.join(sorted(allowed)) or none}")


def fields_table(cls: type, data: Any, *, prefix: str = "", what: str = "a table") -> Mapping[str, Any]:
    """``data`` as the TOML table of dataclass ``cls``: a mapping whose keys are all fields of ``cls``."""
    instance(prefix or cls.__name__, data, Mapping, what)
    known_keys(data, (f.name for f in fields(cls)), cls.__name__, prefix=prefix)
    return data
