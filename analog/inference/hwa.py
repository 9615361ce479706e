"""Hardware-aware (HWA) training: train digital weights with the chip's non-idealities in the loop,
so the model survives deployment (Rasch et al. 2023, "Hardware-aware training for large-scale and
diverse deep learning inference workloads using in-memory computing-based accelerators").

    hwa_model = inference.hardware_aware(model, inference.HWAConfig(weight_noise=WeightNoise(0.1)))
    opt = torch.optim.Adam(hwa_model.parameters())     # any torch optimizer: the weights are digital
    ... train ...
    deployed = analog.deploy(hwa_model, inference.PCMLike(), t_seconds=86400.0)

Every training forward of an HWA layer (1) clips its weights in place at +-k std(W) (k =
``clip_sigma``; the optimizer cannot grow outliers that would waste the conductance range),
(2) draws fresh weight noise (``weight_noise``, additive or relative), and (3) runs the MVM through
the forward periphery (``forward``: DAC, output noise, ADC, bound management, via analog.noisy_mvm).
Gradients flow through the noisy weights; the periphery enters as a straight-through correction
(the forward value is the hardware's, the gradient the one of the noisy-weight matmul), since
rounding has no useful gradient. In eval mode the weights are clean and the periphery stays on.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analog._rng import make_generator, mix_seed
from analog.config import IOConfig
from analog.inference.noise import WeightNoise
from analog.layers import AnalogConv2d, AnalogLinear
from analog.mvm import noisy_mvm
from analog.validation import check_instance, check_int, check_number


@dataclass(frozen=True)
class HWAConfig:
    """weight_noise: injected at every training forward; forward: the periphery of training and of
    the deployed chip; clip_sigma: clip weights at +-k std per layer (None: no clipping); seed: the
    noise streams (layer k uses mix(seed, k))."""

    weight_noise: WeightNoise = field(default_factory=lambda: WeightNoise(eta=0.1))
    forward: IOConfig = field(default_factory=IOConfig)
    clip_sigma: float | None = 2.5
    seed: int = 0

    def __post_init__(self) -> None:
        check_instance("weight_noise", self.weight_noise, WeightNoise, "inference.WeightNoise")
        check_instance("forward", self.forward, IOConfig, "analog.IOConfig")
        if self.clip_sigma is not None:
            check_number("clip_sigma", self.clip_sigma, 0, lo_open=True, note=" or None")
        check_int("seed", self.seed, 0)


class _HWALayer:
    """The HWA forward shared by HWALinear and HWAConv2d (they differ in how x becomes rows)."""

    weight: nn.Parameter
    training: bool
    hwa: HWAConfig
    _hwa_generator: torch.Generator

    def _hwa_setup(self, config: HWAConfig, index: int) -> None:
        self.hwa = config
        self._hwa_generator = make_generator(mix_seed(config.seed, index, 0x4A0A))

    def _training_weight(self) -> Tensor:
        if not self.training:
            return self.weight
        if self.hwa.clip_sigma is not None:
            with torch.no_grad():
                bound = float(self.hwa.clip_sigma * self.weight.std())
                self.weight.clamp_(-bound, bound)
        if self.hwa.weight_noise.eta == 0.0:
            return self.weight
        noise = torch.randn(self.weight.shape, generator=self._hwa_generator).to(self.weight)
        return self.hwa.weight_noise.perturb(self.weight, noise)

    def _rows_mvm(self, rows: Tensor, w2: Tensor) -> Tensor:
        """rows @ w2.T with the forward periphery's value and the noisy-weight matmul's gradient."""
        y = F.linear(rows, w2)
        io = self.hwa.forward
        if io.is_ideal:
            return y
        with torch.no_grad():
            gen = self._periphery_generator(rows.device)
            correction = noisy_mvm(rows.detach(), w2.detach(), io, gen) - y.detach()
        return y + correction

    def _periphery_generator(self, device: torch.device) -> torch.Generator:
        if device.type == "cpu":
            return self._hwa_generator
        seed = int(torch.randint(0, 2**62, (1,), generator=self._hwa_generator).item())
        return make_generator(seed, device)


class HWALinear(nn.Linear, _HWALayer):
    """nn.Linear trained hardware-aware (see the module docstring); bias is digital."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 config: HWAConfig | None = None, index: int = 0) -> None:
        super().__init__(in_features, out_features, bias)
        self._hwa_setup(HWAConfig() if config is None else config, index)

    def forward(self, x: Tensor) -> Tensor:
        w = self._training_weight()
        lead = x.shape[:-1]
        y = self._rows_mvm(x.reshape(-1, self.in_features), w).reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias


class HWAConv2d(nn.Conv2d, _HWALayer):
    """nn.Conv2d trained hardware-aware: every patch is one periphery MVM, as on an analog tile."""

    def __init__(self, *args: Any, config: HWAConfig | None = None, index: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.padding_mode != "zeros":
            raise ValueError("HWAConv2d: supports groups=1 and zero padding only (as AnalogConv2d)")
        self._hwa_setup(HWAConfig() if config is None else config, index)

    def forward(self, x: Tensor) -> Tensor:
        w = self._training_weight()
        if self.padding == "same":
            raise ValueError("HWAConv2d: padding='same' is not supported; give the padding explicitly")
        n, _, h, wd = x.shape
        kh, kw = self.kernel_size
        h_out = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        w_out = (wd + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)     # (N, C*kh*kw, L)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        y = self._rows_mvm(rows, w.reshape(self.out_channels, -1))
        y = y.reshape(n, h_out * w_out, self.out_channels).transpose(1, 2).reshape(n, self.out_channels, h_out, w_out)
        return y if self.bias is None else y + self.bias[None, :, None, None]


def _hwa_layer(mod: nn.Module, config: HWAConfig, index: int) -> nn.Module | None:
    """The HWA twin of a Linear/Conv2d/AnalogLinear/AnalogConv2d with its weights, or None."""
    if isinstance(mod, (AnalogLinear, nn.Linear)) and not isinstance(mod, HWALinear):
        new = HWALinear(mod.in_features, mod.out_features, mod.bias is not None, config, index)
        w, b = (mod.get_weights(), mod.get_bias()) if isinstance(mod, AnalogLinear) else (mod.weight, mod.bias)
    elif isinstance(mod, (AnalogConv2d, nn.Conv2d)) and not isinstance(mod, HWAConv2d):
        padding = mod.padding
        if isinstance(mod, AnalogConv2d) and mod.same_padding:
            raise ValueError("model: AnalogConv2d with padding='same' has no HWA twin; use explicit padding")
        new = HWAConv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, padding, mod.dilation,
                        bias=mod.bias is not None, config=config, index=index)
        w, b = (mod.get_weights(), mod.get_bias()) if isinstance(mod, AnalogConv2d) else (mod.weight, mod.bias)
    else:
        return None
    with torch.no_grad():
        new.weight.copy_(w.detach())
        if b is not None:
            new.bias.copy_(b.detach())
    device = w.device
    return new.to(device=device, dtype=w.dtype)


def hardware_aware(model: nn.Module, config: HWAConfig | None = None) -> nn.Module:
    """A copy of ``model`` whose Linear/Conv2d (digital or analog) layers are HWA layers with the same
    weights; train it with any torch optimizer, then ``analog.deploy`` it. ``model`` is not changed."""
    config = HWAConfig() if config is None else config
    check_instance("config", config, HWAConfig, "inference.HWAConfig")
    check_instance("model", model, nn.Module, "a torch.nn.Module")
    model = copy.deepcopy(model)
    single = _hwa_layer(model, config, 0)
    if single is not None:
        return single
    names = [name for name, mod in model.named_modules() if name and _hwa_layer_kind(mod)]
    if not names:
        raise ValueError("model: has no Linear/Conv2d layers to train hardware-aware")
    for index, name in enumerate(names):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _hwa_layer(getattr(parent, child), config, index))
    return model


def _hwa_layer_kind(mod: nn.Module) -> bool:
    return isinstance(mod, (nn.Linear, nn.Conv2d, AnalogLinear, AnalogConv2d)) and not isinstance(
        mod, (HWALinear, HWAConv2d))
