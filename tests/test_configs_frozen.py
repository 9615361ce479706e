"""Every config class of the project is frozen: a config is read by many phases, processes and
devices, and one that a phase could change in place would make a run depend on the order they ran in.

The classes are found, not listed: every dataclass whose name ends in Config, Settings or Spec in
any module of the project's packages, so a new mutable config fails here.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

PACKAGES = ("analog", "common", "edge_client", "server", "fleet")
SUFFIXES = ("Config", "Settings", "Spec")


def _config_classes() -> dict[str, type]:
    found: dict[str, type] = {}
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules = [package] + [importlib.import_module(info.name)
                               for info in pkgutil.walk_packages(package.__path__, f"{name}.")
                               if not info.name.endswith("__main__")]
        for module in modules:
            for attr, obj in vars(module).items():
                if (inspect.isclass(obj) and obj.__module__ == module.__name__ and dataclasses.is_dataclass(obj)
                        and attr.endswith(SUFFIXES)):
                    found[f"{module.__name__}.{attr}"] = obj
    return found


CONFIGS = _config_classes()


def test_the_walk_finds_the_known_configs():
    # a walk that silently found nothing would pass the test below for any code
    for name in ("analog.config.TileConfig", "edge_client.config.EdgeConfig", "edge_client.config.DefenseConfig",
                 "server.config.ClassifierConfig", "server.config.ServerConfig", "fleet.config.FleetConfig",
                 "fleet.config.FedAvgConfig", "fleet.config.PrivacyConfig", "fleet.config.EnergyConfig"):
        assert name in CONFIGS


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_is_frozen(name):
    assert CONFIGS[name].__dataclass_params__.frozen, f"{name} is a mutable dataclass; use @dataclass(frozen=True)"


def test_a_frozen_config_refuses_assignment_and_replace_validates():
    from common.validation import ConfigError
    from fleet.config import FleetConfig

    fleet = FleetConfig(backend="local")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fleet.num_clients = 3
    assert fleet.with_overrides(num_clients=3).num_clients == 3 and fleet.num_clients == 8
    with pytest.raises(ConfigError, match="fleet.num_clients"):
        fleet.with_overrides(num_clients=0)
