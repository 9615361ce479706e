"""Per-tile random generators that follow the tensors to their device (CPU or CUDA)."""
from __future__ import annotations

import itertools

import torch

_MASK = (1 << 63) - 1
_counter = itertools.count()


def mix_seed(*parts: int) -> int:
    """Combine integers into one 63-bit seed (splitmix64-style), so (seed, layer index) pairs differ."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h ^= (int(p) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)) & ((1 << 64) - 1)
        h = (h * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
        h ^= h >> 31
    return h & _MASK


def next_layer_index() -> int:
    """A process-wide counter for layers built directly with a seeded config (see resolve_seed)."""
    return next(_counter)


def reset_layer_counter() -> None:
    """Restart the per-layer counter (rebuild a seeded model identically in the same process)."""
    global _counter
    _counter = itertools.count()


def resolve_seed(config_seed: int | None, seed: int | None = None) -> int:
    """Explicit seed > config seed combined with the per-layer counter > a draw from torch's RNG."""
    if seed is not None:
        return int(seed) & _MASK
    if config_seed is not None:
        return mix_seed(config_seed, next_layer_index())
    return int(torch.randint(0, 2**62, (1,)).item())


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def generator_on(gen: torch.Generator, device: torch.device) -> torch.Generator:
    """gen if it already lives on device, else a new generator there seeded from gen (deterministic)."""
    if gen.device == device:            # the per-call case: no torch.device construction
        return gen
    device = torch.device(device)
    if gen.device.type == device.type and (device.index is None or gen.device.index in (None, device.index)):
        return gen
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    return make_generator(seed, device)
