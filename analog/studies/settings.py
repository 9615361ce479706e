"""The shape every study's settings share, and the checks they are validated with.

A study's settings are a frozen dataclass validated on construction, with two presets (``full()``: the
study as specified, ``quick()``: the reduced run its test uses), ``from_dict(data, base)`` overlaying a
TOML-shaped table on a preset (unknown keys are errors that name the key) and ``to_dict()`` giving the
plain dict written to ``config.json``. ``TOML_TABLE`` says where the settings sit in a ``--config``
file: a named table, or None for the file's top level.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar, Protocol, TypeVar

from analog.validation import check_choice, check_instance, check_keys

T = TypeVar("T")


class StudySettings(Protocol):
    """What the study command needs of a study's settings."""

    TOML_TABLE: ClassVar[str | None]

    @classmethod
    def full(cls) -> "StudySettings": ...

    @classmethod
    def quick(cls) -> "StudySettings": ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Any = None) -> "StudySettings": ...

    def to_dict(self) -> dict[str, Any]: ...


def check_subset(name: str, values: tuple, allowed: tuple[str, ...]) -> None:
    if not isinstance(values, (list, tuple)) or not values:
        got = "an empty list" if isinstance(values, (list, tuple)) else repr(values)
        raise ValueError(f"{name}: got {got}, must name at least one of {', '.join(allowed)}")
    for v in values:
        check_choice(name, v, allowed)


def int_list(name: str, values: Any, low: int) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name}: got {values!r}, must be a non-empty list of integers >= {low}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name}: got {v!r} in the list, must be integers >= {low}")
    return tuple(values)


def float_list(name: str, values: Any, low: float, high: float = math.inf) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name}: got {values!r}, must be a non-empty list of numbers in [{low}, {high}]")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and low <= v <= high):
            raise ValueError(f"{name}: got {v!r} in the list, must be finite numbers in [{low}, {high}]")
    return tuple(float(v) for v in values)


def overlay(base: T, data: Mapping[str, Any], what: str, table: str | None = None) -> T:
    """``base`` with the fields ``data`` names replaced (lists become tuples). A field that holds
    settings of its own (a dataclass, e.g. a study's part) takes a table overlaid on the base's, and
    its errors get the field's name in front ("mnist.epochs: ...").

    An unknown key is named with the allowed ones (``check_keys``); ``table`` (default: ``what``) names
    ``data`` in the error when it is not a table."""
    check_instance(table or what, data, Mapping, "a table")
    check_keys("", data, (f.name for f in fields(base)))
    values: dict[str, Any] = {}
    for key, value in data.items():
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            try:
                values[key] = overlay(current, value, type(current).__name__)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{key}.{exc}") from None
        else:
            values[key] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(base, **values)


def plain(obj: Any) -> Any:
    """Dataclasses as dicts and tuples as lists, recursively: what JSON and TOML take."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [plain(v) for v in obj]
    return obj
