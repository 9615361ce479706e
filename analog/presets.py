"""Named tile configurations, by name for configs and CLIs (``analog.presets.from_dict({"preset": name})``).

- "ideal":        Ideal device + ideal periphery (nn.Linear + SGD, the digital reference)
- "near-ideal":   ConstantStep dw_min 5e-4, bounds +-1, no variation or noise, ideal periphery:
                  only the stochastic pulse quantization remains
- "default":      TileConfig(): aihwkit reference ConstantStep (dw_min 1e-3, +-0.6, 30% d2d, 30% c2c)
                  + 7/9-bit periphery, out_noise 0.06, out_bound 12 (docs/design.md §2.9)
- "softbounds":   the same with the reference SoftBounds device (strongly asymmetric near the bounds:
                  Analog SGD is biased towards w = 0 here; the case Tiki-Taka & co. address)
- "hwa":          hardware-aware training: Ideal device (float update of digital weights) with the
                  forward non-idealities injected (7/9-bit, out_noise 0.04, w_noise 0.02), ideal
                  backward -- a model that survives deployment on noisy tiles (Rasch et al. 2023)
- "reram-sb", "ecram", "capacitor": published device types (see analog.devices presets) with the
                  default periphery
- "reram-sb-ttv2", "reram-sb-chopped-ttv2", "reram-sb-agad": "reram-sb" training with aihwkit's
                  TTv2ReRamSBPreset / ChoppedTTv2ReRamSBPreset / AGADReRamSBPreset settings (the
                  algorithm presets of analog.algorithms.presets, whose docstrings give the values)
- "default-mapped": "default" with weight mapping (MappingConfig: omega 0.5 per column, re-mapped
                  every 100 steps): every layer's signal sits well above the 0.06 output noise; the
                  re-mapping gives the weights room to grow (measured: docs/design.md §2.6)
- "softbounds-mapped": "softbounds" with omega 0.05 per column: the weights live near the symmetric
                  point, where the soft-bounds asymmetry (Analog SGD's bias) is weak, at the price of a
                  larger output-noise share (omega trades the device's asymmetry against periphery
                  noise; measured: docs/design.md §2.6)
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from analog import devices
from analog.algorithms import presets as algorithm_presets
from analog.config import TileConfig
from analog.periphery import IOConfig, MappingConfig, UpdateConfig
from analog.validation import check_choice


def _near_ideal() -> TileConfig:
    dev = devices.ConstantStep(dw_min=5e-4, w_max=1.0, w_min=-1.0, dw_min_dtod=0.0, dw_min_std=0.0,
                               w_max_dtod=0.0, w_min_dtod=0.0, up_down_dtod=0.0)
    return TileConfig(device=dev, forward=IOConfig.ideal(), backward=IOConfig.ideal(),
                      update=UpdateConfig(desired_bl=31))


PRESETS: dict[str, Callable[[], TileConfig]] = {
    "ideal": TileConfig.ideal_digital,
    "near-ideal": _near_ideal,
    "default": TileConfig,
    "softbounds": lambda: TileConfig(device=devices.SoftBounds()),
    "hwa": lambda: TileConfig(device=devices.Ideal(), forward=IOConfig(out_noise=0.04, w_noise=0.02),
                              backward=IOConfig.ideal(), update=UpdateConfig(pulse_type="none")),
    "reram-sb": lambda: TileConfig(device=devices.ReRAMSoftBounds()),
    "ecram": lambda: TileConfig(device=devices.ECRAM()),
    "capacitor": lambda: TileConfig(device=devices.Capacitor()),
    "reram-sb-ttv2": lambda: TileConfig(device=devices.ReRAMSoftBounds(), algorithm=algorithm_presets.ttv2_reram_sb()),
    "reram-sb-chopped-ttv2": lambda: TileConfig(device=devices.ReRAMSoftBounds(),
                                                algorithm=algorithm_presets.chopped_ttv2_reram_sb()),
    "reram-sb-agad": lambda: TileConfig(device=devices.ReRAMSoftBounds(), algorithm=algorithm_presets.agad_reram_sb()),
    "default-mapped": lambda: TileConfig(mapping=MappingConfig(weight_scaling_omega=0.5, remap_every=100)),
    "softbounds-mapped": lambda: TileConfig(device=devices.SoftBounds(),
                                            mapping=MappingConfig(weight_scaling_omega=0.05)),
}


def tile_config(name: str) -> TileConfig:
    """The named preset TileConfig; ValueError lists the names."""
    check_choice("preset", name, sorted(PRESETS))
    return PRESETS[name]()


def names() -> list[str]:
    return sorted(PRESETS)


def from_dict(data: Mapping[str, Any] | None) -> TileConfig:
    """A TileConfig from a TOML-shaped dict that may name a preset: ``{"preset": name, ...}``
    starts from that preset and the other sections override it; without ``preset`` it is
    ``TileConfig.from_dict``. What configs and CLIs use for their ``analog`` tables."""
    if data is None or not isinstance(data, Mapping) or "preset" not in data:
        return TileConfig.from_dict(data)
    rest = {k: v for k, v in data.items() if k != "preset"}
    return TileConfig.from_dict(rest, base=tile_config(data["preset"]))
