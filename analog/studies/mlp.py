"""The study's fully connected network (784-256-128-10, as in aihwkit's MNIST example and Wu et al.)
and one training loop shared by its digital, fixed-point and analog variants, so that they differ only
in the model and the optimizer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from analog.studies.data import Split

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


def make_mlp(sizes: tuple[int, ...] = (784, 256, 128, 10), activation: str = "sigmoid") -> nn.Sequential:
    """Linear layers with ``activation`` between them; the last layer returns logits."""
    if len(sizes) < 2:
        raise ValueError(f"sizes: got {sizes}, must list at least input and output sizes")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: got {activation!r}, must be one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(dim=1) == y[i:i + batch_size]).sum())
    model.train()
    return correct / max(1, len(y))


@dataclass
class Curve:
    """Per-epoch test accuracy and mean training loss (epoch 0 = before training)."""

    test_accuracy: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.test_accuracy[-1]


def train(model: nn.Module, optimizer: torch.optim.Optimizer, split: Split, epochs: int, batch_size: int,
          seed: int, after_step: Callable[[], None] | None = None,
          progress: Callable[[int], None] | None = None) -> Curve:
    """Plain minibatch training with cross-entropy; ``after_step`` runs after each optimizer step
    (fixed-point quantization hooks in there); ``progress(n)`` is told about every n samples done."""
    if epochs < 0:
        raise ValueError(f"epochs: got {epochs}, must be >= 0")
    if batch_size < 1:
        raise ValueError(f"batch_size: got {batch_size}, must be >= 1")
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(int(seed))
    curve = Curve(test_accuracy=[accuracy(model, split.x_test, split.y_test)], train_loss=[float("nan")])
    n = len(split.y_train)
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        total, count = 0.0, 0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(split.x_train[idx]), split.y_train[idx])
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {float(loss)} (diverged)")
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if progress is not None:
                progress(len(idx))
        curve.train_loss.append(total / max(1, count))
        curve.test_accuracy.append(accuracy(model, split.x_test, split.y_test))
    return curve
