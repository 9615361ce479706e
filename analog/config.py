"""The whole tile's configuration (TileConfig): device, training algorithm, periphery, update, mapping.

The periphery, update and mapping configs live in the leaf module analog/periphery.py (re-exported
here); named presets (``{"preset": name, ...}``) are resolved by ``analog.presets.from_dict``.
Validated on construction, round-trips through TOML-shaped dicts (``to_dict`` / ``from_dict``).
"""
from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analog.algorithms.base import Algorithm, algorithm_from_dict
from analog.algorithms.presets import resolve as resolve_algorithm_preset
from analog.algorithms.sgd import AnalogSGD
from analog.devices import ConstantStep, Device, Ideal, device_from_dict
from analog.periphery import IOConfig, MappingConfig, UpdateConfig
from analog.validation import check_bool, check_fields, check_instance, check_int

__all__ = ["IOConfig", "MappingConfig", "TileConfig", "UpdateConfig"]

@dataclass(frozen=True)
class TileConfig:
    """Everything one analog tile needs: device, training algorithm, forward/backward periphery, update.

    The defaults are aihwkit's SingleRPUConfig: a ConstantStep device with the reference values
    (dw_min 1e-3, bounds +-0.6, 30% device-to-device and cycle-to-cycle spread) and the reference
    periphery on both passes (7-bit DAC, 9-bit ADC, out_noise 0.06, out_bound 12).
    mapping: weight scaling onto the conductance range with digital output scales (MappingConfig;
    off by default).
    analog_bias: the bias is an extra input column of the tile (input 1, as hardware does) instead of
    a digital vector added after the ADC. seed: tile randomness (device variation, noise, pulses);
    None draws a seed from torch's global RNG, so torch.manual_seed(s) makes a model reproducible.
    """

    device: Device = field(default_factory=ConstantStep)
    algorithm: Algorithm = field(default_factory=AnalogSGD)
    forward: IOConfig = field(default_factory=IOConfig)
    backward: IOConfig = field(default_factory=IOConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    analog_bias: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        check_instance("device", self.device, Device, "an analog.devices.Device")
        check_instance("algorithm", self.algorithm, Algorithm, "an analog.algorithms.Algorithm")
        for name, cls in (("forward", IOConfig), ("backward", IOConfig), ("update", UpdateConfig),
                          ("mapping", MappingConfig)):
            check_instance(name, getattr(self, name), cls, cls.__name__)
        check_bool("analog_bias", self.analog_bias)
        if self.seed is not None:
            check_int("seed", self.seed, 0, note=" or omitted")

    @classmethod
    def ideal_digital(cls, seed: int | None = None) -> "TileConfig":
        """Ideal device + ideal periphery: AnalogLinear then equals nn.Linear and the optimizer plain SGD."""
        return cls(device=Ideal(), forward=IOConfig.ideal(), backward=IOConfig.ideal(),
                   update=UpdateConfig(pulse_type="none"), seed=seed)

    def replace(self, **changes: Any) -> "TileConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device": self.device.to_dict(),
            "algorithm": self.algorithm.to_dict(),
            "forward": self.forward.to_dict(),
            "backward": self.backward.to_dict(),
            "update": self.update.to_dict(),
            "mapping": self.mapping.to_dict(),
            "analog_bias": self.analog_bias,
        }
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    @classmethod
    def from_toml(cls, path: str, table: str | None = None) -> "TileConfig":
        """Load from a TOML file; ``table`` selects a sub-table (dotted, e.g. "classifier.analog")."""
        with open(path, "rb") as fh:
            data: Any = tomllib.load(fh)
        for key in (table.split(".") if table else []):
            if not isinstance(data, Mapping) or key not in data:
                raise ValueError(f"{table}: no such table in {path}")
            data = data[key]
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, base: "TileConfig | None" = None) -> "TileConfig":
        """Build from a TOML-shaped dict: the given sections replace those of ``base`` (default
        TileConfig()). A named preset (``{"preset": name, ...}``) goes through
        ``analog.presets.from_dict``, which owns the names."""
        if data is None:
            return base or cls()
        if isinstance(data, Mapping) and "preset" in data:
            raise ValueError(f"preset: got {data['preset']!r}; named presets are resolved by "
                             "analog.presets.from_dict (TileConfig.from_dict takes explicit sections)")
        check_fields("", data, cls)
        data = dict(data)
        kwargs: dict[str, Any] = {}
        if "device" in data:
            kwargs["device"] = device_from_dict(data["device"], prefix="device.")
        if "algorithm" in data:
            kwargs["algorithm"] = algorithm_from_dict(resolve_algorithm_preset(data["algorithm"], "algorithm."),
                                                      prefix="algorithm.")
        for name in ("forward", "backward"):
            if name in data:
                kwargs[name] = IOConfig.from_dict(data[name], prefix=f"{name}.")
        if "update" in data:
            kwargs["update"] = UpdateConfig.from_dict(data["update"], prefix="update.")
        if "mapping" in data:
            kwargs["mapping"] = MappingConfig.from_dict(data["mapping"], prefix="mapping.")
        for name in ("analog_bias", "seed"):
            if name in data:
                kwargs[name] = data[name]
        return dataclasses.replace(base or cls(), **kwargs)
