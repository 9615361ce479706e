"""Name registries of config classes (devices, algorithms) and the ``{"type": name, ...}`` tables that
pick one: the lookup and its error messages live here once, so both kinds name fields alike."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, Mapping, TypeVar

from analog.validation import check_choice, check_instance, check_keys

T = TypeVar("T")


def from_type_table(data: Any, registry: Mapping[str, type], kind: str, prefix: str,
                    build: Callable[[Any, dict[str, Any]], T]) -> T:
    """``{"type": name, **kwargs}`` -> ``build(registry[name], kwargs)``; errors name the field.

    Unknown names and keys raise before ``build``; a ValueError/TypeError from ``build`` (the
    dataclass's own validation) is re-raised with ``prefix`` in front.
    """
    section = prefix.rstrip(".")
    check_instance(section or kind, data, Mapping, "a table with a 'type'")
    data = dict(data)
    name = data.pop("type", None)
    check_choice(f"{prefix}type", name, sorted(registry))
    cls = registry[name]
    check_keys(section, data, (f.name for f in fields(cls)))
    try:
        return build(cls, data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{prefix}{exc}") from None
