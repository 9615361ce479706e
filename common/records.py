"""Frozen dataclasses as the contracts between packages, and their JSON form.

What one package hands another (an edge device's upload summary, its evaluation, a task message)
is a frozen dataclass deriving from `Record`: fields with types instead of string keys. Where a
record crosses a process or the network (a Flower message, a summary file) it travels as JSON:
`to_dict`/`to_json` write the plain form, `from_dict`/`from_json` read it back and check every
field on the way in, so a garbled message fails with one line naming the field
(`upload summary.n_train: got 'x', must be an integer`), not with a KeyError deep in a phase.

Field metadata shapes the plain form where an existing file format asks for it:
`flatten(...)` writes a nested record's fields at the outer level, `omit_none(...)` leaves a None
field out. The types understood are those the contracts use: bool, int, float, str, None unions,
tuples (`tuple[X, ...]`), dicts (`dict[K, V]`, int keys restored from JSON's strings), nested records
and `Any` (taken as it is).
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar, Union

from common.errors import ContractError

R = TypeVar("R", bound="Record")

_FLATTEN = "record_flatten"
_OMIT_NONE = "record_omit_none"


def flatten(**kwargs: Any) -> Any:
    """A nested-record field written at the outer level of the plain form (its keys beside the others)."""
    return dataclasses.field(metadata={_FLATTEN: True}, **kwargs)


def omit_none(default: Any = None) -> Any:
    """A field left out of the plain form while it is None (and read back as None when absent)."""
    return dataclasses.field(default=default, metadata={_OMIT_NONE: True})


class Record:
    """Base of the contract dataclasses (declare them `@dataclass(frozen=True)`); `WHAT` names the
    record in error messages."""

    WHAT = "record"

    def to_dict(self) -> dict[str, Any]:
        """The plain (JSON-able) form, keys in field order."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get(_OMIT_NONE) and value is None:
                continue
            if f.metadata.get(_FLATTEN):
                out.update(value.to_dict())
            else:
                out[f.name] = _plain(value)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str | None = None) -> R:
        """The record a plain form describes; `ContractError` naming the first wrong field."""
        where = where or cls.WHAT
        if not isinstance(data, dict):
            raise ContractError(f"{where}: got {type(data).__name__}, must be a JSON object")
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.metadata.get(_FLATTEN):
                kwargs[f.name] = hints[f.name].from_dict(data, where)
                continue
            if f.name not in data:
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    continue
                raise ContractError(f"{where}.{f.name}: missing")
            kwargs[f.name] = read_value(f"{where}.{f.name}", data[f.name], hints[f.name])
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[R], text: str | bytes, where: str | None = None) -> R:
        where = where or cls.WHAT
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ContractError(f"{where}: not JSON ({exc})") from None
        return cls.from_dict(data, where)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def read_value(name: str, value: Any, tp: Any) -> Any:
    """`value` checked against type `tp` (and converted: lists to tuples, JSON's string keys to int)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return read_value(name, value, option)
            except ContractError as exc:
                errors.append(exc)
        raise errors[0]
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value, name)
    if tp is bool:
        if not isinstance(value, bool):
            raise ContractError(f"{name}: got {value!r}, must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError(f"{name}: got {value!r}, must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ContractError(f"{name}: got {value!r}, must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ContractError(f"{name}: got {value!r}, must be a string")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ContractError(f"{name}: got {type(value).__name__}, must be a list")
        item = args[0]
        return tuple(read_value(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ContractError(f"{name}: got {type(value).__name__}, must be a JSON object")
        return {_key(name, k, key_tp): read_value(f"{name}.{k}", v, value_tp) for k, v in value.items()}
    raise TypeError(f"{name}: type {tp!r} is not one a Record field may have")


def _key(name: str, key: Any, tp: Any) -> Any:
    if tp is int and isinstance(key, str):
        try:
            return int(key)
        except ValueError:
            raise ContractError(f"{name}: key {key!r}, must be an integer") from None
    return read_value(f"{name} key", key, tp)


__all__ = ["Record", "flatten", "omit_none", "read_value"]
