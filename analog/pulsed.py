"""One crossbar of pulsed resistive devices: state, device-to-device variation and the pulsed update.

Pulsed update (docs/design.md §2.2): x_i and d_j become stochastic pulse trains of length BL with
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

import torch
from torch import Tensor, nn

from analog._nograd import no_grad
from analog._rng import generator_on
from analog.devices import Device
from analog.energy import counters as _counters
from analog.periphery import UpdateConfig


class PulseStats:
    """What one pulse_update did: the (max) pulse-train length ``bl`` and the pulses per device,
    ``n_up`` / ``n_down`` (out, in), assembled only when asked for (the update itself stays sparse)."""

    def __init__(self, bl: int, shape: torch.Size, parts: list[tuple[Tensor | None, Tensor, Tensor]],
                 like: Tensor, dense: bool = False) -> None:
        self.bl, self._shape, self._parts, self._like = bl, shape, parts, like
        self._dense_update = dense      # the weights changed everywhere (ideal devices' float update)
        self._dense: tuple[Tensor, Tensor] | None = None

    def _assemble(self) -> tuple[Tensor, Tensor]:
        if self._dense is None:
            up = torch.zeros(self._shape.numel(), dtype=self._like.dtype, device=self._like.device)
            down = torch.zeros_like(up)
            for flat, n_up, n_down in self._parts:
                if flat is None:
                    up += n_up.reshape(-1)
                    down += n_down.reshape(-1)
                else:
                    up.index_add_(0, flat, n_up.to(up.dtype))
                    down.index_add_(0, flat, n_down.to(up.dtype))
            self._dense = (up.view(self._shape), down.view(self._shape))
        return self._dense

    def touched(self) -> Tensor | None:
        """Flat (row-major) indices of the devices this update pulsed (possibly repeated), or None
        when it updated the array densely."""
        flats = [flat for flat, _, _ in self._parts]
        if self._dense_update or any(flat is None for flat in flats):
            return None
        if len(flats) == 1:
            return flats[0]
        return torch.cat(flats) if flats else torch.zeros(0, dtype=torch.long, device=self._like.device)

    @property
    def n_up(self) -> Tensor:
        return self._assemble()[0]

    @property
    def n_down(self) -> Tensor:
        return self._assemble()[1]

    def __iter__(self):  # unpack like the (bl, n_up, n_down) tuple it stands for
        return iter((self.bl, self.n_up, self.n_down))


#: below this fraction of devices receiving pulses, only those devices are gathered and updated
SPARSE_FRACTION = 0.25
#: arrays up to this many devices count coincidences densely (gathering costs more than it saves)
_DENSE_NUMEL = 1 << 13
#: batched updates draw at most this many train slots x lines at once (memory bound)
_MAX_TRAIN_ELEMENTS = 1 << 22
#: max|x| or max|d| below this: the sample sends no pulses
_TINY = 1e-20


def _count_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _signed_trains(sgn: Tensor, fire: Tensor, n_slots: int) -> Tensor:
    """Signed pulse trains (B*BL, lines) in {-1, 0, +1}: the 0/1 trains ``fire`` (B*BL, lines, sample-
    major) times each line's sign ``sgn`` (B, lines) -- the sign of its x_i or d_j."""
    if n_slots == 1:
        return sgn.mul_(fire)
    return (fire.view(sgn.shape[0], n_slots, -1) * sgn[:, None, :]).view(fire.shape)


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
        gen = generator_on(self._generator, self.weight.device)
        if gen is not self._generator:      # (nn.Module attribute writes are slow: only on a move)
            self._generator = gen
        return gen

    @property
    def dw_up(self) -> Tensor:
        """Per-device step of one up pulse at q = 1: dw_min * (1 + up_down)."""
        return self.dw_min * (1.0 + self.up_down)

    @property
    def dw_down(self) -> Tensor:
        """Per-device step of one down pulse at q = 1: dw_min * (1 - up_down)."""
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
    @no_grad
    def apply_pulses(self, n_up: Tensor, n_down: Tensor, noise: bool = True) -> None:
        """Apply integer (or expected, fractional) pulse counts per device (out, in) through the
        response functions, with cycle-to-cycle noise, then clip to the per-device bounds.
        Sparse counts (e.g. a one-column transfer) only touch the devices that get pulses."""
        if n_up.shape != self.weight.shape or n_down.shape != self.weight.shape:
            raise ValueError(f"n_up/n_down: got {tuple(n_up.shape)}/{tuple(n_down.shape)}, "
                             f"must be {tuple(self.weight.shape)}")
        n_up, n_down = n_up.to(self.weight.dtype), n_down.to(self.weight.dtype)
        if self.device_model.is_ideal:
            self.weight.add_(n_up - n_down)
            return
        hit = (n_up != 0) | (n_down != 0)
        nnz = int(hit.sum().item())
        if nnz == 0:
            return
        if nnz < SPARSE_FRACTION * hit.numel():
            flat = hit.view(-1).nonzero().squeeze(1)
            self.pulse_devices(flat, n_up.reshape(-1)[flat], n_down.reshape(-1)[flat], noise)
        else:
            self.pulse_devices(None, n_up, n_down, noise)

    @no_grad
    def apply_signed_pulses(self, n: Tensor) -> int:
        """apply_pulses(n.clamp_min(0), (-n).clamp_min(0)) for signed counts n (out, in) (+ up,
        - down), with the same devices, draws and result, in fewer kernels: the devices that fire
        are found once, from n. Returns the number of pulses, sum |n|."""
        if n.shape != self.weight.shape:
            raise ValueError(f"n: got {tuple(n.shape)}, must be {tuple(self.weight.shape)}")
        n = n.to(self.weight.dtype)
        if self.device_model.is_ideal:
            self.weight.add_(n)
            return int(n.abs().sum().item())
        flat = n.view(-1).nonzero().squeeze(1)
        if flat.numel() == 0:
            return 0
        if flat.numel() < SPARSE_FRACTION * n.numel():
            return self.pulse_signed(flat, n.view(-1).index_select(0, flat))
        return self.pulse_signed(None, n)

    @no_grad
    def pulse_signed(self, flat: Tensor | None, counts: Tensor) -> int:
        """Signed pulse counts (+ up, - down) on the devices with flat (row-major) indices ``flat``
        (1-D counts), or on all devices (``flat=None``, counts (out, in)): pulse_devices with the counts
        split by sign, for callers that already know which devices fire (MixedPrecision's threshold
        crossings, apply_signed_pulses). Returns the number of pulses, sum |counts|."""
        counts = counts.to(self.weight.dtype)
        fired = int(counts.abs().sum().item())
        self.pulse_devices(flat, counts.clamp_min(0.0), counts.neg().clamp_min_(0.0))
        return fired

    def _constants(self) -> Tensor:
        """(4 or 6, out*in): w_min, w_max and the q = 1 up/down steps dw_min*(1 +- up_down) per device,
        and for a linear response (``Device.linear_slopes``) the slopes of the steps, dw_up*gamma_up/
        w_max and dw_down*gamma_down/w_min, stacked so that a sparse update gathers them with one
        index_select. Rebuilt when any of the buffers it derives from changes (load_state_dict,
        .to(), a test editing them)."""
        b = self._buffers                       # (per pulse: no nn.Module attribute lookups)
        key = tuple((t.data_ptr(), t._version) for t in (b["w_min"], b["w_max"], b["dw_min"], b["up_down"]))
        cached = self.__dict__.get("_consts")
        if cached is None or cached[0] != key:
            rows = [self.w_min, self.w_max, self.dw_up, self.dw_down]
            slopes = self.device_model.linear_slopes()
            if slopes is not None and not self.device_model.constant_response:
                rows += [rows[2] * (slopes[0] / self.w_max), rows[3] * (slopes[1] / self.w_min)]
            cached = (key, torch.stack(rows).view(len(rows), -1))
            self.__dict__["_consts"] = cached
        return cached[1]

    @no_grad
    def pulse_devices(self, flat: Tensor | None, n_up: Tensor, n_down: Tensor, noise: bool = True) -> None:
        """Apply n_up up and n_down down pulses to the devices with flat (row-major) indices ``flat``
        (1-D counts), or to all devices (``flat=None``, counts (out, in)): the step
        W += s+ n+ - s- n- with s+- = dw_min (1 +- up_down) q+-(W) read once, cycle-to-cycle noise
        dw_min_std * sqrt(s+^2 n+ + s-^2 n-) * N(0, 1), clipped to each device's bounds.

        The entry point for callers that know which devices get pulses (a transfer writes a few
        columns; the pulsed update's sparse counts); counts are not checked (hot path)."""
        rec = _counters.ACTIVE
        if rec is not None:
            rec.pulses(n_up, n_down, flat, self.weight)
        dev = self.device_model
        if dev.is_ideal:
            if flat is None:
                self.weight.add_(n_up - n_down)
            else:
                self.weight.view(-1).index_add_(0, flat, n_up - n_down)
            return
        consts = self._constants()
        if flat is None:
            w = self.weight
            cs = [c.view(w.shape) for c in consts]
        else:
            w = self.weight.view(-1).index_select(0, flat)
            cs = consts.index_select(1, flat).unbind(0)
        lo, hi, s_up, s_down = cs[:4]
        if len(cs) == 6:                   # linear response: s = max(0, s(q=1) - slope * w)
            s_up = torch.addcmul(s_up, w, cs[4], value=-1.0).clamp_min_(0.0)
            s_down = torch.addcmul(s_down, w, cs[5], value=-1.0).clamp_min_(0.0)
        elif not dev.constant_response:
            s_up = s_up * dev.q_up(w, lo, hi)
            s_down = s_down * dev.q_down(w, lo, hi)
        step_up, step_down = s_up * n_up, s_down * n_down
        delta = step_up - step_down
        c2c = dev.dw_min_std
        if noise and c2c > 0:
            var = torch.addcmul(step_up.mul_(s_up), step_down, s_down)        # s+^2 n+ + s-^2 n-
            z = torch.randn(delta.shape, generator=self.generator(), device=delta.device, dtype=delta.dtype)
            delta.addcmul_(var.sqrt_(), z, value=c2c)
        new = torch.clamp(delta.add_(w), lo, hi)
        if flat is None:
            self.weight.copy_(new)
        else:
            self.weight.view(-1).index_copy_(0, flat, new)

    def train_parameters(self, max_x: Tensor, max_d: Tensor, lr: float) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample pulse-train length BL and probability scales (A, B) for samples whose inputs
        and errors have these max|x| and max|d| (> 0, any matching shapes): the single source of the
        update's train statistics. BL = clamp(ceil(lr max|x| max|d| / dw_min), 1, desired_bl) with
        bl_management, else desired_bl; A = B = sqrt(lr / (dw_min BL)), with update_management
        rebalanced to A max|x| = B max|d|. Input i fires in a slot with probability min(A |x_i|, 1),
        error j with min(B |d_j|, 1), so a coincidence has probability ~ lr |x_i d_j| / (dw_min BL)."""
        cfg = self.update_config
        k = lr / self.device_model.dw_min
        if cfg.bl_management:
            bl = (max_x * max_d).mul_(k).ceil_().clamp_(1, cfg.desired_bl)
        else:
            bl = torch.full_like(max_x, float(cfg.desired_bl))
        q = bl.reciprocal().mul_(k)                                    # k / BL
        if not cfg.update_management:
            r = q.sqrt_()
            return bl, r, r
        a = (max_d / max_x).mul_(q).sqrt_()                            # sqrt(k/BL * max|d|/max|x|)
        return bl, a, q.div_(a)                                        # B = (k/BL) / A

    def coincidence_counts(self, x: Tensor, d: Tensor, lr: float) -> tuple[int, Tensor | None, Tensor, Tensor]:
        """Stochastic pulse trains for a (sub-)batch and their up/down coincidence counts.

        Returns (BL, flat, n_up, n_down): flat indexes the devices that got pulses (n_up, n_down
        are then 1-D), or is None with dense (out, in) counts. One draw covers the x and d trains of
        every sample and slot; on large arrays only the lines whose trains carry at least one pulse
        enter the coincidence matmuls: zero inputs and zero errors (most of an MNIST row, most of a
        small gradient's trains) never fire, so they cost nothing past the draw. Every path counts
        the very same pulses from the same draw (tests/analog/test_core_physics.py checks it).
        """
        cdt = _count_dtype(x.dtype)
        if x.dtype != cdt:
            x, d = x.to(cdt), d.to(cdt)
        n, n_in = x.shape
        # max|x|, max|d| per sample (abs + amax: a third of an inf-norm's time on CPU); all-zero
        # rows: no pulses, no NaN
        mx = x.abs().amax(dim=1, keepdim=True).clamp_min_(_TINY)
        md = d.abs().amax(dim=1, keepdim=True).clamp_min_(_TINY)
        bl, a, b = self.train_parameters(mx, md, lr)                   # (n, 1) each
        sp = torch.cat([x * a, d * b], dim=1)                          # signed fire probabilities
        prob = sp.abs().clamp_max_(1.0)
        n_slots = int(bl.max().item())
        gen = self.generator()
        if n_slots == 1:
            fire = torch.rand(sp.shape, generator=gen, device=sp.device, dtype=cdt) < prob
        else:
            fire = torch.rand((n, n_slots, sp.shape[1]), generator=gen, device=sp.device, dtype=cdt) < prob[:, None, :]
            if self.update_config.bl_management:                       # slots past a sample's BL stay silent
                fire &= (torch.arange(n_slots, device=sp.device) < bl)[:, :, None]
            fire = fire.view(n * n_slots, -1)
        sgn = sp.sign_()                                               # (B, in + out)
        if self.weight.numel() <= _DENSE_NUMEL:                        # small array: count every line
            signed, split, lines = _signed_trains(sgn, fire, n_slots), n_in, None
        else:                                                          # only lines that fired can coincide
            # (any(dim=0) over uint8 as amax: a bool reduction across rows is several times slower)
            lines = fire.view(torch.uint8).amax(dim=0).nonzero().squeeze(1)
            split = int(torch.searchsorted(lines, n_in).item())
            if split == 0 or split == lines.numel():
                empty = sp.new_zeros(0)
                return n_slots, empty.long(), empty, empty
            signed = _signed_trains(sgn.index_select(1, lines), fire.index_select(1, lines), n_slots)
        trains = signed.abs()                                          # (B*BL, lines) 0/1
        total = trains[:, split:].t() @ trains[:, :split]              # all coincidences (rows, cols)
        # down pulses where x d > 0: (all + signed coincidences) / 2, in one addmm
        n_down = torch.addmm(total, signed[:, split:].t(), signed[:, :split], beta=0.5, alpha=0.5)
        if lines is None:
            hit = total.view(-1).nonzero().squeeze(1)
            n_up = total.sub_(n_down)
            if hit.numel() < SPARSE_FRACTION * total.numel():
                return n_slots, hit, n_up.view(-1).index_select(0, hit), n_down.view(-1).index_select(0, hit)
            return n_slots, None, n_up, n_down
        hit = total.view(-1).nonzero().squeeze(1)           # row-major over (rows, cols)
        n_up = total.sub_(n_down)
        rows, cols = lines[split:], lines[:split]
        if hit.numel() < SPARSE_FRACTION * self.weight.numel():
            # each (row, col) of the block as its device's flat index (row - n_in) * n_in + col, then
            # gathered (index_select: advanced indexing costs twice as much per call)
            block = torch.add(cols, rows.sub(n_in).mul_(n_in)[:, None]).view(-1)
            return (n_slots, block.index_select(0, hit), n_up.view(-1).index_select(0, hit),
                    n_down.view(-1).index_select(0, hit))
        full_up = torch.zeros(self.weight.shape, dtype=cdt, device=sp.device)
        full_down = torch.zeros_like(full_up)
        rows = (rows - n_in)[:, None]
        full_up[rows, cols[None, :]] = n_up
        full_down[rows, cols[None, :]] = n_down
        return n_slots, None, full_up, full_down

    def _mean_counts(self, x: Tensor, d: Tensor, lr: float) -> tuple[Tensor, Tensor]:
        """Expected pulse counts lr*|d_j x_i|/dw_min split by sign (deterministic debugging mode)."""
        cdt = _count_dtype(x.dtype)
        x, d = x.to(cdt), d.to(cdt)
        k = lr / self.device_model.dw_min
        total = (d.abs().t() @ x.abs()) * k
        signed = (d.t() @ x) * k
        return (total - signed) * 0.5, (total + signed) * 0.5

    @no_grad
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
            return PulseStats(0, self.weight.shape, [], self.weight, dense=True)
        if lr == 0.0 or x.shape[0] == 0:
            return PulseStats(0, self.weight.shape, [], self.weight)
        if cfg.pulse_type == "none":
            dW = -lr * (d.t().to(self.weight.dtype) @ x.to(self.weight.dtype))
            n_up, n_down = dW.clamp_min(0) / self.device_model.dw_min, (-dW).clamp_min(0) / self.device_model.dw_min
            self.apply_pulses(n_up, n_down, noise=False)
            return PulseStats(0, self.weight.shape, [(None, n_up, n_down)], self.weight)
        wdt = self.weight.dtype
        per_train = cfg.desired_bl * (self.in_features + self.out_features)
        if cfg.mode == "batched" and cfg.pulse_type == "stochastic" and x.shape[0] * per_train > _MAX_TRAIN_ELEMENTS:
            return self._batched_in_chunks(x, d, lr, max(1, _MAX_TRAIN_ELEMENTS // per_train))
        if cfg.mode == "per_sample":
            chunks = [(x[b:b + 1], d[b:b + 1]) for b in range(x.shape[0])]
        else:
            chunks = [(x, d)]
        bl_max = 0
        parts: list[tuple[Tensor | None, Tensor, Tensor]] = []
        for xs, ds in chunks:  # per-sample mode: sequential physics, one sample's pulses at a time
            if cfg.pulse_type == "mean":
                n_up, n_down = self._mean_counts(xs, ds, lr)
                flat = None
            else:
                bl, flat, n_up, n_down = self.coincidence_counts(xs, ds, lr)
                bl_max = max(bl_max, bl)
                if flat is not None and flat.numel() == 0:
                    continue
            if n_up.dtype != wdt:
                n_up, n_down = n_up.to(wdt), n_down.to(wdt)
            self.pulse_devices(flat, n_up, n_down, True)
            parts.append((flat, n_up, n_down))
        return PulseStats(bl_max, self.weight.shape, parts, self.weight)

    def _batched_in_chunks(self, x: Tensor, d: Tensor, lr: float, rows: int) -> PulseStats:
        """Batched mode for very large batches (e.g. conv patches): draw the trains chunk by chunk
        (bounded memory), sum all counts, then apply them once, as one batched update."""
        wdt = self.weight.dtype
        up = torch.zeros(self.weight.numel(), dtype=wdt, device=self.weight.device)
        down = torch.zeros_like(up)
        bl_max = 0
        for start in range(0, x.shape[0], rows):
            bl, flat, n_up, n_down = self.coincidence_counts(x[start:start + rows], d[start:start + rows], lr)
            bl_max = max(bl_max, bl)
            if flat is None:
                up += n_up.reshape(-1).to(wdt)
                down += n_down.reshape(-1).to(wdt)
            elif flat.numel():
                up.index_add_(0, flat, n_up.to(wdt))
                down.index_add_(0, flat, n_down.to(wdt))
        up, down = up.view(self.weight.shape), down.view(self.weight.shape)
        self.apply_pulses(up, down)
        return PulseStats(bl_max, self.weight.shape, [(None, up, down)], self.weight)

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
