"""The layout a newcomer meets: small package folders, and fleet's packages exporting their public names."""
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analog", "common", "protos", "edge_client", "server", "fleet")
MAX_MODULES = 16
FLEET_PACKAGES = sorted(p.parent.name for p in (ROOT / "fleet").glob("*/__init__.py"))


def _folders() -> list[Path]:
    return [init.parent for top in PACKAGES for init in sorted((ROOT / top).rglob("__init__.py"))]


@pytest.mark.parametrize("folder", _folders(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_package_folder_holds_more_than_16_modules(folder):
    modules = sorted(p.name for p in folder.glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= MAX_MODULES, f"{folder.relative_to(ROOT)}: {len(modules)} modules, cut it by job"


@pytest.mark.parametrize("name", FLEET_PACKAGES)
def test_each_fleet_package_exports_its_public_names(name):
    package = importlib.import_module(f"fleet.{name}")
    exported = getattr(package, "__all__", None)
    assert exported, f"fleet.{name}: no __all__ in its __init__"
    missing = [n for n in exported if not hasattr(package, n)]
    assert not missing, f"fleet.{name}.__all__ names what it does not define: {missing}"
    assert len(set(exported)) == len(exported), f"fleet.{name}.__all__ names a name twice"
