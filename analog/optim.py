"""AnalogOptimizer: torch.optim-style. Analog tiles get (x, d, lr) and pulse; digital params get SGD.

Parameters mirroring a tile (``analog_tile`` attribute, see layers.AnalogParameter) are never
updated digitally: at step() each tile applies the pulsed update for the (x, d) pairs its layer
recorded during backward. momentum and weight_decay act on digital parameters only (the analog
update is what the hardware does: plain SGD through the device).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from analog.energy import counters as _counters
from analog.layers import tile_of
from analog.validation import check_number


class AnalogOptimizer(torch.optim.Optimizer):
    """SGD for mixed analog/digital models; learning-rate schedulers work through param_groups."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 0.01,
                 momentum: float = 0.0, weight_decay: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False) -> None:
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay),
                            ("dampening", dampening)):
            check_number(name, value, 0, finite=False)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov: got True, needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      dampening=dampening, nesterov=nesterov))

    def tiles(self) -> list[Any]:
        """The distinct analog tiles among the optimized parameters."""
        seen: dict[int, Any] = {}
        for group in self.param_groups:
            for p in group["params"]:
                tile = tile_of(p)
                if tile is not None:
                    seen.setdefault(id(tile), tile)
        return list(seen.values())

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        done: set[int] = set()
        rec = _counters.ACTIVE
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                tile = tile_of(p)
                if tile is not None:
                    if id(tile) not in done:
                        done.add(id(tile))
                        tile.apply_pending_update(lr)
                    continue
                if p.grad is None:
                    continue
                if rec is not None:
                    rec.digital("dig_opt", p.numel())
                g = p.grad
                if wd:
                    g = g.add(p, alpha=wd)
                if momentum:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.detach().clone()
                    else:
                        buf.mul_(momentum).add_(g, alpha=1 - group["dampening"])
                    g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(g, alpha=-lr)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients and drop the (x, d) pairs tiles recorded since the last step."""
        super().zero_grad(set_to_none=set_to_none)
        for tile in self.tiles():
            tile.clear_pending()
