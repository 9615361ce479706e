"""convert_to_analog: swap a model's nn.Linear / nn.Conv2d for analog layers (weights carried over)."""
from __future__ import annotations

import copy

from torch import nn

from analog._rng import mix_seed
from analog.config import TileConfig
from analog.layers import AnalogConv2d, AnalogLinear
from analog.validation import check_instance


def convert_to_analog(model: nn.Module, config: TileConfig | None = None, inplace: bool = False,
                      exclude: tuple[str, ...] = ()) -> nn.Module:
    """Return a copy of ``model`` (or the model itself with inplace=True) whose Linear and Conv2d
    layers are analog layers with ``config``, programmed with the digital weights (clipped to the
    device bounds). ``exclude``: qualified module names (as in named_modules) to keep digital.

    Seeds: with config.seed set, layer k (in named_modules order) gets mix(config.seed, k), so the
    conversion is reproducible; otherwise each tile draws its seed from torch's global RNG.
    """
    config = TileConfig() if config is None else config
    check_instance("config", config, TileConfig, "analog.TileConfig")
    check_instance("model", model, nn.Module, "a torch.nn.Module")
    if not inplace:
        model = copy.deepcopy(model)
    if isinstance(model, (nn.Linear, nn.Conv2d)) and not isinstance(model, (AnalogLinear, AnalogConv2d)):
        return _convert_one(model, config, 0)
    targets = [(name, mod) for name, mod in model.named_modules()
               if type(mod) in (nn.Linear, nn.Conv2d) and name not in exclude]
    for index, (name, mod) in enumerate(targets):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _convert_one(mod, config, index))
    return model


def _convert_one(mod: nn.Module, config: TileConfig, index: int) -> nn.Module:
    seed = None if config.seed is None else mix_seed(config.seed, index)
    if isinstance(mod, nn.Linear):
        return AnalogLinear.from_digital(mod, config, seed)
    return AnalogConv2d.from_digital(mod, config, seed)
