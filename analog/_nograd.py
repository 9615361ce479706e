"""A no_grad decorator for the simulator's hot path: enters torch.no_grad only when gradients are on.

torch.no_grad() as a decorator sets and restores the grad mode on every call (a context manager and
two mode switches); an optimizer step already runs without gradients and calls a handful of these
methods per tile, so they skip it there.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def no_grad(fn: F) -> F:
    """Run ``fn`` without autograd recording, like @torch.no_grad(), at no cost when it is off already."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return fn(*args, **kwargs)
        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
