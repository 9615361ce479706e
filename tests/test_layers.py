"""Every module of a package laid out in layers (pyproject.toml, [tool.importlinter]) sits in one layer:
import-linter only constrains the modules a contract names, so a new module left out of its contract
could import upward unchecked."""
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = [c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
             if c["type"] == "layers" and c.get("containers")]


def _members(container: str) -> set[str]:
    folder = ROOT.joinpath(*container.split("."))
    return {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | \
           {p.parent.name for p in folder.glob("*/__init__.py")}


@pytest.mark.parametrize("contract", CONTRACTS, ids=[c["id"] for c in CONTRACTS])
def test_every_module_of_a_layered_package_is_in_a_layer(contract):
    for container in contract["containers"]:
        named = [m.strip() for layer in contract["layers"] for m in layer.split("|")]
        assert len(named) == len(set(named)), f"{contract['id']}: a module is named in two layers"
        missing = sorted(_members(container) - set(named))
        assert not missing, f"{contract['id']}: {container} modules in no layer: {missing}"
        stale = sorted(set(named) - _members(container))
        assert not stale, f"{contract['id']}: layers name modules {container} no longer has: {stale}"
