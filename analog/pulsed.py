"""One crossbar of pulsed resistive devices: state, device-to-device variation and the pulsed update.

Pulsed update (DESIGN.md §2): x_i and d_j become stochastic pulse trains of length BL with
probabilities A|x_i| and B|d_j|; device (j, i) gets a pulse of sign -sign(x_i d_j) where they
coincide. Coincidences are counted with two matrix products of the 0/1 (and +-1 signed) trains,
stacked over all samples and slots:
    T = |D|^T |X|  (all coincidences),   S = D_s^T X_s  (signed: +1 where x d > 0),
    n_down = (T + S) / 2,                 n_up = (T - S) / 2,
so up and down pulses are counted separately: on an asymmetric device they do not cancel.

Up/down convention (``up_down = beta``): an up pulse steps ``dw_min*(1 + beta)*q+(w)``, a down pulse
``dw_min*(1 - beta)*q-(w)`` -- the formula aihwkit documents (not the up ``dw_min`` / down
``dw_min*(1 - beta)`` its 1.1/1.2 builds measure). With soft bounds the symmetric point is beta*tau.

n pulses of the same sign are applied with q(w) read once (exact in the small-step limit the
simulator targets); cycle-to-cycle noise adds ``dw_min_std * step * sqrt(n) * N(0,1)``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from analog._rng import generator_on
from analog.devices import Device

if TYPE_CHECKING:  # config imports the algorithms, which import this module
    from analog.config import UpdateConfig


class PulseStats(NamedTuple):
    """What one pulse_update did: the (max) pulse-train length and the pulses per device."""

    bl: int
    n_up: Tensor
    n_down: Tensor


def _count_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class PulsedArray(nn.Module):
    """A crossbar (out_features x in_features) of one device type with per-device variation."""

    weight: Tensor
    dw_min: Tensor
    w_min: Tensor
    w_max: Tensor
    up_down: Tensor

    def __init__(self, out_features: int, in_features: int, device: Device, update: "UpdateConfig",
                 generator: torch.Generator) -> None:
        super().__init__()
        if out_features < 1 or in_features < 1:
            raise ValueError(f"out_features/in_features: got ({out_features}, {in_features}), must be >= 1")
        self.out_features, self.in_features = out_features, in_features
        self.device_model = device
        self.update_config = update
        self._generator = generator
        shape = (out_features, in_features)
        g = generator
        if device.is_ideal:
            dw = torch.zeros(shape)
            w_min = torch.full(shape, device.w_min)
            w_max = torch.full(shape, device.w_max)
            beta = torch.zeros(shape)
        else:
            dw = device.dw_min * (1.0 + device.dw_min_dtod * torch.randn(shape, generator=g)).clamp_min(0.0)
            w_max = device.w_max + abs(device.w_max) * device.w_max_dtod * torch.randn(shape, generator=g)
            w_min = device.w_min + abs(device.w_min) * device.w_min_dtod * torch.randn(shape, generator=g)
            if device.needs_zero_inside:  # keep 0 inside every device's range
                w_max = w_max.clamp_min(0.05 * device.w_max)
                w_min = w_min.clamp_max(0.05 * device.w_min)
            w_max = torch.maximum(w_max, w_min + 1e-3 * (device.w_max - device.w_min))
            beta = (device.up_down + device.up_down_dtod * torch.randn(shape, generator=g)).clamp(-0.99, 0.99)
        self.register_buffer("weight", torch.zeros(shape))
        self.register_buffer("dw_min", dw)
        self.register_buffer("w_min", w_min)
        self.register_buffer("w_max", w_max)
        self.register_buffer("up_down", beta)

    # ------------------------------------------------------------------ helpers
    def generator(self) -> torch.Generator:
        """This array's generator, on the device of its tensors (recreated once after .to(cuda))."""
        self._generator = generator_on(self._generator, self.weight.device)
        return self._generator

    @property
    def dw_up(self) -> Tensor:
        return self.dw_min * (1.0 + self.up_down)

    @property
    def dw_down(self) -> Tensor:
        return self.dw_min * (1.0 - self.up_down)

    def extra_repr(self) -> str:
        return f"{self.out_features}x{self.in_features}, device={type(self.device_model).__name__}"

    @torch.no_grad()
    def program(self, w: Tensor) -> None:
        """Set the weights (ideal programming), clipped to each device's bounds."""
        if w.shape != self.weight.shape:
            raise ValueError(f"w: got shape {tuple(w.shape)}, must be {tuple(self.weight.shape)}")
        w = w.to(self.weight)
        self.weight.copy_(torch.minimum(torch.maximum(w, self.w_min), self.w_max))

    def response(self, w: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-device step of one up and one down pulse at w (defaults to the current weights)."""
        w = self.weight if w is None else w
        q_up = self.device_model.q_up(w, self.w_min, self.w_max)
        q_down = self.device_model.q_down(w, self.w_min, self.w_max)
        return self.dw_up * q_up, self.dw_down * q_down

    # ------------------------------------------------------------------ pulses
    @torch.no_grad()
    def apply_pulses(self, n_up: Tensor, n_down: Tensor, noise: bool = True) -> None:
        """Apply integer (or expected, fractional) pulse counts per device (out, in) through the
        response functions, with cycle-to-cycle noise, then clip to the per-device bounds."""
        if n_up.shape != self.weight.shape or n_down.shape != self.weight.shape:
            raise ValueError(f"n_up/n_down: got {tuple(n_up.shape)}/{tuple(n_down.shape)}, "
                             f"must be {tuple(self.weight.shape)}")
        w = self.weight
        n_up, n_down = n_up.to(w.dtype), n_down.to(w.dtype)
        if self.device_model.is_ideal:
            w.add_(n_up - n_down)
            return
        s_up, s_down = self.response(w)
        delta = s_up * n_up - s_down * n_down
        c2c = self.device_model.dw_min_std
        if noise and c2c > 0:
            var = s_up.square() * n_up + s_down.square() * n_down
            delta += c2c * var.sqrt() * torch.randn(w.shape, generator=self.generator(), device=w.device,
                                                    dtype=w.dtype)
        w.add_(delta)
        torch.minimum(torch.maximum(w, self.w_min), self.w_max, out=w)

    def _trains_counts(self, x: Tensor, d: Tensor, lr: float) -> tuple[int, Tensor, Tensor]:
        """Stochastic pulse trains for a (sub-)batch and their up/down coincidence counts."""
        cfg = self.update_config
        dw = self.device_model.dw_min
        cdt = _count_dtype(x.dtype)
        x, d = x.to(cdt), d.to(cdt)
        mx = x.abs().amax(dim=1)
        md = d.abs().amax(dim=1)
        active = (mx > 0) & (md > 0)
        zeros = torch.zeros(self.weight.shape, dtype=cdt, device=x.device)
        if not bool(active.any()):
            return 0, zeros, zeros.clone()
        x, d, mx, md = x[active], d[active], mx[active], md[active]
        if cfg.bl_management:
            bl = torch.ceil(lr * mx * md / dw).clamp(1, cfg.desired_bl)
        else:
            bl = torch.full_like(mx, float(cfg.desired_bl))
        n_slots = int(bl.max().item())
        if cfg.update_management:
            a = torch.sqrt(lr * md / (dw * bl * mx))
            b = torch.sqrt(lr * mx / (dw * bl * md))
        else:
            a = b = torch.sqrt(lr / (dw * bl))
        px = (a[:, None] * x.abs()).clamp_max(1.0)                     # (B, in)
        pd = (b[:, None] * d.abs()).clamp_max(1.0)                     # (B, out)
        g = self.generator()
        n = x.shape[0]
        slot_ok = torch.arange(n_slots, device=x.device, dtype=cdt)[None, :] < bl[:, None]   # (B, BL)
        xb = (torch.rand((n, n_slots, x.shape[1]), generator=g, device=x.device, dtype=cdt)
              < px[:, None, :]).to(cdt)
        db = ((torch.rand((n, n_slots, d.shape[1]), generator=g, device=x.device, dtype=cdt)
               < pd[:, None, :]) & slot_ok[:, :, None]).to(cdt)
        xs = xb * torch.sign(x)[:, None, :]
        ds = db * torch.sign(d)[:, None, :]
        xb, xs = xb.reshape(-1, x.shape[1]), xs.reshape(-1, x.shape[1])
        db, ds = db.reshape(-1, d.shape[1]), ds.reshape(-1, d.shape[1])
        total = db.t() @ xb
        signed = ds.t() @ xs
        return n_slots, (total - signed) * 0.5, (total + signed) * 0.5

    def _mean_counts(self, x: Tensor, d: Tensor, lr: float) -> tuple[Tensor, Tensor]:
        """Expected pulse counts lr*|d_j x_i|/dw_min split by sign (deterministic debugging mode)."""
        cdt = _count_dtype(x.dtype)
        x, d = x.to(cdt), d.to(cdt)
        k = lr / self.device_model.dw_min
        total = (d.abs().t() @ x.abs()) * k
        signed = (d.t() @ x) * k
        return (total - signed) * 0.5, (total + signed) * 0.5

    @torch.no_grad()
    def pulse_update(self, x: Tensor, d: Tensor, lr: float) -> PulseStats:
        """W ~ W - lr * d^T x as pulses. x: (B, in) inputs, d: (B, out) output gradients.

        Batched mode sums the whole mini-batch's coincidences and applies them with q(w) read once;
        per-sample mode applies each sample's pulses in turn (each with its own BL). Ideal devices
        take the float update. Returns the pulse-train length and the per-device pulse counts.
        """
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x: got shape {tuple(x.shape)}, must be (batch, {self.in_features})")
        if d.dim() != 2 or d.shape[1] != self.out_features or d.shape[0] != x.shape[0]:
            raise ValueError(f"d: got shape {tuple(d.shape)}, must be ({x.shape[0]}, {self.out_features})")
        lr = float(lr)
        if not lr >= 0:
            raise ValueError(f"lr: got {lr}, must be >= 0")
        cfg = self.update_config
        if self.device_model.is_ideal:
            self.weight.add_(d.t().to(self.weight.dtype) @ x.to(self.weight.dtype), alpha=-lr)
            return PulseStats(0, torch.zeros_like(self.weight), torch.zeros_like(self.weight))
        if lr == 0.0 or x.shape[0] == 0:
            return PulseStats(0, torch.zeros_like(self.weight), torch.zeros_like(self.weight))
        if cfg.pulse_type == "none":
            dW = -lr * (d.t().to(self.weight.dtype) @ x.to(self.weight.dtype))
            n_up, n_down = dW.clamp_min(0) / self.device_model.dw_min, (-dW).clamp_min(0) / self.device_model.dw_min
            self.apply_pulses(n_up, n_down, noise=False)
            return PulseStats(0, n_up, n_down)
        chunks = [slice(b, b + 1) for b in range(x.shape[0])] if cfg.mode == "per_sample" else [slice(None)]
        bl_max, sum_up, sum_down = 0, None, None
        for sl in chunks:  # per-sample mode: sequential physics, one sample's pulses at a time
            if cfg.pulse_type == "mean":
                bl, (n_up, n_down) = 0, self._mean_counts(x[sl], d[sl], lr)
            else:
                bl, n_up, n_down = self._trains_counts(x[sl], d[sl], lr)
            if bl or cfg.pulse_type == "mean":
                self.apply_pulses(n_up, n_down)
            bl_max = max(bl_max, bl)
            sum_up = n_up if sum_up is None else sum_up + n_up
            sum_down = n_down if sum_down is None else sum_down + n_down
        return PulseStats(bl_max, sum_up, sum_down)

    # ------------------------------------------------------------------ reference
    @torch.no_grad()
    def symmetric_point(self, iters: int = 60) -> Tensor:
        """Per-device w* where up and down steps balance, G(w*) = 0 (bisection, vectorized).

        Where the down step exceeds the up step over the whole range, w* is w_min (and w_max
        the other way round); where they are equal everywhere (constant step, beta = 0), 0.
        """
        if self.device_model.is_ideal:
            return torch.zeros_like(self.weight)

        def g(w: Tensor) -> Tensor:
            s_up, s_down = self.response(w)
            return s_down - s_up

        lo, hi = self.w_min.clone(), self.w_max.clone()
        g_lo, g_hi = g(lo), g(hi)
        flat = (g_lo.abs() < 1e-12) & (g_hi.abs() < 1e-12)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            pos = g(mid) > 0
            hi = torch.where(pos, mid, hi)
            lo = torch.where(pos, lo, mid)
        w_star = 0.5 * (lo + hi)
        w_star = torch.where(g_lo >= 0, self.w_min, w_star)
        w_star = torch.where(g_hi <= 0, self.w_max, w_star)
        zero = torch.zeros_like(w_star).clamp(self.w_min, self.w_max)
        return torch.where(flat, zero, w_star)
