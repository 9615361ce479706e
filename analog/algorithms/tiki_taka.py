"""Tiki-Taka family: residual learning on two arrays (docs/design.md §2.5, Wu et al. 2025; Gokmen & Haensch 2020).

A fast residual array P (aihwkit's "A") takes the pulsed gradient update; the main array W ("C")
slowly absorbs P's content through periodic *transfers*: the next column(s) of P are read with a
noisy MVM (one-hot inputs through the tile's forward IOConfig, as hardware would) and written onto W.
The forward/backward MVMs read the effective weight ``W + gamma * (P - R)``.

- ``TikiTaka``: the read column is pulsed onto W with the stochastic pulsed update at ``transfer_lr``.
- ``TTv2``: the read goes into a digital buffer H (in units of ``threshold * dw_min`` of W); where
  ``|H| >= 1`` up to ``max_pulses`` pulses go to W and H is reduced by them. ``buffer_decay`` forgets.
- ``RLv2``: residual learning v2, ``H <- (1 - beta) H + beta * transfer_lr * read(P)``: H is a low-pass
  estimate of P; threshold as TTv2. Zero-shift on by default.
- ``reference="zero-shift"``: before training, P is driven to its symmetric point by alternating up and
  down pulses (as on hardware; bursts shrinking from ``zero_shift_burst`` to 1 pulse), and a reference
  R is programmed to that state, so the read ``P - R`` is 0 exactly where G vanishes (G(0) = 0 for P).
  Without it, P relaxes to its symmetric point under noisy updates and the transfers keep writing
  that offset into W, which is why Tiki-Taka fails when the symmetric point is off zero.

Transfers and pulse bursts loop over *time* (sequential physics), never over devices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from analog.algorithms.base import Algorithm, AlgorithmState, register_algorithm
from analog.devices import Device, device_from_dict
from analog.energy import counters as _counters
from analog.mvm import noisy_mvm
from analog.periphery import IOConfig, UpdateConfig
from analog.pulsed import PulsedArray, PulseStats
from analog.rounding import quantize_fixed
from analog.validation import check_bool, check_choice, check_instance, check_int, check_number

REFERENCES = ("none", "zero-shift")
_OFF = ("off", "none")
#: tiles above this many devices patch their cached effective weight where an update changed it;
#: smaller ones recompute it (two whole-tile ops cost less than the dozen small ones of a patch)
_REFRESH_NUMEL = 1 << 15


@register_algorithm
@dataclass(frozen=True)
class TikiTaka(Algorithm):
    """Tiki-Taka: pulsed gradient into P, every ``transfer_every`` updates the next
    ``columns_per_transfer`` columns of P are read and pulsed onto W at ``transfer_lr`` (absolute, not
    scaled by the optimizer's lr). ``fast_device``: P's device (default: the tile's device).
    ``transfer_io``: the periphery that reads P (default: the tile's forward IOConfig)."""

    gamma: float = 0.1
    transfer_every: int = 1
    transfer_lr: float = 1.0
    columns_per_transfer: int = 1
    fast_device: Device | None = None
    reference: str = "none"
    zero_shift_burst: int = 16
    zero_shift_cycles: int = 40
    transfer_io: "IOConfig | None" = None

    def __post_init__(self) -> None:
        if self.transfer_io is not None:
            check_instance("transfer_io", self.transfer_io, IOConfig,
                           "an analog.IOConfig or omitted (then the tile's forward IOConfig reads P)")
        object.__setattr__(self, "gamma", check_number("gamma", self.gamma, 0.0))
        check_int("transfer_every", self.transfer_every, 1)
        object.__setattr__(self, "transfer_lr", check_number("transfer_lr", self.transfer_lr, 0.0, lo_open=True))
        check_int("columns_per_transfer", self.columns_per_transfer, 1)
        if self.fast_device is not None:
            check_instance("fast_device", self.fast_device, Device, "an analog.devices.Device or omitted")
        check_choice("reference", self.reference, REFERENCES, quote=True)
        check_int("zero_shift_burst", self.zero_shift_burst, 1)
        check_int("zero_shift_cycles", self.zero_shift_cycles, 0)

    @classmethod
    def from_kwargs(cls, data: dict[str, Any]) -> "TikiTaka":
        data = dict(data)
        fd = data.get("fast_device")
        if fd is None or (isinstance(fd, str) and fd.lower() in _OFF):
            data["fast_device"] = None
        else:
            data["fast_device"] = device_from_dict(fd, prefix="fast_device.")
        tio = data.get("transfer_io")
        if tio is None or (isinstance(tio, str) and tio.lower() in _OFF):
            data["transfer_io"] = None
        elif isinstance(tio, dict):
            data["transfer_io"] = IOConfig.from_dict(tio, prefix="transfer_io.")
        for key in ("buffer_bits", "fast_lr"):
            if isinstance(data.get(key), str) and data[key].lower() in _OFF:
                data[key] = None
        return cls(**data)

    def build(self, out_features: int, in_features: int, *, device: Device, update: UpdateConfig,
              forward: IOConfig, generator: torch.Generator) -> "TikiTakaState":
        return TikiTakaState(out_features, in_features, device, update, forward, generator, self)


@register_algorithm
@dataclass(frozen=True)
class TTv2(TikiTaka):
    """Tiki-Taka v2: reads of P accumulate in a digital buffer H; a pulse to W fires only where
    ``|H| >= threshold * dw_min(W)``. ``buffer_bits``: keep H in signed fixed point (``buffer_int_bits``
    of them integer incl. sign, in units of the threshold) with stochastic rounding; None = float32.
    ``chop_probability`` > 0: chopped TTv2 (Rasch et al. 2023) -- each input column of P carries a
    sign c in {+1, -1} (the gradient goes in as c*x, the read comes out times c) that flips with this
    probability after the column's transfer, so P's offset (its drift to the symmetric point)
    averages out of H instead of being written into W."""

    buffer_decay: float = 0.0
    threshold: float = 1.0
    max_pulses: int = 1
    buffer_bits: int | None = None
    buffer_int_bits: int = 4
    chop_probability: float = 0.0
    #: after a fire, H <- 0 (aihwkit's forget_buffer with momentum 0) instead of H <- H - n
    forget_buffer: bool = False
    #: > 0: the threshold is scaled by auto_granularity / (updates per full pass over the columns),
    #: so that a column's reads need ~auto_granularity updates' worth of P to fire (aihwkit's
    #: auto_granularity, which counts mat-vecs; here optimizer updates)
    auto_granularity: float = 0.0
    #: P's pulsed update at this absolute rate instead of the optimizer's lr (None: the optimizer's)
    fast_lr: float | None = None
    #: with fast_lr: P's rate is fast_lr * desired_bl * dw_min(P) / (EMA max|x| * EMA max|d|), so that
    #: an update fires ~fast_lr * desired_bl pulses at the largest gradient element (aihwkit's auto_scale)
    auto_scale: bool = False
    #: buffer increments times the optimizer's lr (aihwkit's scale_transfer_lr): with a fixed
    #: fast_lr the optimizer's lr (and its schedule) then sets the transfer rate
    scale_transfer_lr: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for flag in ("forget_buffer", "auto_scale", "scale_transfer_lr"):
            check_bool(flag, getattr(self, flag))
        object.__setattr__(self, "auto_granularity", check_number("auto_granularity", self.auto_granularity, 0.0))
        if self.fast_lr is not None:
            object.__setattr__(self, "fast_lr", check_number("fast_lr", self.fast_lr, 0.0, lo_open=True))
        elif self.auto_scale:
            raise ValueError("auto_scale: got true without fast_lr; set fast_lr (e.g. 0.5) or auto_scale = false")
        object.__setattr__(self, "chop_probability", check_number("chop_probability", self.chop_probability,
                                                                  0.0, 1.0))
        object.__setattr__(self, "buffer_decay", check_number("buffer_decay", self.buffer_decay, 0.0, 1.0,
                                                              hi_open=True))
        object.__setattr__(self, "threshold", check_number("threshold", self.threshold, 0.0, lo_open=True))
        check_int("max_pulses", self.max_pulses, 1)
        check_int("buffer_int_bits", self.buffer_int_bits, 1)
        if self.buffer_bits is not None:
            check_int("buffer_bits", self.buffer_bits, self.buffer_int_bits + 1, 32, note=" or 'off'")

    #: H <- (1 - buffer_decay) H + gain * transfer_lr * read(P); TTv2: gain 1
    def buffer_gain(self) -> float:
        return 1.0

    def build(self, out_features: int, in_features: int, *, device: Device, update: UpdateConfig,
              forward: IOConfig, generator: torch.Generator) -> "BufferedTransferState":
        return BufferedTransferState(out_features, in_features, device, update, forward, generator, self)


@register_algorithm
@dataclass(frozen=True)
class RLv2(TTv2):
    """Residual learning v2 (Wu et al. 2025): ``H <- (1 - beta) H + beta * transfer_lr * read(P)`` with
    ``beta = buffer_decay``, thresholded into pulses on W; zero-shift by default."""

    buffer_decay: float = 0.1
    reference: str = "zero-shift"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("buffer_decay", self.buffer_decay, 0, lo_open=True, note=" for RLv2 (it is beta)")

    def buffer_gain(self) -> float:
        return self.buffer_decay


@register_algorithm
@dataclass(frozen=True)
class AGAD(TTv2):
    """AGAD (Rasch et al., "Fast and robust analog in-memory deep neural network training", Nat.
    Commun. 15:7133, 2024; aihwkit's DynamicTransferCompound): chopped TTv2 with an *on-the-fly
    reference*. Every column of P is read each pass; a running mean of its reads (momentum
    ``tail_weightening / n``, n = max(ceil(1 / chop_probability), 2) reads per chopper period) is
    frozen as the reference when the column's chopper flips, and the buffer takes
    ``c * (read - reference)``: P's own state in the previous period. Since the gradient enters P
    with the sign c, the difference is the gradient accumulated since the flip; P's offset from
    its symmetric point (or a miscalibrated reference R) cancels, so no zero-shift is needed, and P
    is never reset. The chopper flips every n reads of a column (``chop_random``: with probability
    chop_probability after each read instead); W is written only once a column has been read more
    than n times (the first reference is valid). Defaults: aihwkit's DynamicTransferCompound
    (in_chop_prob 0.1, tail_weightening 5, forget_buffer)."""

    chop_probability: float = 0.1
    tail_weightening: float = 5.0
    chop_random: bool = False
    forget_buffer: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("chop_probability", self.chop_probability, 0, lo_open=True,
                     note=" for AGAD (the chopper period is 1 / chop_probability reads)")
        object.__setattr__(self, "tail_weightening", check_number("tail_weightening", self.tail_weightening,
                                                                  0.0, lo_open=True))
        check_bool("chop_random", self.chop_random)

    @property
    def period(self) -> int:
        """Reads of a column per chopper period (aihwkit's getNumInChopSamples)."""
        return max(math.ceil(1.0 / self.chop_probability - 1e-9), 2)

    def build(self, out_features: int, in_features: int, *, device: Device, update: UpdateConfig,
              forward: IOConfig, generator: torch.Generator) -> "AGADState":
        return AGADState(out_features, in_features, device, update, forward, generator, self)


class TikiTakaState(AlgorithmState):
    """Arrays P (``fast``), W (``main``), reference R and the transfer schedule of one tile."""

    def __init__(self, out_features: int, in_features: int, device: Device, update: UpdateConfig,
                 forward: IOConfig, generator: torch.Generator, algorithm: TikiTaka) -> None:
        super().__init__(out_features, in_features, generator)
        self.algorithm = algorithm
        self.fast = PulsedArray(out_features, in_features, algorithm.fast_device or device, update, generator)
        self.main = PulsedArray(out_features, in_features, device, update, generator)
        self.register_buffer("reference", torch.zeros(out_features, in_features))
        self.register_buffer("chopper", torch.ones(in_features))   # per-column sign of P (chopped TTv2)
        self.steps = 0          # optimizer updates seen
        self.next_column = 0    # next column of P to transfer
        self.transfers = 0
        self.transfer_io = algorithm.transfer_io or forward
        if algorithm.reference == "zero-shift":
            self.zero_shift()

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict[str, int]:
        return {"steps": self.steps, "next_column": self.next_column, "transfers": self.transfers}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.steps = int(state["steps"])
        self.next_column = int(state["next_column"])
        self.transfers = int(state["transfers"])

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "TikiTakaState":
        self._w_eff = None  # .to()/.cuda()/.double(): new tensors, drop the cached effective weight
        return super()._apply(fn, *args, **kwargs)

    @property
    def _chopping(self) -> bool:
        return getattr(self.algorithm, "chop_probability", 0.0) > 0.0

    def residual(self) -> Tensor:
        """P - R: what a (noise-free) read of the fast array returns."""
        return self.fast.weight - self.reference

    def _weights_key(self) -> tuple[tuple[int, int], ...]:
        """(storage, version) of every tensor W + gamma (P - R) reads: read five times per step, so
        straight from the buffer dicts (a nn.Module attribute lookup costs more than the key)."""
        main, fast, own = self._modules["main"]._buffers, self._modules["fast"]._buffers, self._buffers
        w, p, r, c = main["weight"], fast["weight"], own["reference"], own["chopper"]
        return ((w.data_ptr(), w._version), (p.data_ptr(), p._version), (r.data_ptr(), r._version),
                (c.data_ptr(), c._version))

    def effective_weight(self) -> Tensor:
        """W + gamma * (P - R), cached until any of the tensors it reads changes (forward, backward
        and the parameter mirror all read it once per step; ``update`` refreshes it in place where
        it changed the arrays)."""
        g = self.algorithm.gamma
        if g == 0.0:
            return self.main.weight
        key = self._weights_key()
        cached = getattr(self, "_w_eff", None)
        if cached is None or cached[0] != key:
            if self._chopping:
                w = self.main.weight + g * self.residual() * self.chopper
            else:
                w = torch.add(self.main.weight, self.fast.weight, alpha=g).sub_(self.reference, alpha=g)
            cached = (key, w)
            self._w_eff = cached
        return cached[1]

    def _refresh_effective(self, flat: Tensor | None, cols: Tensor | None) -> None:
        """Bring the cached effective weight up to date after this state itself pulsed P at the
        devices ``flat`` and transferred the columns ``cols`` (a few hundred devices of a 200k-device
        tile: cheaper than recomputing W + gamma (P - R) everywhere)."""
        cached = self._w_eff
        g = self.algorithm.gamma
        w = cached[1]
        chop = self._chopping
        if flat is not None and flat.numel():
            vals = self.fast.weight.view(-1)[flat].sub_(self.reference.view(-1)[flat])
            if chop:
                vals.mul_(self.chopper[flat % self.in_features])
            w.view(-1).index_copy_(0, flat, vals.mul_(g).add_(self.main.weight.view(-1)[flat]))
        if cols is not None:
            at = self._at(cols)
            vals = torch.sub(self.fast.weight[:, at], self.reference[:, at])
            if chop:
                vals.mul_(self.chopper[at])
            w[:, at] = vals.mul_(g).add_(self.main.weight[:, at])
        self._w_eff = (self._weights_key(), w)

    @torch.no_grad()
    def program(self, w: Tensor) -> None:
        """W <- w (clipped to its bounds); P back to its reference, so the residual reads 0."""
        self.main.program(w)
        self.fast.program(self.reference)

    # ------------------------------------------------------------------ zero-shift
    @torch.no_grad()
    def zero_shift(self) -> Tensor:
        """Drive every device of P to its symmetric point with alternating up/down pulses (bursts of
        ``zero_shift_burst``, halving down to single pulses, ``zero_shift_cycles`` pairs of bursts per
        size), then program the reference to that state. Returns the reference."""
        a = self.algorithm
        ones = torch.ones_like(self.fast.weight)
        burst = a.zero_shift_burst
        while True:
            n = ones * burst
            for _ in range(a.zero_shift_cycles):  # sequential in time: each burst sees the last state
                self.fast.apply_pulses(n, n)
            if burst == 1:
                break
            burst = max(1, burst // 2)
        self.reference.copy_(self.fast.weight)
        return self.reference

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float) -> PulseStats:
        """Pulse the gradient into P; every ``transfer_every`` updates transfer the next columns."""
        cached = getattr(self, "_w_eff", None)
        fresh = self.algorithm.gamma != 0.0 and cached is not None and cached[0] == self._weights_key()
        self.__dict__["_lr"] = lr                      # (no nn.Module attribute write)
        stats = self.fast.pulse_update(x * self.chopper if self._chopping else x, d, self.fast_rate(x, d, lr))
        self.steps += 1
        cols = self.transfer() if self.steps % self.algorithm.transfer_every == 0 else None
        touched = stats.touched()
        if fresh and touched is not None and self.main.weight.numel() > _REFRESH_NUMEL:
            self._refresh_effective(touched, cols)
        return stats

    def fast_rate(self, x: Tensor, d: Tensor, lr: float) -> float:
        """The learning rate of P's pulsed update (Tiki-Taka: the optimizer's)."""
        return lr

    def _next_columns(self) -> Tensor:
        """The next columns to transfer (a run that does not wrap is also kept as a slice, see _at)."""
        k = min(self.algorithm.columns_per_transfer, self.in_features)
        start = self.next_column
        self.next_column = (start + k) % self.in_features
        if start + k <= self.in_features:
            cols = self._column_index()[start:start + k]
            self.__dict__["_run"] = (cols, slice(start, start + k))      # (no nn.Module attribute write)
            return cols
        return torch.arange(start, start + k, device=self.fast.weight.device) % self.in_features

    def _at(self, cols: Tensor) -> Tensor | slice:
        """How to index the columns ``cols`` of an (out, in) array: the slice of the run
        _next_columns last returned (a view), else the index tensor itself (a gather)."""
        run = self.__dict__.get("_run")
        return run[1] if run is not None and run[0] is cols else cols

    def _column_index(self) -> Tensor:
        """0 .. in_features - 1 on the arrays' device, made once (kept out of the state dict)."""
        index = self.__dict__.get("_column_range")
        if index is None or index.device != self.fast.weight.device:
            index = torch.arange(self.in_features, device=self.fast.weight.device)
            self.__dict__["_column_range"] = index
        return index

    def _eye(self, k: int, like: Tensor) -> Tensor:
        """The k one-hot inputs of a read, made once per size (never written to)."""
        eye = self.__dict__.get("_read_eye")
        if eye is None or eye.shape[0] != k or eye.dtype != like.dtype or eye.device != like.device:
            eye = torch.eye(k, dtype=like.dtype, device=like.device)
            self.__dict__["_read_eye"] = eye
        return eye

    @torch.no_grad()
    def read_columns(self, cols: Tensor) -> Tensor:
        """Read columns ``cols`` of P - R through the forward periphery: one-hot inputs, one noisy
        MVM for all of them. Returns (len(cols), out)."""
        # a one-hot input only drives its own column: the same MVM as identity inputs on those
        # columns (same scaling, DAC levels, read and output noise), without touching the others
        at = self._at(cols)
        sub = torch.sub(self.fast.weight[:, at], self.reference[:, at])
        eye = self._eye(sub.shape[1], sub)
        return noisy_mvm(eye, sub, self.transfer_io, self.generator(eye.device))

    @torch.no_grad()
    def transfer(self) -> Tensor:
        """Read the next column(s) of P and write them onto W. Returns the columns transferred."""
        cols = self._next_columns()
        rec = _counters.ACTIVE
        if rec is None:
            read = self.read_columns(cols)
            self._write(cols, read)
        else:       # one one-hot read per column: 1 active input line, out_features conversions
            io, tile = self.transfer_io, rec.current_tile
            rec.mvm(tile, "transfer", len(cols), 1, self.out_features, io.inp_res, io.out_res)
            rec.transfer(tile, len(cols), self.out_features, isinstance(self, BufferedTransferState))
            with rec.within(tile, "transfer"):
                read = self.read_columns(cols)
                self._write(cols, read)
        self.transfers += 1
        return cols

    def _write(self, cols: Tensor, read: Tensor) -> None:
        self.pulse_columns(cols, read, self.algorithm.transfer_lr)

    @torch.no_grad()
    def pulse_columns(self, cols: Tensor, values: Tensor, lr: float) -> None:
        """``W[:, cols] += lr * values.T`` as the pulsed update of one-hot inputs against ``values``
        (k, out): the same pulse trains (BL, update management) PulsedArray.pulse_update would draw for
        those inputs, sampled per column -- a one-hot input has one train, so a device's coincidences
        are Binomial(m, p_d) given that train's m pulses -- without a full-array coincidence matmul."""
        arr = self.main
        if arr.device_model.is_ideal or arr.update_config.pulse_type != "stochastic":
            onehot = torch.zeros(len(cols), self.in_features, dtype=values.dtype, device=values.device)
            onehot[torch.arange(len(cols), device=values.device), cols] = 1.0
            arr.pulse_update(onehot, -values, lr)  # W -= lr d^T x with d = -values
            return
        mag = values.abs()
        md = mag.amax(dim=1).clamp_min_(1e-30)                                 # (k,)
        bl, a, b = arr.train_parameters(torch.ones_like(md), md, lr)            # one-hot: max|x| = 1
        g = arr.generator()
        m = torch.binomial(bl, a.clamp(max=1.0), generator=g)                   # pulses in each x train
        n = torch.binomial(m[:, None].expand_as(mag).contiguous(), (b[:, None] * mag).clamp_(max=1.0),
                           generator=g)                                        # (k, out) coincidences
        signed = n.mul_(values.sign())                                          # -sign(x d) with d = -v
        self._pulse_main_columns(cols, signed)

    def _pulse_main_columns(self, cols: Tensor, signed: Tensor) -> None:
        """Apply ``signed`` (k, out) pulse counts (+ up, - down) to W's columns ``cols``, touching
        only the devices that get pulses (a dense (out, in) count matrix per transfer would cost
        more than the transfer itself on a 256x784 tile)."""
        kk, jj = signed.nonzero(as_tuple=True)
        if kk.numel() == 0:
            return
        at = self._at(cols)
        if isinstance(at, slice) and at.stop - at.start == 1:
            flat = jj * self.in_features + at.start                            # row-major (out, in)
        else:
            flat = jj * self.in_features + cols[kk]
        counts = signed[kk, jj].to(self.main.weight.dtype)
        self.main.pulse_devices(flat, counts.clamp_min(0.0), counts.neg().clamp_min_(0.0))


class BufferedTransferState(TikiTakaState):
    """TTv2 / RLv2: reads go into the digital buffer H (units of threshold * nominal dw_min of W)."""

    algorithm: TTv2

    def __init__(self, out_features: int, in_features: int, device: Device, update: UpdateConfig,
                 forward: IOConfig, generator: torch.Generator, algorithm: TTv2) -> None:
        super().__init__(out_features, in_features, device, update, forward, generator, algorithm)
        self.register_buffer("buffer", torch.zeros(out_features, in_features))
        self.pulses_fired = 0

    def get_extra_state(self) -> dict[str, int]:
        return {**super().get_extra_state(), "pulses_fired": self.pulses_fired}

    def set_extra_state(self, state: dict[str, int]) -> None:
        super().set_extra_state(state)
        self.pulses_fired = int(state.get("pulses_fired", 0))

    @property
    def pulse_size(self) -> float:
        """One buffer unit in weight units: threshold * W's nominal dw_min (what the digital side
        knows; the per-device steps vary around it), times auto_granularity / (updates per pass over
        the columns) where auto_granularity is set. Ideal W: threshold itself."""
        a = self.algorithm
        dev = self.main.device_model
        size = a.threshold * (dev.dw_min if not dev.is_ideal else 1.0)
        if a.auto_granularity > 0:
            passes = -(-self.in_features // min(a.columns_per_transfer, self.in_features))
            size *= a.auto_granularity / (passes * a.transfer_every)
        return size

    def fast_rate(self, x: Tensor, d: Tensor, lr: float) -> float:
        """fast_lr (absolute), auto-scaled by the running max|x| max|d| where asked; else ``lr``."""
        a = self.algorithm
        if a.fast_lr is None:
            return lr
        if not a.auto_scale:
            return a.fast_lr
        mx, md = float(x.abs().amax()), float(d.abs().amax())
        ema = self.__dict__.get("_auto_max")
        ema = (mx, md) if ema is None else (0.99 * ema[0] + 0.01 * mx, 0.99 * ema[1] + 0.01 * md)
        self.__dict__["_auto_max"] = ema
        if ema[0] * ema[1] <= 0:
            return a.fast_lr
        dev = self.fast.device_model
        return a.fast_lr * self.fast.update_config.desired_bl * (dev.dw_min if not dev.is_ideal else 1.0) \
            / (ema[0] * ema[1])

    def _increment(self) -> float:
        """Buffer units per unit of read: gain * transfer_lr (times the optimizer's lr where scaled)
        / pulse_size."""
        a = self.algorithm
        scale = self.__dict__.get("_lr", 1.0) if a.scale_transfer_lr else 1.0
        return a.buffer_gain() * a.transfer_lr * scale / self.pulse_size

    @torch.no_grad()
    def program(self, w: Tensor) -> None:
        super().program(w)
        self.buffer.zero_()

    def _write(self, cols: Tensor, read: Tensor) -> None:
        a = self.algorithm
        at = self._at(cols)
        if self._chopping:
            read = read * self.chopper[at][:, None]                           # undo the column's sign
            flip = torch.rand(len(cols), generator=self.generator(read.device), device=read.device) \
                < a.chop_probability
            self.chopper[at] = torch.where(flip, -self.chopper[at], self.chopper[at])
        h = self.buffer[:, at]                                               # (out, k)
        h = (1.0 - a.buffer_decay) * h + self._increment() * read.t()
        self._fire(cols, h)

    def _fire(self, cols: Tensor, h: Tensor, write: Tensor | None = None) -> None:
        """Threshold the new buffer columns ``h`` (out, k) into pulses on W's columns ``cols``; where
        ``write`` (k,) is False the buffer is reduced as if fired but W is not pulsed."""
        a = self.algorithm
        at = self._at(cols)
        if a.buffer_bits is not None:
            h = quantize_fixed(h, a.buffer_int_bits, a.buffer_bits - a.buffer_int_bits, mode="stochastic",
                               generator=self.generator(h.device))
        n = torch.trunc(h).clamp(-a.max_pulses, a.max_pulses)                # fire only past |H| >= 1
        self.buffer[:, at] = torch.where(n != 0, 0.0, h) if a.forget_buffer else h - n
        if write is not None:
            n = n * write[None, :]
        fired = int(n.abs().sum().item())
        if fired == 0:
            return
        self.pulses_fired += fired
        if self.main.device_model.is_ideal:
            self.main.weight[:, at] += n * self.algorithm.threshold
            return
        self._pulse_main_columns(cols, n.t())


class AGADState(BufferedTransferState):
    """AGAD: TTv2's buffer fed by ``c * (read - reference)`` with the reference taken on the fly
    (running mean of the column's reads in the chopper period before the last flip)."""

    algorithm: AGAD

    def __init__(self, out_features: int, in_features: int, device: Device, update: UpdateConfig,
                 forward: IOConfig, generator: torch.Generator, algorithm: AGAD) -> None:
        super().__init__(out_features, in_features, device, update, forward, generator, algorithm)
        self.register_buffer("running_mean", torch.zeros(out_features, in_features))
        self.register_buffer("past_mean", torch.zeros(out_features, in_features))
        self.register_buffer("reads", torch.zeros(in_features))            # reads of each column
        self.register_buffer("switched", torch.zeros(in_features, dtype=torch.bool))

    @property
    def _chopping(self) -> bool:
        return True

    @torch.no_grad()
    def program(self, w: Tensor) -> None:
        """W <- w; P back to its reference; buffer, means and read counts restart (a new warm-up)."""
        super().program(w)
        self.running_mean.zero_()
        self.past_mean.zero_()
        self.reads.zero_()
        self.switched.zero_()

    def _write(self, cols: Tensor, read: Tensor) -> None:
        a = self.algorithm
        at = self._at(cols)
        val = read.t()                                                       # (out, k), not sign-corrected
        switched = self.switched[at]
        past = torch.where(switched[None, :], self.running_mean[:, at], self.past_mean[:, at])
        self.past_mean[:, at] = past                                         # new period: freeze the reference
        chop = self.chopper[at]
        reads = self.reads[at] + 1.0
        self.reads[at] = reads
        n = a.period
        h = (1.0 - a.buffer_decay) * self.buffer[:, at] + self._increment() * (val - past) * chop[None, :]
        m = min(a.tail_weightening / n, 1.0)
        self.running_mean[:, at] = self.running_mean[:, at] * (1.0 - m) + val * m
        if a.chop_random:
            flip = torch.rand(len(cols), generator=self.generator(val.device), device=val.device) < a.chop_probability
        else:
            flip = torch.remainder(reads, n) == 0
        self.chopper[at] = torch.where(flip, -chop, chop)
        self.switched[at] = flip
        self._fire(cols, h, write=reads > n)                                 # first reference valid after n reads


__all__ = ["REFERENCES", "AGAD", "AGADState", "BufferedTransferState", "RLv2", "TTv2", "TikiTaka", "TikiTakaState"]
