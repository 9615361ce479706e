"""analog.inference: deploying trained models on noisy, drifting inference chips (docs/design.md §2.7).

    from analog import inference
    chip = inference.PCMLike()                  # published PCM statistics (see its docstring)
    awgn = inference.WeightNoise(eta=0.1)       # std = eta * std(W) per layer
    deployed = analog.deploy(model, chip, t_seconds=86400.0, compensation=True, seed=0)
    hwa = inference.hardware_aware(model, inference.HWAConfig())   # train with any torch optimizer

Modules: ``noise`` (the program/drift/read protocol, PCMLike, WeightNoise), ``compensation``
(global and per-column drift compensation), ``hwa`` (hardware-aware training layers), ``deploy``
(program a copy, evaluate it at any time after programming), ``write`` (program trained weights onto
a model that goes on training, e.g. a pretrained initialization).
"""
from analog.inference.compensation import ColumnDriftCompensation, GlobalDriftCompensation
from analog.inference.deploy import ProgrammedModel, analog_tiles, deploy, program
from analog.inference.hwa import HWAConfig, HWAConv2d, HWALinear, hardware_aware
from analog.inference.noise import (Conductances, NoiseModel, PCMLike, WeightNoise, noise_model_from_dict)
from analog.inference.write import program_weights

__all__ = [
    "ColumnDriftCompensation", "Conductances", "GlobalDriftCompensation", "HWAConfig", "HWAConv2d", "HWALinear",
    "NoiseModel", "PCMLike", "ProgrammedModel", "WeightNoise", "analog_tiles", "deploy", "hardware_aware",
    "noise_model_from_dict", "program", "program_weights",
]
