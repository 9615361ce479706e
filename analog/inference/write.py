"""Writing trained weights onto the tiles of a model that goes on training (e.g. a pretrained
shared initialization handed to every client): each tile's target weights pass through a noise
model's programming step (``NoiseModel.program``, the same protocol ``deploy`` uses), the result is
written to the devices (clipped to their bounds), and the tiles' training state (Tiki-Taka's fast
array, references) starts from it as after any ``set_weights``.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from analog._rng import make_generator, mix_seed
from analog.inference.noise import NoiseModel, WeightNoise
from analog.layers import AnalogConv2d, AnalogLinear
from analog.validation import check_instance, check_int

_WRITE = 0x9A4


@torch.no_grad()
def program_weights(model: nn.Module, state: Mapping[str, Tensor], chip: NoiseModel | None = None,
                    seed: int = 0) -> int:
    """Program ``state`` (the state dict of the same architecture, digital or analog) onto
    ``model``'s analog layers in place; digital parameters (a digital bias, non-analog layers) are
    copied exactly. ``chip`` is the programming noise (``WeightNoise(eta=0.05)`` by default: std
    0.05 x std(W) per tile), seeded per tile by mix(seed, tile index). Returns the tiles written."""
    chip = WeightNoise(eta=0.05) if chip is None else chip
    check_instance("chip", chip, NoiseModel, "a noise model (inference.WeightNoise, PCMLike, ...)")
    check_int("seed", seed, 0)
    own = model.state_dict()
    missing = sorted(k for k in set(own) - set(state) if ".tile." not in k)   # tile internals are not weights
    if missing:
        raise ValueError(f"state: has no {missing[0]!r} (not this model's architecture)")
    for name, value in state.items():
        if name in own and tuple(own[name].shape) != tuple(value.shape):
            raise ValueError(f"state: {name!r} has shape {tuple(value.shape)}, the model's is {tuple(own[name].shape)}")
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (AnalogLinear, AnalogConv2d))]
    written: set[str] = set()
    for index, (name, layer) in enumerate(layers):
        w = state[f"{name}.weight"].to(layer.weight)
        b = state.get(f"{name}.bias") if layer.bias is not None else None
        b = None if b is None else b.to(layer.weight)
        target = w.reshape(w.shape[0], -1)
        if layer.analog_bias and b is not None:
            target = torch.cat([target, b[:, None]], dim=1)
        noisy = chip.program(target, make_generator(mix_seed(seed, index, _WRITE))).weights().to(target)
        if layer.analog_bias and b is not None:
            noisy, b = noisy[:, :-1], noisy[:, -1]
        layer.set_weights(noisy.reshape(w.shape), b)
        written |= {f"{name}.weight", f"{name}.bias"}
    rest = {k: v for k, v in state.items() if k not in written and k in own}
    if rest:
        model.load_state_dict({**model.state_dict(), **rest})
    return len(layers)
