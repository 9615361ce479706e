"""AnalogTile: the one place that knows about conductances.

It owns the config, the algorithm state (the crossbar arrays), the tile's random generator, the
forward/backward noisy MVMs, and the (x, d) pairs recorded by backward for the next optimizer step.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from analog._rng import generator_on, make_generator, resolve_seed
from analog.config import TileConfig
from analog.mvm import noisy_mvm


class AnalogTile(nn.Module):
    """A tile of out_features x in_features devices (in_features includes an analog bias column)."""

    def __init__(self, out_features: int, in_features: int, config: TileConfig | None = None,
                 seed: int | None = None) -> None:
        super().__init__()
        for name, value in (("out_features", out_features), ("in_features", in_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}, must be an integer >= 1")
        config = TileConfig() if config is None else config
        if not isinstance(config, TileConfig):
            raise ValueError(f"config: got {type(config).__name__}, must be analog.TileConfig")
        self.out_features, self.in_features = out_features, in_features
        self.config = config
        self.seed = resolve_seed(config.seed, seed)
        self._generator = make_generator(self.seed)
        self.algorithm_state = config.algorithm.build(out_features, in_features, config,
                                                      make_generator(self.seed ^ 0x5DEECE66D))
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._bound: tuple[Any, ...] = ()
        #: digital rescaling of the outputs after the ADC (global drift compensation, analog.inference)
        self.output_scale: float = 1.0

    def extra_repr(self) -> str:
        return (f"{self.out_features}x{self.in_features}, device={type(self.config.device).__name__}, "
                f"algorithm={type(self.config.algorithm).__name__}")

    # ------------------------------------------------------------------ randomness
    def generator(self, device: torch.device) -> torch.Generator:
        self._generator = generator_on(self._generator, device)
        return self._generator

    # ------------------------------------------------------------------ MVMs
    def effective_weight(self) -> Tensor:
        """The (out, in) weights the MVMs read (without read noise)."""
        return self.algorithm_state.effective_weight()

    def forward_mvm(self, x: Tensor) -> Tensor:
        """y = W x through the forward periphery. x: (N, in)."""
        w = self.effective_weight()
        y = noisy_mvm(x.to(w.dtype), w, self.config.forward, self.generator(w.device))
        return y if self.output_scale == 1.0 else y * self.output_scale

    def backward_mvm(self, d: Tensor) -> Tensor:
        """g = W^T d through the backward periphery. d: (N, out)."""
        w = self.effective_weight()
        g = noisy_mvm(d.to(w.dtype), w.t(), self.config.backward, self.generator(w.device))
        return g if self.output_scale == 1.0 else g * self.output_scale

    # ------------------------------------------------------------------ update
    def record(self, x: Tensor, d: Tensor) -> None:
        """Keep (x, d) from a backward pass for the next optimizer step (accumulates like .grad)."""
        self._pending.append((x.detach(), d.detach()))

    def clear_pending(self) -> None:
        self._pending = []

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float) -> Any:
        """Hand one step's (x, d, lr) to the algorithm, then refresh the layer's mirrored parameters."""
        result = self.algorithm_state.update(x, d, lr)
        self.sync_parameters()
        return result

    @torch.no_grad()
    def apply_pending_update(self, lr: float) -> Any:
        """Update with everything recorded since the last step; a no-op if nothing was recorded."""
        if not self._pending:
            return None
        if len(self._pending) == 1:
            x, d = self._pending[0]
        else:
            x = torch.cat([p[0] for p in self._pending])
            d = torch.cat([p[1] for p in self._pending])
        self._pending = []
        return self.update(x, d, lr)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> Tensor:
        """A copy of the (out, in) weights the forward pass reads."""
        return self.effective_weight().detach().clone()

    @torch.no_grad()
    def set_weights(self, w: Tensor) -> None:
        """Program the tile (clipped to the device bounds)."""
        w = torch.as_tensor(w)
        if w.shape != (self.out_features, self.in_features):
            raise ValueError(f"w: got shape {tuple(w.shape)}, must be ({self.out_features}, {self.in_features})")
        if not bool(torch.isfinite(w).all()):
            raise ValueError("w: got non-finite values, must be finite")
        self.algorithm_state.program(w.to(self.effective_weight()))
        self.sync_parameters()

    def bind_parameters(self, weight: nn.Parameter, bias: nn.Parameter | None, n_in: int) -> None:
        """Mirror the tile into a layer's weight (first n_in columns) and, with an analog bias, its bias."""
        self._bound = (weight, bias, n_in)
        self.sync_parameters()

    @torch.no_grad()
    def sync_parameters(self) -> None:
        """Point the layer's parameters at the tile's weights (views where possible, else copies)."""
        if not self._bound:
            return
        weight, bias, n_in = self._bound
        w = self.effective_weight()
        for param, src in ((weight, w[:, :n_in]), (bias, w[:, n_in] if bias is not None else None)):
            if param is None:
                continue
            if param.data_ptr() == src.data_ptr() and param.device == src.device and param.dtype == src.dtype:
                continue            # already a view of the tile's weights
            try:
                view = src.view(param.shape)
            except RuntimeError:
                view = None
            if view is not None:
                param.data = view
            else:
                param.data.copy_(src.reshape(param.shape))

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "AnalogTile":
        self._pending = []
        return super()._apply(fn, *args, **kwargs)
