"""The FedAvg baseline: the server's classifier architecture trained end to end on raw local pixels.

Each client trains the MLP (same hidden sizes as `[classifier]`, input = flattened image) on its own
training split, the Flower `FedAvg` strategy averages the weights, and every client scores the
global model on the same local test split the latent pipeline uses. With analog tiles the averaged
weights are programmed back onto each client's tile at the start of every round (set_weights), as
a real analog FL client would have to; tile internals (Tiki-Taka's fast array, d2d variation)
never leave the device. The strategy counts the bytes of every ArrayRecord it sends and receives.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import MetricRecord
from flwr.serverapp.strategy import FedAvg
from torch import nn

import analog


def build_mlp(in_features: int, hidden: list[int], num_classes: int, tile_config: Any | None,
              seed: int) -> nn.Module:
    """The classifier MLP (Linear/ReLU stack), converted to analog tiles when a TileConfig is given."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    model = nn.Sequential(*layers)
    if tile_config is not None:
        torch.manual_seed(seed)   # tile noise/d2d streams derive from the torch seed
        model = analog.convert_to_analog(model, tile_config)
    return model


def _weight_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if hasattr(m, "get_weights") or isinstance(m, nn.Linear)]


def get_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The weights a FedAvg round exchanges: what each layer's forward reads, plus biases."""
    out: dict[str, np.ndarray] = {}
    for name, mod in _weight_modules(model):
        w = mod.get_weights() if hasattr(mod, "get_weights") else mod.weight
        out[f"{name}.weight"] = w.detach().cpu().numpy().astype(np.float32, copy=True)
        bias = getattr(mod, "bias", None)
        if bias is not None:
            out[f"{name}.bias"] = bias.detach().cpu().numpy().astype(np.float32, copy=True)
    return out


def set_arrays(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load averaged weights: programs analog tiles (clipped to device bounds), copies digital ones."""
    expected = get_arrays(model)
    if set(arrays) != set(expected):
        raise ValueError(f"arrays: got keys {sorted(arrays)}, expected {sorted(expected)}")
    with torch.no_grad():
        for name, mod in _weight_modules(model):
            w = torch.as_tensor(np.asarray(arrays[f"{name}.weight"]), dtype=torch.float32)
            if w.shape != expected[f"{name}.weight"].shape:
                raise ValueError(f"arrays[{name}.weight]: got shape {tuple(w.shape)}, "
                                 f"expected {expected[name + '.weight'].shape}")
            if hasattr(mod, "set_weights"):
                mod.set_weights(w)
            else:
                mod.weight.copy_(w)
            if getattr(mod, "bias", None) is not None:
                b = torch.as_tensor(np.asarray(arrays[f"{name}.bias"]), dtype=torch.float32)
                if hasattr(mod, "set_bias"):
                    mod.set_bias(b)
                else:
                    mod.bias.copy_(b)


def make_optimizer(model: nn.Module, lr: float, analog_tiles: bool) -> torch.optim.Optimizer:
    if analog_tiles:
        return analog.AnalogOptimizer(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr)


def train_local(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int,
                lr: float, analog_tiles: bool, seed: int) -> float:
    """Plain minibatch SGD (pulsed on analog tiles) over the local split; returns the last epoch's loss."""
    opt = make_optimizer(model, lr, analog_tiles)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    last = float("nan")
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(x), batch_size):
            idx = perm[start:start + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        last = total / max(count, 1)
    return last


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> tuple[int, float]:
    """(correct, mean loss) of the model on (x, y), through the noisy analog forward when analog."""
    model.eval()
    correct, loss = 0, 0.0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        yy = y[start:start + batch_size]
        correct += int((logits.argmax(1) == yy).sum())
        loss += float(nn.functional.cross_entropy(logits, yy, reduction="sum"))
    return correct, loss / max(len(x), 1)


class ByteCountingFedAvg(FedAvg):
    """Flower's FedAvg that also counts the ArrayRecord bytes of every message, both directions,
    and keeps each evaluation round's per-client metrics."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.bytes_down = 0     # server -> clients, all rounds (train + evaluate messages)
        self.bytes_up = 0       # clients -> server, all rounds
        self.rounds_log: list[dict[str, Any]] = []

    def _count_out(self, msgs: Iterable[Any]) -> list[Any]:
        msgs = list(msgs)
        for m in msgs:
            if self.arrayrecord_key in m.content.array_records:
                self.bytes_down += m.content.array_records[self.arrayrecord_key].count_bytes()
        return msgs

    def configure_train(self, server_round, arrays, config, grid):
        return self._count_out(super().configure_train(server_round, arrays, config, grid))

    def configure_evaluate(self, server_round, arrays, config, grid):
        return self._count_out(super().configure_evaluate(server_round, arrays, config, grid))

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        for m in replies:
            if not m.has_error() and self.arrayrecord_key in m.content.array_records:
                self.bytes_up += m.content.array_records[self.arrayrecord_key].count_bytes()
        return super().aggregate_train(server_round, replies)

    def aggregate_evaluate(self, server_round, replies):
        replies = list(replies)
        errors = [m.error.reason for m in replies if m.has_error()]
        if errors:
            raise RuntimeError(f"fedavg round {server_round}: {len(errors)} client(s) failed: {errors[0]}")
        per_client = []
        for m in replies:
            rec = m.content.metric_records["metrics"]
            per_client.append({k: float(v) for k, v in rec.items()})
        self.rounds_log.append({"round": server_round, "clients": per_client})
        return super().aggregate_evaluate(server_round, replies)


IDENTIFIER_METRICS = ("partition_id",)   # which client replied: kept per client, never averaged
COUNT_METRICS = ("correct",)             # summed over the clients, not averaged


def aggregate_fleet_metrics(records: list[Any], weighting_metric_name: str) -> Any:
    """The round's fleet metrics: rates (accuracy, losses) averaged weighted by ``weighting_metric_name``
    as Flower's default does, counts summed, identifiers dropped (an averaged partition_id means nothing)."""
    metrics = [next(iter(r.metric_records.values())) for r in records]
    weights = [float(m[weighting_metric_name]) for m in metrics]
    total = sum(weights) or 1.0
    out = MetricRecord()
    for key in dict.fromkeys(k for m in metrics for k in m.keys()):
        if key in IDENTIFIER_METRICS or key == weighting_metric_name:
            continue
        if key in COUNT_METRICS:
            out[key] = sum(float(m[key]) for m in metrics if key in m)
        else:
            out[key] = sum(float(m[key]) * w for m, w in zip(metrics, weights) if key in m) / total
    return out


def make_strategy(num_clients: int, fraction_train: float) -> ByteCountingFedAvg:
    """The baseline's strategy: every client evaluates every round; `fraction_train` of them train."""
    return ByteCountingFedAvg(fraction_train=fraction_train, fraction_evaluate=1.0,
                              min_train_nodes=max(1, int(round(num_clients * fraction_train))),
                              min_evaluate_nodes=num_clients, min_available_nodes=num_clients,
                              train_metrics_aggr_fn=aggregate_fleet_metrics,
                              evaluate_metrics_aggr_fn=aggregate_fleet_metrics)
