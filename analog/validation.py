"""Shared argument checks for the simulator: one-line ValueErrors naming the field, the value and what is allowed.

A leaf module (imports nothing of the project) so every analog module can use it without cycles.
The project has one vocabulary of checks: ``check_int``, ``check_number``, ``check_choice``,
``check_bool`` and ``check_keys`` are common/validation.py's functions with the same signatures and
the same messages ("got 40, must be in [1, 32]"); only the exception differs (ValueError here,
ConfigError there). analog keeps its own copy because it is usable alone (docs/design.md,
Conventions); tests/common/test_validation.py holds the two copies to each other. ``check_instance``
and ``check_fields`` are analog's own (its configs take objects and dataclass tables).
Each check returns the value it accepted; ``note`` appends wording to the "must be ..." part (an
alternative such as " or 'off'", or the unit), so a caller keeps its field's exact message.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any


def _bounds(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    """A range as the project words it everywhere: ">= 1", "< 2", "in [1, 32]", "in (0, 1)"."""
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {hi}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def _rule(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    return "" if lo is None and hi is None else " " + _bounds(lo, hi, lo_open, hi_open)


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None, *, note: str = "") -> int:
    """`value` if it is an int (not a bool) in [lo, hi] (either bound may be None).

    A wrong type names the whole rule ("must be an integer >= 1"), a value out of range its bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: got {value!r}, must be an integer{_rule(lo, hi)}{note}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name}: got {value}, must be {_bounds(lo, hi, False, False)}{note}")
    return value


def check_number(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False, finite: bool = True, note: str = "") -> float:
    """`value` as a float if it is a number (not a bool, not NaN; not infinite unless ``finite=False``)
    within the bounds (open ones with ``lo_open`` / ``hi_open``)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
            or (finite and math.isinf(value))):
        what = "a finite number" if finite else "a number"
        raise ValueError(f"{name}: got {value!r}, must be {what}{_rule(lo, hi, lo_open, hi_open)}{note}")
    value = float(value)
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        raise ValueError(f"{name}: got {value}, must be {_bounds(lo, hi, lo_open, hi_open)}{note}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any], *, quote: bool = False) -> Any:
    """`value` if it is one of `choices`; the error lists them in the order given (quoted when ``quote``)."""
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(map(repr if quote else str, choices))
        raise ValueError(f"{name}: got {value!r}, must be one of {listed}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """True or False exactly (1, 0 and strings are rejected)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}: got {value!r}, must be true or false")
    return value


def check_keys(section: str, data: Any, allowed: Iterable[str]) -> Mapping[str, Any]:
    """`data` if it is a table whose keys are all in `allowed` (the error names the first other, sorted)."""
    allowed = set(allowed)
    if not isinstance(data, Mapping):
        raise ValueError(f"{section or 'config'}: got {type(data).__name__}, must be a table")
    unknown = sorted(set(data) - allowed)
    if unknown:
        name = f"{section}.{unknown[0]}" if section else unknown[0]
        raise ValueError(f"{name}: unknown key; allowed keys are {', '.join(sorted(allowed)) or 'none'}")
    return data


def check_instance(name: str, value: Any, cls: type | tuple[type, ...], what: str) -> Any:
    """An instance of ``cls``; the message names the type got and ``what`` is wanted."""
    if not isinstance(value, cls):
        raise ValueError(f"{name}: got {type(value).__name__}, must be {what}")
    return value


def check_fields(section: str, data: Any, cls: type) -> Mapping[str, Any]:
    """``data`` as the TOML table of dataclass ``cls``: its keys are fields of ``cls`` (``check_keys``);
    a value that is no table is named by ``section``, else by the class."""
    check_instance(section or cls.__name__, data, Mapping, "a table")
    return check_keys(section, data, (f.name for f in fields(cls)))
