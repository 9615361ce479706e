"""Counts of the events a simulated run fires, per tile and phase (what analog.energy.model prices).

Why here and not from a mapping: the simulator fires every update pulse and converts every MVM
output, so the counts are the run's own, not an estimate from layer shapes. The hooks sit in the few
places every event passes through (AnalogTile's MVMs, update and programming, PulsedArray.pulse_devices,
the Tiki-Taka transfer, the bound-management retry, AnalogOptimizer's digital step). Off (the default)
each hook costs one module-attribute read and a ``None`` test; counting never draws a random number or
touches a weight, and its sums stay on the tensors' device until read (no synchronisation per step).

    from analog.energy import counting
    with counting() as events:
        events.name_tiles(model)             # tile keys from module paths (else "tile0 (out x in)")
        with events.phase("train"):
            ...train...
    events.totals()                          # {event: count} over tiles and phases

Events (all plain counts; ``<b>`` is a converter's bit width, ``0`` for a converter switched off):
``mvm_fwd`` / ``mvm_bwd`` / ``mvm_transfer`` input vectors through the crossbar, ``mac_*`` their
multiply-accumulates (vectors x rows x columns), ``dac_b<b>`` / ``adc_b<b>`` conversions, ``bm_retry``
vectors read again by bound management; ``update_calls``, ``update_samples`` (rows of x, one per
sample or conv patch), ``update_slots`` (samples x pulse-train length BL: the time slots of a
stochastic update; ``update_line_slots`` the same times the lines driven, in + out), ``mac_update``
(samples x rows x columns: the outer product a digital trainer would compute), ``pulses_update`` / ``pulses_transfer`` / ``pulses_program`` pulses the devices
received, ``write_steps_<ctx>`` the largest count one device got per write (a parallel write's
duration in pulses), ``transfers``, ``devices_programmed``; digital work ``dig_act`` (elementwise
work on every MVM output: activation or its derivative, scaling), ``dig_nm`` (noise management: the
abs-max per input, the rescale per output), ``dig_mp_mac`` (MixedPrecision's outer-product
accumulation, and the buffered transfers' accumulation), ``dig_opt`` (digital parameters the
optimizer updates), ``dig_quant`` (values quantized outside the tiles, e.g. latents to upload).
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor, nn

#: the recorder the hooks report to; None = counting off (the hooks then do nothing)
ACTIVE: "EventCounter | None" = None

#: where a tile's MVM counts go (the IO direction)
DIRECTIONS = ("fwd", "bwd", "transfer")
#: the phases a fleet client reports (any other name is allowed)
PHASES = ("program", "train", "encode")

_DIGITAL = "digital"     # the key of work no tile does (digital parameters, latents)
_UNATTRIBUTED = "arrays outside a tile call"    # pulses fired while building a tile (zero-shift)


class EventCounter:
    """Counts per (tile, phase); tensors from pulse counts stay lazy until ``counts()`` reads them."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(float))
        self._names: dict[int, str] = {}
        self._shapes: dict[str, tuple[int, int]] = {}
        self._keep: dict[int, Any] = {}      # tiles seen (kept alive so that id() stays unique)
        self._per_device: dict[tuple[str, str], Tensor] = {}    # pulses per device, per tile and context
        self.current_phase = "train"
        self._tile: Any = None               # the tile whose update/program/MVM is running
        self._context = "update"              # what pulses count as: update, transfer, program

    # ------------------------------------------------------------------ naming and phases
    def name_tiles(self, model: nn.Module, prefix: str = "") -> None:
        """Key each analog tile of ``model`` by its module path (e.g. ``encoder.0``)."""
        for name, module in model.named_modules():
            tile = getattr(module, "tile", None)
            if tile is not None and hasattr(tile, "forward_mvm"):
                self._register(tile, prefix + (name or "tile"))

    def watch_digital(self, model: nn.Module, prefix: str = "") -> list[Any]:
        """Count the MACs of ``model``'s digital nn.Linear / nn.Conv2d layers (a digital reference
        model has no tiles): forward MACs per call, and while training with gradients on as many
        again for the input gradient and for the weight gradient. Returns the hook handles (remove
        them when done)."""
        handles = []
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                handles.append(module.register_forward_hook(self._digital_hook(prefix + (name or "layer"))))
        return handles

    def _digital_hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if ACTIVE is not self:
                return
            per_out = module.in_features if isinstance(module, nn.Linear) else \
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs = output.numel() * per_out
            b = self._counts[(name, self.current_phase)]
            b["mac_fwd"] += macs
            b["dig_act"] += output.numel()
            if module.training and output.requires_grad:
                b["mac_bwd"] += macs
                b["mac_update"] += macs
        return hook

    def _register(self, tile: Any, name: str) -> str:
        old = self._names.get(id(tile))
        if old is not None and old != name:          # counted before it was named: move its counts
            self._shapes.pop(old, None)
            for tile_key, phase in [k for k in self._counts if k[0] == old]:
                moved = self._counts.pop((tile_key, phase))
                bucket = self._counts[(name, phase)]
                for event, value in moved.items():
                    bucket[event] = bucket[event] + value
            for tile_key, ctx in [k for k in self._per_device if k[0] == old]:
                self._per_device[(name, ctx)] = self._per_device.pop((tile_key, ctx))
        self._names[id(tile)] = name
        self._keep[id(tile)] = tile
        self._shapes[name] = (int(tile.out_features), int(tile.in_features))
        return name

    def _key(self, tile: Any) -> str:
        if tile is None:
            return _DIGITAL
        name = self._names.get(id(tile))
        if name is None:
            name = self._register(tile, f"tile{len(self._names)} ({tile.out_features}x{tile.in_features})")
        return name

    @contextmanager
    def phase(self, name: str) -> Iterator["EventCounter"]:
        """Count what runs inside under phase ``name`` (nested: the inner one wins)."""
        before, self.current_phase = self.current_phase, str(name)
        try:
            yield self
        finally:
            self.current_phase = before

    @property
    def current_tile(self) -> Any:
        """The tile whose update, programming or MVM is running (None outside them)."""
        return self._tile

    def _bucket(self, tile: Any) -> dict[str, Any]:
        return self._counts[(self._key(tile), self.current_phase)]

    # ------------------------------------------------------------------ hooks (called by analog/)
    def mvm(self, tile: Any, direction: str, vectors: int, n_in: int, n_out: int, inp_res: int | None,
            out_res: int | None) -> None:
        """``vectors`` inputs of size n_in through an n_out x n_in crossbar and its converters."""
        b = self._bucket(tile)
        b[f"mvm_{direction}"] += vectors
        b[f"mac_{direction}"] += vectors * n_in * n_out
        b[f"dac_b{inp_res or 0}"] += vectors * n_in
        b[f"adc_b{out_res or 0}"] += vectors * n_out
        if direction != "transfer":
            b["dig_act"] += vectors * n_out
            b["dig_nm"] += vectors * (n_in + n_out)

    def retry(self, vectors: int, n_in: int, n_out: int, inp_res: int | None, out_res: int | None) -> None:
        """Bound management read ``vectors`` inputs again (halved): more conversions and MACs."""
        b = self._bucket(self._tile)
        b["bm_retry"] += vectors
        b["mac_retry"] += vectors * n_in * n_out
        b[f"dac_b{inp_res or 0}"] += vectors * n_in
        b[f"adc_b{out_res or 0}"] += vectors * n_out

    @contextmanager
    def within(self, tile: Any, context: str) -> Iterator[None]:
        """Attribute the pulses and retries fired inside to ``tile`` and to ``context``."""
        before = self._tile, self._context
        self._tile, self._context = tile, context
        try:
            yield
        finally:
            self._tile, self._context = before

    def update(self, tile: Any, samples: int, bl: int, n_out: int, n_in: int, digital_accumulate: bool) -> None:
        """One optimizer step of ``tile``: ``samples`` rows, pulse trains up to ``bl`` slots long."""
        b = self._bucket(tile)
        b["update_calls"] += 1
        b["update_samples"] += samples
        b["update_slots"] += samples * bl
        b["update_line_slots"] += samples * bl * (n_in + n_out)
        b["mac_update"] += samples * n_out * n_in
        if digital_accumulate:
            b["dig_mp_mac"] += samples * n_out * n_in

    def pulses(self, n_up: Tensor, n_down: Tensor, flat: Tensor | None = None, array: Tensor | None = None) -> None:
        """Pulses a write applied: per device counts, dense (out, in) or gathered at the flat indices
        ``flat`` of ``array`` (the weights they land on). Summed lazily; each device's running total
        (endurance) is kept per tile and context, once the write says which array it hit."""
        key = self._key(self._tile) if self._tile is not None else _UNATTRIBUTED
        b = self._counts[(key, self.current_phase)]
        both = n_up + n_down
        b[f"pulses_{self._context}"] = b[f"pulses_{self._context}"] + both.sum()
        if not both.numel():
            return
        b[f"write_steps_{self._context}"] = b[f"write_steps_{self._context}"] + both.amax()
        if array is not None:
            per = self._per_device.get((key, self._context))
            if per is None or per.shape != array.shape:
                per = self._per_device[(key, self._context)] = torch.zeros(array.shape, dtype=both.dtype,
                                                                           device=both.device)
            if flat is None:
                per.add_(both.view(per.shape))
            else:
                per.view(-1).index_add_(0, flat, both.to(per.dtype))

    def pulses_per_device(self) -> dict[str, dict[str, float]]:
        """{tile/context: {max, mean}} of the pulses each device received over the whole count: the
        wear that device endurance (e.g. ~1e6-1e9 writes for PCM/RRAM) is measured against."""
        return {f"{tile}/{ctx}": {"max": float(t.max().item()), "mean": float(t.mean().item()),
                                  "devices": int(t.numel())}
                for (tile, ctx), t in sorted(self._per_device.items())}

    def transfer(self, tile: Any, columns: int, n_out: int, buffered: bool) -> None:
        """A Tiki-Taka transfer of ``columns`` columns (their reads are counted as transfer MVMs)."""
        b = self._bucket(tile)
        b["transfers"] += 1
        if buffered:
            b["dig_mp_mac"] += columns * n_out

    def program(self, tile: Any, devices: int) -> None:
        """``devices`` devices programmed to target weights (initial or pretrained weights)."""
        self._bucket(tile)["devices_programmed"] += devices

    def digital(self, event: str, count: float) -> None:
        """Digital work outside the tiles (e.g. ``dig_opt``, ``dig_quant``)."""
        self._counts[(_DIGITAL, self.current_phase)][event] += count

    @contextmanager
    def reading(self, tile: Any) -> Iterator[None]:
        """Attribute bound-management retries inside to ``tile`` (its MVM is running)."""
        before, self._tile = self._tile, tile
        try:
            yield
        finally:
            self._tile = before

    # ------------------------------------------------------------------ reading
    def totals(self, phase: str | None = None) -> dict[str, float]:
        """{event: count} summed over tiles (and phases, unless ``phase``)."""
        return totals(self.counts(), phase)

    def counts(self) -> dict[str, dict[str, dict[str, float]]]:
        """{tile: {phase: {event: count}}} as plain floats (reads the lazy tensor sums)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (tile, phase), events in self._counts.items():
            row = {k: float(v.item() if isinstance(v, Tensor) else v) for k, v in sorted(events.items())}
            out.setdefault(tile, {})[phase] = row
        return out

    def shapes(self) -> dict[str, list[int]]:
        """{tile: [out, in]} of every tile seen."""
        return {k: list(v) for k, v in self._shapes.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the counts and the tiles' shapes (what a fleet client reports)."""
        return {"counts": self.counts(), "tiles": self.shapes(), "pulses_per_device": self.pulses_per_device()}


def totals(counts: dict[str, dict[str, dict[str, float]]], phase: str | None = None) -> dict[str, float]:
    """Sum ``counts`` (EventCounter.counts()) over tiles, and over phases unless ``phase`` is given."""
    out: dict[str, float] = defaultdict(float)
    for phases in counts.values():
        for name, events in phases.items():
            if phase is None or name == phase:
                for k, v in events.items():
                    out[k] += v
    return dict(out)


@contextmanager
def counting(counter: EventCounter | None = None) -> Iterator[EventCounter]:
    """Turn counting on for the block (one recorder process-wide; nested blocks restore the outer)."""
    global ACTIVE
    counter = EventCounter() if counter is None else counter
    before, ACTIVE = ACTIVE, counter
    try:
        yield counter
    finally:
        ACTIVE = before


def active() -> EventCounter | None:
    """The recorder counting now, or None."""
    return ACTIVE
