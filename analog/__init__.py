"""analog: a PyTorch simulator of analog in-memory computing tiles for training (docs/design.md §2).

    import analog
    from analog import devices, algorithms
    cfg = analog.TileConfig(device=devices.SoftBounds(), algorithm=algorithms.AnalogSGD())
    model = analog.convert_to_analog(torch_model, cfg)
    opt = analog.AnalogOptimizer(model.parameters(), lr=0.05)
"""
from analog import algorithms, devices, rounding
from analog.config import IOConfig, MappingConfig, TileConfig, UpdateConfig
from analog.mvm import noisy_mvm
from analog.pulsed import PulsedArray, PulseStats
from analog.tile import AnalogTile
from analog.layers import AnalogConv2d, AnalogLinear, AnalogParameter, tile_of
from analog.convert import convert_to_analog
from analog.optim import AnalogOptimizer
from analog import inference, presets
from analog.inference import deploy
from analog.rounding import quantize_fixed, stochastic_round
from analog._rng import reset_layer_counter

__all__ = [
    "AnalogConv2d", "AnalogLinear", "AnalogOptimizer", "AnalogParameter", "AnalogTile", "IOConfig",
    "MappingConfig", "PulseStats", "PulsedArray", "TileConfig", "UpdateConfig", "algorithms", "convert_to_analog", "deploy",
    "devices",
    "inference", "noisy_mvm", "presets", "quantize_fixed", "reset_layer_counter", "rounding", "stochastic_round", "tile_of",
]
