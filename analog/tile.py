"""AnalogTile: the one place that knows about conductances.

It owns the config, the algorithm state (the crossbar arrays), the tile's random generator, the
forward/backward noisy MVMs, and the (x, d) pairs recorded by backward for the next optimizer step.

Weight mapping (``TileConfig.mapping``, off by default): the devices hold W_a = W / s and a
digital scale s_j per output column (or one per tile) sits after the ADC, so the effective weight
is W = s * W_a (row-wise). With y = s * (W_a x) and loss gradient d = dL/dy:
  forward   y   = s * noisy_mvm(x, W_a)                  (noise and ADC steps shrink by s)
  backward  dx  = W^T d = noisy_mvm(s * d, W_a^T)        (s applied digitally before the DAC)
  update    we want W <- W - lr d x^T (the optimizer's lr in effective-weight units), so
            W_a <- W_a - lr (d / s) x^T: the algorithm state receives d / s.
One effective step of a device is then s * dw_min: small weights mapped up (s < 1) get finer
steps, i.e. the update resolution follows the weights. The algorithms see only analog-domain
quantities (program(W / s), update(x, d / s, lr), effective_weight() = W_a), so Tiki-Taka & co.
scale their effective analog weight W_main + gamma P as a whole and need no change.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from analog._nograd import no_grad
from analog._rng import generator_on, make_generator, resolve_seed
from analog.config import TileConfig
from analog.devices import Device
from analog.energy import counters as _counters
from analog.mvm import noisy_mvm
from analog.validation import check_instance, check_int


def patch_rows(t: Tensor) -> Tensor:
    """(N, C, L) conv patches (F.unfold's layout) as (N*L, C) rows, one per patch: what a pulsed
    update takes as samples."""
    return t.transpose(1, 2).reshape(-1, t.shape[1])


def mapping_range(device: Device) -> float:
    """g, the analog value max|W| maps to at omega = 1: the device's nominal bound
    min(w_max, -w_min), or 1.0 (aihwkit's normalized range) for the unbounded Ideal device."""
    if device.is_ideal or not (math.isfinite(device.w_max) and math.isfinite(device.w_min)):
        return 1.0
    g = min(device.w_max, -device.w_min)
    if not g > 0:
        raise ValueError(f"mapping.weight_scaling_omega: the device range [{device.w_min}, {device.w_max}] "
                         "must contain 0 to map signed weights onto it")
    return g


class AnalogTile(nn.Module):
    """A tile of out_features x in_features devices (in_features includes an analog bias column)."""

    def __init__(self, out_features: int, in_features: int, config: TileConfig | None = None,
                 seed: int | None = None) -> None:
        super().__init__()
        for name, value in (("out_features", out_features), ("in_features", in_features)):
            check_int(name, value, 1)
        config = TileConfig() if config is None else config
        check_instance("config", config, TileConfig, "analog.TileConfig")
        self.out_features, self.in_features = out_features, in_features
        self.config = config
        self.seed = resolve_seed(config.seed, seed)
        self._generator = make_generator(self.seed)
        self.algorithm_state = config.algorithm.build(
            out_features, in_features, device=config.device, update=config.update, forward=config.forward,
            generator=make_generator(self.seed ^ 0x5DEECE66D))
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._bound: tuple[Any, ...] = ()
        self._synced: Tensor | None = None      # the weights the bound parameters last viewed
        #: digital gain after the ADC, a scalar or one per output (drift compensation); None = off.
        #: Set it through ``set_output_scale``.
        self.output_scale: Tensor | None = None
        mapping = config.mapping
        self.mapped = mapping.enabled
        if self.mapped:
            #: analog value the largest |weight| of a column is programmed to: omega * nominal bound
            self.map_target = float(mapping.weight_scaling_omega) * mapping_range(config.device)
            #: digital per-output scales s (out,): effective weight = s[:, None] * analog weight
            self.register_buffer("out_scale", torch.ones(out_features))
            if mapping.remap_every is not None:
                self.register_buffer("map_steps", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        mapped = f", weight_scaling_omega={self.config.mapping.weight_scaling_omega}" if self.mapped else ""
        return (f"{self.out_features}x{self.in_features}, device={type(self.config.device).__name__}, "
                f"algorithm={type(self.config.algorithm).__name__}{mapped}")

    # ------------------------------------------------------------------ randomness
    def generator(self, device: torch.device) -> torch.Generator:
        gen = generator_on(self._generator, device)
        if gen is not self._generator:      # (nn.Module attribute writes are slow: only on a move)
            self._generator = gen
        return gen

    # ------------------------------------------------------------------ MVMs
    def analog_weight(self) -> Tensor:
        """The (out, in) weights in conductance units, as the devices hold them (no read noise)."""
        return self.algorithm_state.effective_weight()

    def effective_weight(self) -> Tensor:
        """The (out, in) weights the layer computes with: the analog weights times the mapping
        scales (the analog weights themselves when mapping is off)."""
        w = self.algorithm_state.effective_weight()
        return w * self.out_scale[:, None] if self.mapped else w

    def _out_scales(self, like: Tensor, channels: bool) -> list[Tensor]:
        """The digital gains on the outputs (mapping scales, output_scale), shaped for rows (out,)
        or for the channels layout (out, 1)."""
        scales = []
        if self.mapped:
            scales.append(self.out_scale)
        if self.output_scale is not None:
            scales.append(self.output_scale.to(like))
        return [s[:, None] for s in scales] if channels else scales

    def forward_mvm(self, x: Tensor, channels: bool = False) -> Tensor:
        """y = s * (W_a x) through the forward periphery. x: (N, in), or with ``channels`` a conv
        layer's patches (N, in, L) -> (N, out, L) (see analog.mvm.noisy_mvm)."""
        w = self.analog_weight()
        rec = _counters.ACTIVE
        if rec is None:
            y = noisy_mvm(x.to(w.dtype), w, self.config.forward, self.generator(w.device), channels)
        else:
            io = self.config.forward
            rec.mvm(self, "fwd", x.numel() // self.in_features, self.in_features, self.out_features,
                    io.inp_res, io.out_res)
            with rec.reading(self):
                y = noisy_mvm(x.to(w.dtype), w, io, self.generator(w.device), channels)
        for s in self._out_scales(y, channels):
            y = y * s
        return y

    def backward_mvm(self, d: Tensor, channels: bool = False) -> Tensor:
        """g = W^T d = W_a^T (s * d) through the backward periphery. d: (N, out), or with
        ``channels`` (N, out, L) -> (N, in, L)."""
        w = self.analog_weight()
        d = d.to(w.dtype)
        for s in self._out_scales(d, channels):
            d = d * s
        rec = _counters.ACTIVE
        if rec is None:
            return noisy_mvm(d, w.t(), self.config.backward, self.generator(w.device), channels)
        io = self.config.backward
        rec.mvm(self, "bwd", d.numel() // self.out_features, self.out_features, self.in_features,
                io.inp_res, io.out_res)
        with rec.reading(self):
            return noisy_mvm(d, w.t(), io, self.generator(w.device), channels)

    @torch.no_grad()
    def set_output_scale(self, scale: float | Tensor | None) -> None:
        """The public hook for a digital gain after the ADC: one number for the whole tile or one per
        output (shape (out,)), multiplied into every forward output (and into d before the backward
        MVM, so gradients stay consistent). Drift compensation (analog.inference) sets it after
        reading a drifted tile; None or 1.0 turns it off. The devices are not touched."""
        if scale is None or (not isinstance(scale, Tensor) and float(scale) == 1.0):
            self.output_scale = None
            return
        s = torch.as_tensor(scale, dtype=torch.float64).detach()
        if s.dim() == 0:
            s = s.reshape(1)
        if s.shape not in ((1,), (self.out_features,)):
            raise ValueError(f"scale: got shape {tuple(s.shape)}, must be a number or ({self.out_features},)")
        if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
            raise ValueError("scale: got non-finite or non-positive values, must be finite and > 0")
        self.output_scale = s.to(self.analog_weight())

    # ------------------------------------------------------------------ update
    def record(self, x: Tensor, d: Tensor) -> None:
        """Keep (x, d) from a backward pass for the next optimizer step (accumulates like .grad):
        rows (B, in), (B, out), or conv patches (N, in, L), (N, out, L) when ``takes_patches``."""
        self._pending.append((x.detach() if x.requires_grad else x, d.detach() if d.requires_grad else d))

    @property
    def takes_patches(self) -> bool:
        """Whether record() may be given a conv layer's patches as they come (the algorithm's
        update takes them, see AlgorithmState.takes_patches); else the layer records rows."""
        return self.algorithm_state.takes_patches

    def clear_pending(self) -> None:
        self._pending.clear()           # (in place: nn.Module attribute writes are slow)

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    @no_grad
    def update(self, x: Tensor, d: Tensor, lr: float) -> Any:
        """Hand one step's (x, d, lr) to the algorithm, then refresh the layer's mirrored parameters.
        With mapping the algorithm gets d / s: the analog step that moves s * W_a by -lr d x^T."""
        if self.mapped:
            d = d / (self.out_scale if d.dim() == 2 else self.out_scale[:, None]).to(d)
        rec = _counters.ACTIVE
        if rec is None:
            result = self.algorithm_state.update(x, d, lr)
        else:
            with rec.within(self, "update"):
                result = self.algorithm_state.update(x, d, lr)
            samples = x.shape[0] if x.dim() == 2 else x.shape[0] * x.shape[2]
            rec.update(self, samples, int(getattr(result, "bl", 0) or 0), self.out_features, self.in_features,
                       getattr(self.algorithm_state, "digital_accumulation", False))
        if self.mapped and self.config.mapping.remap_every is not None:
            self.map_steps += 1
            if int(self.map_steps) % self.config.mapping.remap_every == 0:
                self.set_weights(self.effective_weight().clone())    # re-derive s, re-program W / s
                return result
        self.sync_parameters()
        return result

    @no_grad
    def apply_pending_update(self, lr: float) -> Any:
        """Update with everything recorded since the last step; a no-op if nothing was recorded."""
        if not self._pending:
            return None
        if len(self._pending) == 1:
            x, d = self._pending[0]
        else:
            pending = self._pending
            if any(p[0].dim() == 3 for p in pending) and len({p[0].shape[1:] for p in pending}) > 1:
                pending = [(patch_rows(x), patch_rows(d)) if x.dim() == 3 else (x, d) for x, d in pending]  # sizes differ
            x = torch.cat([p[0] for p in pending])
            d = torch.cat([p[1] for p in pending])
        self._pending.clear()
        return self.update(x, d, lr)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> Tensor:
        """A copy of the (out, in) effective weights the forward pass reads (s * W_a when mapped)."""
        return self.effective_weight().detach().clone()

    def mapping_scales(self, w: Tensor) -> Tensor:
        """The digital scales (out,) that map w's largest |weight| per column (or per tile) onto
        omega * the device bound. An all-zero column takes the tile's scale; an all-zero tile 1."""
        m = w.abs().amax(dim=1)
        top = m.amax() if m.numel() else m.new_zeros(())
        if not self.config.mapping.per_column:
            m = top.expand_as(m)
        m = torch.where(m > 0, m, top)
        return torch.where(m > 0, m / self.map_target, torch.ones_like(m))

    @torch.no_grad()
    def set_weights(self, w: Tensor, remap: bool = True) -> None:
        """Program the tile with effective weights w (clipped to the device bounds). With mapping,
        ``remap`` derives new scales from w first (programming); remap=False keeps the current
        scales and programs w / s (e.g. conductance drift, which does not change the periphery)."""
        w = torch.as_tensor(w)
        if w.shape != (self.out_features, self.in_features):
            raise ValueError(f"w: got shape {tuple(w.shape)}, must be ({self.out_features}, {self.in_features})")
        if not bool(torch.isfinite(w).all()):
            raise ValueError("w: got non-finite values, must be finite")
        w = w.to(self.analog_weight())
        if self.mapped:
            if remap:
                self.out_scale.copy_(self.mapping_scales(w))
            w = w / self.out_scale[:, None]
        rec = _counters.ACTIVE
        if rec is None:
            self.algorithm_state.program(w)
        else:
            rec.program(self, w.numel())
            with rec.within(self, "program"):
                self.algorithm_state.program(w)
        self.sync_parameters()

    def bind_parameters(self, weight: nn.Parameter, bias: nn.Parameter | None, n_in: int) -> None:
        """Mirror the tile into a layer's weight (first n_in columns) and, with an analog bias, its bias."""
        self._bound = (weight, bias, n_in)
        self.sync_parameters()

    @no_grad
    def sync_parameters(self) -> None:
        """Point the layer's parameters at the tile's weights (views where possible, else copies)."""
        if not self._bound:
            return
        weight, bias, n_in = self._bound
        w = self.effective_weight()
        if self._synced is w and weight.data_ptr() == w.data_ptr():
            return                  # the parameters already view this very tensor (updated in place)
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
        self._synced = w if weight.data_ptr() == w.data_ptr() else None

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "AnalogTile":
        self._pending = []
        return super()._apply(fn, *args, **kwargs)
