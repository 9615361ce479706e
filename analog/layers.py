"""AnalogLinear and AnalogConv2d: nn.Modules that route tensors to an AnalogTile and back.

The autograd Function runs the forward MVM on the tile, and in backward the backward MVM (W^T d)
plus recording (x, d) for the AnalogOptimizer. weight/bias are AnalogParameters: ordinary
Parameters (so model.parameters() works) that mirror the tile's effective
weights and carry ``analog_tile``, which tells the optimizer to pulse the tile instead.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analog.config import TileConfig
from analog.tile import AnalogTile, patch_rows
from analog.validation import check_instance, check_int


#: also write d^T x into the analog weights' .grad (for inspection, e.g. gradient norms); the
#: AnalogOptimizer never reads it. Off by default: it is a digital matmul the hardware does not do.
FILL_WEIGHT_GRAD = False


class AnalogParameter(nn.Parameter):
    """A Parameter that mirrors an analog tile (``.analog_tile``); survives deepcopy with its tile."""

    def __new__(cls, data: Tensor, tile: AnalogTile | None = None, requires_grad: bool = True) -> "AnalogParameter":
        param = super().__new__(cls, data, requires_grad)
        param.analog_tile = tile
        return param

    def __deepcopy__(self, memo: dict) -> "AnalogParameter":
        if id(self) in memo:
            return memo[id(self)]
        result = type(self)(self.data.clone(memory_format=torch.preserve_format), None, self.requires_grad)
        memo[id(self)] = result
        result.analog_tile = copy.deepcopy(self.analog_tile, memo)
        return result

    def __repr__(self) -> str:
        return "AnalogParameter containing:\n" + super().__repr__()


def tile_of(param: Tensor) -> AnalogTile | None:
    """The analog tile a parameter mirrors, or None for a digital parameter."""
    return getattr(param, "analog_tile", None)


class _TileMVM(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, tile: AnalogTile,
                analog_bias: bool) -> Tensor:
        if analog_bias:
            x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        ctx.tile, ctx.analog_bias, ctx.n_in = tile, analog_bias, weight.shape[1] if weight.dim() == 2 else None
        ctx.weight_shape = weight.shape
        ctx.save_for_backward(x)
        return tile.forward_mvm(x)

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        tile: AnalogTile = ctx.tile
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = tile.backward_mvm(grad_y)
            if ctx.analog_bias:
                grad_x = grad_x[:, :-1]
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # the weight gradient stays in the tile as (x, d) for the pulsed update; .grad is only
            # filled when asked for (analog.layers.FILL_WEIGHT_GRAD), as it costs a digital matmul
            tile.record(x, grad_y)
            if FILL_WEIGHT_GRAD:
                full = grad_y.t() @ x
                if ctx.analog_bias:
                    grad_b = full[:, -1] if ctx.needs_input_grad[2] else None
                    full = full[:, :-1]
                grad_w = full.reshape(ctx.weight_shape) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, grad_b, None, None


#: col2im as kh*kw strided adds beats F.fold's from this many (padded) input-gradient elements on
_FOLD_ADDS_NUMEL = 1 << 14


class ConvGeometry:
    """Kernel, dilation, padding, stride and the output size of one conv call: im2col / col2im."""

    def __init__(self, kernel: tuple[int, int], dilation: tuple[int, int], padding: tuple[int, int],
                 stride: tuple[int, int], size: tuple[int, int]) -> None:
        self.kernel, self.dilation, self.padding, self.stride, self.size = kernel, dilation, padding, stride, size
        self.out = tuple((size[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                         for i in (0, 1))

    def unfold(self, x: Tensor) -> Tensor:
        """F.unfold(x) (N, C*kh*kw, L) as one strided copy of the padded image (the same values,
        several times faster than aten's im2col on CPU)."""
        (kh, kw), (dh, dw), (ph, pw), (sh, sw) = self.kernel, self.dilation, self.padding, self.stride
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        n, c = x.shape[:2]
        s_n, s_c, s_h, s_w = x.stride()
        view = x.as_strided((n, c, kh, kw, *self.out), (s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))
        return view.reshape(n, c * kh * kw, self.out[0] * self.out[1])

    def fold(self, cols: Tensor) -> Tensor:
        """F.fold(cols) back to (N, C, H, W), F.unfold's adjoint (summing every patch's gradient into
        the pixels it read): kh*kw strided adds on large inputs, in the order col2im adds them."""
        (kh, kw), (dh, dw), (ph, pw), (sh, sw) = self.kernel, self.dilation, self.padding, self.stride
        (h, w), (ho, wo) = self.size, self.out
        n, c = cols.shape[0], cols.shape[1] // (kh * kw)
        if n * c * (h + 2 * ph) * (w + 2 * pw) < _FOLD_ADDS_NUMEL:
            return F.fold(cols, self.size, self.kernel, self.dilation, self.padding, self.stride)
        out = cols.new_zeros((n, c, h + 2 * ph, w + 2 * pw))
        patches = cols.reshape(n, c, kh, kw, ho, wo)
        for i in range(kh):
            for j in range(kw):
                out[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw] += patches[:, :, i, j]
        return out[:, :, ph: ph + h, pw: pw + w]


class _TileConvMVM(torch.autograd.Function):
    """_TileMVM for a conv layer: image -> patches (im2col) -> tile MVMs in the patches' layout
    (N, in, L) -> (N, out, L), no transposes; backward: the backward MVM per patch, then col2im.
    (x, d) are recorded as rows (one per patch) for the update, or as patches for an algorithm that
    takes them (AlgorithmState.takes_patches)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, tile: AnalogTile,
                analog_bias: bool, geometry: ConvGeometry) -> Tensor:
        cols = geometry.unfold(x)
        if analog_bias:
            cols = torch.cat([cols, torch.ones_like(cols[:, :1])], dim=1)
        ctx.tile, ctx.analog_bias, ctx.weight_shape, ctx.geometry = tile, analog_bias, weight.shape, geometry
        ctx.save_for_backward(cols)
        return tile.forward_mvm(cols, channels=True)

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        (cols,) = ctx.saved_tensors
        tile: AnalogTile = ctx.tile
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_cols = tile.backward_mvm(grad_y, channels=True)
            if ctx.analog_bias:
                grad_cols = grad_cols[:, :-1]
            grad_x = ctx.geometry.fold(grad_cols)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            if tile.takes_patches:
                tile.record(cols, grad_y)
            else:
                tile.record(patch_rows(cols), patch_rows(grad_y))
            if FILL_WEIGHT_GRAD:
                x, d = patch_rows(cols), patch_rows(grad_y)
                full = d.t() @ x
                if ctx.analog_bias:
                    grad_b = full[:, -1] if ctx.needs_input_grad[2] else None
                    full = full[:, :-1]
                grad_w = full.reshape(ctx.weight_shape) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, grad_b, None, None, None


class _AnalogLayer(nn.Module):
    """Shared plumbing: tile creation, parameter mirroring, get/set weights."""

    tile: AnalogTile

    def _setup(self, out_features: int, tile_in: int, weight_shape: tuple[int, ...], bias: bool,
               config: TileConfig | None, seed: int | None, fan_in: int) -> None:
        config = TileConfig() if config is None else config
        check_instance("config", config, TileConfig, "analog.TileConfig")
        if not isinstance(bias, bool):
            raise ValueError(f"bias: got {bias!r}, must be True or False")
        self.config = config
        self.analog_bias = bias and config.analog_bias
        self.tile = AnalogTile(out_features, tile_in + int(self.analog_bias), config, seed=seed)
        self.weight = AnalogParameter(torch.empty(weight_shape), self.tile)
        if bias:
            self.bias = (AnalogParameter(torch.empty(out_features), self.tile) if self.analog_bias
                         else nn.Parameter(torch.empty(out_features)))
        else:
            self.register_parameter("bias", None)
        self.tile.bind_parameters(self.weight, self.bias if self.analog_bias else None, tile_in)
        # nn.Linear / nn.Conv2d default init (kaiming-uniform(a=sqrt 5) == U(-1/sqrt(fan_in), ...))
        bound = 1.0 / math.sqrt(fan_in)
        w = torch.empty(weight_shape).uniform_(-bound, bound)
        b = torch.empty(out_features).uniform_(-bound, bound) if bias else None
        self.set_weights(w, b)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "_AnalogLayer":
        out = super()._apply(fn, *args, **kwargs)      # .to()/.double() copy params and buffers apart
        self.tile.sync_parameters()                    # re-point the parameters at the tile
        return out

    def __deepcopy__(self, memo: dict) -> "_AnalogLayer":
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = copy.deepcopy(value, memo)
        new.tile.sync_parameters()
        return new

    def get_weights(self) -> Tensor:
        """The weight the forward pass reads (no noise), in the layer's weight shape."""
        return self.tile.get_weights()[:, : self._tile_in].reshape(self.weight.shape)

    def get_bias(self) -> Tensor | None:
        if self.bias is None:
            return None
        if self.analog_bias:
            return self.tile.get_weights()[:, self._tile_in]
        return self.bias.detach().clone()

    @torch.no_grad()
    def set_weights(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Program the tile with weight (clipped to the device bounds); bias too if given."""
        weight = torch.as_tensor(weight)
        if tuple(weight.shape) != tuple(self.weight.shape):
            raise ValueError(f"weight: got shape {tuple(weight.shape)}, must be {tuple(self.weight.shape)}")
        w = weight.reshape(self.tile.out_features, self._tile_in).to(self.weight)
        if bias is not None:
            bias = torch.as_tensor(bias)
            if self.bias is None:
                raise ValueError("bias: got a bias, but the layer was built with bias=False")
            if tuple(bias.shape) != (self.tile.out_features,):
                raise ValueError(f"bias: got shape {tuple(bias.shape)}, must be ({self.tile.out_features},)")
        if self.analog_bias:
            b = bias.to(w) if bias is not None else self.tile.get_weights()[:, -1]
            w = torch.cat([w, b[:, None]], dim=1)
        elif bias is not None:
            self.bias.data.copy_(bias)
        self.tile.set_weights(w)

    def _mvm(self, x2: Tensor) -> Tensor:
        y = _TileMVM.apply(x2, self.weight, self.bias if self.analog_bias else None, self.tile, self.analog_bias)
        if self.bias is not None and not self.analog_bias:
            y = y + self.bias
        return y


class AnalogLinear(_AnalogLayer):
    """nn.Linear on an analog tile: y = W x (+ b) with noisy MVMs and pulsed updates."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 config: TileConfig | None = None, seed: int | None = None) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            check_int(name, value, 1)
        self.in_features, self.out_features = in_features, out_features
        self._tile_in = in_features
        self._setup(out_features, in_features, (out_features, in_features), bias, config, seed, in_features)

    @classmethod
    def from_digital(cls, module: nn.Linear, config: TileConfig | None = None,
                     seed: int | None = None) -> "AnalogLinear":
        """An AnalogLinear programmed with an nn.Linear's weights (clipped to the device bounds)."""
        layer = cls(module.in_features, module.out_features, module.bias is not None, config, seed)
        layer.set_weights(module.weight.detach(), None if module.bias is None else module.bias.detach())
        return layer.to(module.weight.device)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x: got last dim {x.shape[-1]}, must be in_features={self.in_features}")
        lead = x.shape[:-1]
        y = self._mvm(x.reshape(-1, self.in_features))
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, analog_bias={self.analog_bias}")


def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{name}: got {value!r}, must be an int or a pair of ints")
    return int(value[0]), int(value[1])


class AnalogConv2d(_AnalogLayer):
    """nn.Conv2d on an analog tile: patches (unfold) -> tile MVM -> feature maps (groups=1, zero
    padding: int, pair, 'valid' or 'same'). Every patch is one MVM and one row of the update; the MVMs
    run on F.unfold's (N, in, L) layout (analog.mvm.noisy_mvm's ``channels``), so the output needs no
    transposes and the input gradient goes to col2im as it comes out."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, bias: bool = True, config: TileConfig | None = None,
                 seed: int | None = None, groups: int = 1) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            check_int(name, value, 1)
        if groups != 1:
            raise ValueError(f"groups: got {groups!r}, AnalogConv2d supports only groups=1")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _pair("stride", stride)
        self.dilation = _pair("dilation", dilation)
        self._pad4: tuple[int, int, int, int] | None = None     # F.pad amounts for padding="same"
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if self.stride != (1, 1):
                raise ValueError(f"padding: got 'same' with stride {self.stride}, 'same' needs stride 1")
            total = [self.dilation[i] * (self.kernel_size[i] - 1) for i in (0, 1)]
            self._pad4 = (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2)
            padding = 0
        elif isinstance(padding, str):
            raise ValueError(f"padding: got {padding!r}, must be an int, a pair, 'valid' or 'same'")
        self.padding = _pair("padding", padding)
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError("kernel_size/stride/dilation: must be >= 1 and padding >= 0; got "
                             f"{self.kernel_size}/{self.stride}/{self.dilation}/{self.padding}")
        self._tile_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self._setup(out_channels, self._tile_in, (out_channels, in_channels, *self.kernel_size), bias,
                    config, seed, self._tile_in)

    @classmethod
    def from_digital(cls, module: nn.Conv2d, config: TileConfig | None = None,
                     seed: int | None = None) -> "AnalogConv2d":
        """An AnalogConv2d programmed with an nn.Conv2d's weights."""
        if module.groups != 1:
            raise ValueError(f"groups: got {module.groups}, AnalogConv2d supports only groups=1")
        if module.padding_mode != "zeros":
            raise ValueError(f"padding: got {module.padding!r}/{module.padding_mode!r}, "
                             "AnalogConv2d supports explicit zero padding only")
        layer = cls(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                    module.dilation, module.bias is not None, config, seed)
        layer.set_weights(module.weight.detach(), None if module.bias is None else module.bias.detach())
        return layer.to(module.weight.device)

    @property
    def same_padding(self) -> bool:
        """Built with padding='same' (padded per forward, possibly one more on the right/bottom, so
        ``padding`` reads (0, 0)): a layer that copies this one's geometry must know."""
        return self._pad4 is not None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: got shape {tuple(x.shape)}, must be (batch, {self.in_channels}, H, W)")
        if self._pad4 is not None:
            x = F.pad(x, self._pad4)
        n, _, h, w = x.shape
        kh, kw = self.kernel_size
        h_out = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        w_out = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        if h_out < 1 or w_out < 1:
            raise ValueError(f"x: got spatial size {(h, w)}, too small for kernel {self.kernel_size}")
        geometry = ConvGeometry(self.kernel_size, self.dilation, self.padding, self.stride, (h, w))
        y = _TileConvMVM.apply(x, self.weight, self.bias if self.analog_bias else None, self.tile,
                               self.analog_bias, geometry)                               # (N, out, L)
        if self.bias is not None and not self.analog_bias:
            y = y + self.bias[:, None]
        return y.reshape(n, self.out_channels, h_out, w_out)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}, "
                f"analog_bias={self.analog_bias}")
