"""The project's one error base, and the error a garbled contract record raises.

Every exception class the project defines derives from `AnalogEdgeError` (a test walks the
packages), so a command catches the base once and prints its one-line message. Each class also
keeps the built-in base its callers relied on (`ConfigError` is a `ValueError`, `FleetError` a
`RuntimeError`), so `except ValueError` keeps working. `analog/`, usable alone, defines no
exception classes (it raises ValueError and TypeError, as torch does): see docs/design.md,
Conventions.
"""
from __future__ import annotations


class AnalogEdgeError(Exception):
    """Base of every error this project raises on purpose; the message is one line naming the cause."""


class ContractError(AnalogEdgeError, ValueError):
    """A record crossing a package or process boundary (a message, a summary file) is malformed;
    the message names the field, the value and what is allowed."""
