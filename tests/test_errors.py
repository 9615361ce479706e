"""One error base: every exception class the project defines (an `Exception`; a signal such as
`fleet.processes.Interrupted` is a KeyboardInterrupt, not an error) derives from `AnalogEdgeError`,
so a command catches it once; each keeps the built-in base its callers relied on. `analog/`, usable alone,
defines none (it raises ValueError / TypeError, as torch does; docs/design.md, Conventions)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from common.errors import AnalogEdgeError

PACKAGES = ["common", "protos", "edge_client", "server", "fleet"]


def _modules(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
    return [n for n in names if not n.endswith("__main__")]


def _exceptions(package: str) -> list[type]:
    found = []
    for name in _modules(package):
        module = importlib.import_module(name)
        found += [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                  if issubclass(obj, Exception) and obj.__module__ == name]
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exception_class_of_the_project_derives_from_the_base(package):
    classes = _exceptions(package)
    assert classes, f"{package}: no exception class found (the walk is broken)"
    outside = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, AnalogEdgeError)]
    assert not outside, f"exception classes not derived from AnalogEdgeError: {outside}"


def test_analog_defines_no_exception_class():
    assert _exceptions("analog") == []


def test_a_signal_is_not_an_error():
    """`fleet.processes.Interrupted` unwinds like Ctrl-C (a KeyboardInterrupt): a handler that
    catches the project's errors must not swallow it."""
    from fleet.processes import Interrupted

    assert issubclass(Interrupted, KeyboardInterrupt) and not issubclass(Interrupted, Exception)


def test_the_built_in_bases_callers_catch_are_kept():
    from common.validation import ConfigError
    from edge_client.data import DataError
    from fleet.errors import FleetError
    from protos.client import UploadError
    from server.store import StoreError

    assert issubclass(ConfigError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(FleetError, RuntimeError) and issubclass(UploadError, RuntimeError)
    assert issubclass(StoreError, RuntimeError)
