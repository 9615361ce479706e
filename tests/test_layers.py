"""Every module of a package laid out in layers (pyproject.toml, [tool.importlinter]) sits in one layer:
import-linter only constrains the modules a contract names, so a new module left out of its contract
could import upward unchecked."""
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALL_CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
CONTRACTS = [c for c in ALL_CONTRACTS if c["type"] == "layers" and c.get("containers")]
INDEPENDENT = [c for c in ALL_CONTRACTS if c["type"] == "independence"]


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


@pytest.mark.parametrize("contract", INDEPENDENT, ids=[c["id"] for c in INDEPENDENT])
def test_every_module_of_an_independent_package_is_named(contract):
    named = set(contract["modules"])
    container = {m.rsplit(".", 1)[0] for m in named}
    assert len(container) == 1, f"{contract['id']}: modules of more than one package"
    package = container.pop()
    missing = sorted(m for m in (f"{package}.{name}" for name in _members(package)) if m not in named)
    assert not missing, f"{contract['id']}: modules named in no contract: {missing}"
