"""Deploying a trained model onto an inference chip: program once, then evaluate at any time.

    chip = inference.PCMLike()
    deployed = analog.deploy(model, chip, t_seconds=86400.0, compensation=True, seed=0)
    programmed = inference.program(model, chip, seed=0)       # one chip, several times:
    day, year = programmed.at(86400.0), programmed.at(3.15e7)

``model`` is never changed (its weights, outputs and random generators stay bit-identical): the
deployed model is a copy in eval mode whose every Linear/Conv2d is an analog tile. Analog layers
keep their tile config (device, periphery, mapping); digital and HWA layers become tiles of an
ideal-update device with the HWA layer's forward periphery (an ideal one for plain layers), or
the ``forward`` periphery given to deploy for every converted layer. Programming writes each
tile's effective weights through the noise model (seeded per tile: mix(seed, tile index)), drift
and read follow, and drift compensation sets the tile's public output gain (AnalogTile.set_output_scale).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from analog import devices
from analog._rng import make_generator, mix_seed
from analog.config import IOConfig, TileConfig, UpdateConfig
from analog.inference.compensation import GlobalDriftCompensation, resolve
from analog.inference.hwa import HWAConv2d, HWALinear
from analog.inference.noise import Conductances, NoiseModel, PCMLike
from analog.layers import AnalogConv2d, AnalogLinear
from analog.tile import AnalogTile
from analog.validation import check_instance, check_int, check_number

_PROGRAM, _READ, _REFERENCE, _PERIPHERY = 0x9A0, 0x9A1, 0x9A2, 0x9A3


def analog_tiles(model: nn.Module) -> list[AnalogTile]:
    """The analog tiles of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, AnalogTile)]


def _inference_tile_config(forward: IOConfig, seed: int) -> TileConfig:
    return TileConfig(device=devices.Ideal(), forward=forward, backward=IOConfig.ideal(),
                      update=UpdateConfig(pulse_type="none"), seed=seed)


def _to_tiles(model: nn.Module, forward: IOConfig | None, seed: int) -> nn.Module:
    """Replace (in place) every digital/HWA Linear and Conv2d by an analog layer with its weights."""

    def convert(mod: nn.Module, index: int) -> nn.Module | None:
        if isinstance(mod, (AnalogLinear, AnalogConv2d)) or not isinstance(mod, (nn.Linear, nn.Conv2d)):
            return None
        io = forward if forward is not None else (
            mod.hwa.forward if isinstance(mod, (HWALinear, HWAConv2d)) else IOConfig.ideal())
        cfg = _inference_tile_config(io, mix_seed(seed, index, _PERIPHERY))
        with torch.no_grad():
            if isinstance(mod, nn.Linear):
                return AnalogLinear.from_digital(mod, cfg, cfg.seed)
            return AnalogConv2d.from_digital(mod, cfg, cfg.seed)

    whole = convert(model, 0)
    if whole is not None:
        return whole
    targets = [name for name, mod in model.named_modules()
               if name and isinstance(mod, (nn.Linear, nn.Conv2d))]
    for index, name in enumerate(targets):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, convert(getattr(parent, child), index))
    return model


class ProgrammedModel:
    """One programmed chip: the tiles' conductances right after programming; ``at(t)`` evaluates it."""

    def __init__(self, base: nn.Module, chip: NoiseModel, conductances: list[Conductances], seed: int) -> None:
        self._base, self.chip, self.conductances, self.seed = base, chip, conductances, seed

    @torch.no_grad()
    def at(self, t_seconds: float, compensation: bool | GlobalDriftCompensation | None = True) -> nn.Module:
        """A model that computes as the chip does ``t_seconds`` after programming."""
        check_number("t_seconds", t_seconds, 0, note=" (seconds after programming)")
        comp = resolve(compensation)
        model = copy.deepcopy(self._base)
        for index, (tile, g) in enumerate(zip(analog_tiles(model), self.conductances)):
            w_t = self.chip.read(self.chip.drift(g, float(t_seconds)),
                                 make_generator(mix_seed(self.seed, index, _READ)))
            tile.set_weights(w_t, remap=False)          # drift moves conductances; the periphery stays
            tile.set_output_scale(None)
            if comp is not None:
                w_ref = self.chip.read(self.chip.drift(g, 0.0), make_generator(mix_seed(self.seed, index, _REFERENCE)))
                tile.set_output_scale(comp.scale(w_ref, tile.get_weights()))
        return model.eval()


def _check(model: Any, chip: Any, seed: Any) -> None:
    check_instance("model", model, nn.Module, "a torch.nn.Module")
    check_instance("chip", chip, NoiseModel, "a noise model (inference.PCMLike, WeightNoise, ...)")
    check_int("seed", seed, 0)


@torch.no_grad()
def program(model: nn.Module, chip: NoiseModel | None = None, seed: int = 0,
            forward: IOConfig | None = None) -> ProgrammedModel:
    """Program a copy of ``model`` onto a chip (``PCMLike()`` by default); see the module docstring."""
    chip = PCMLike() if chip is None else chip
    _check(model, chip, seed)
    if forward is not None:
        check_instance("forward", forward, IOConfig, "analog.IOConfig or None")
    with torch.random.fork_rng(devices=[]):             # building tiles must not consume the caller's RNG
        base = _to_tiles(copy.deepcopy(model), forward, seed)
    tiles = analog_tiles(base)
    if not tiles:
        raise ValueError("model: has no Linear/Conv2d or analog layers to deploy")
    conductances = []
    for index, tile in enumerate(tiles):
        tile.generator(tile.analog_weight().device).manual_seed(mix_seed(seed, index, _PERIPHERY))
        conductances.append(chip.program(tile.get_weights(), make_generator(mix_seed(seed, index, _PROGRAM))))
    return ProgrammedModel(base, chip, conductances, seed)


def deploy(model: nn.Module, chip: NoiseModel | None = None, t_seconds: float = 0.0,
           compensation: bool | GlobalDriftCompensation | None = True, seed: int = 0,
           forward: IOConfig | None = None) -> nn.Module:
    """A copy of ``model`` as the chip computes ``t_seconds`` after programming; ``model`` is untouched."""
    return program(model, chip, seed, forward).at(t_seconds, compensation)
