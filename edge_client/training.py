"""Local, unsupervised training of the edge autoencoder (reconstruction loss), digital or analog.

Analog models train with `analog.AnalogOptimizer` (pulsed updates on the tiles); the digital
reference trains with plain SGD (same rule, ideal weights) or, optionally, Adam. The loss is the
per-image squared error (summed over pixels, averaged over the batch) so that the gradient an
analog tile sees does not shrink with the image size; reported figures are per-pixel MSE.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import analog
from common.validation import ConfigError

from .autoencoder import is_analog
from .config import DefenseConfig
from .data import DataError
from .objectives import LabelHead, class_prototypes, defended_loss


@dataclass
class TrainResult:
    epochs: int
    train_loss: list[float] = field(default_factory=list)   # per-pixel MSE per epoch (running mean)
    initial_val_mse: float = float("nan")
    val_mse: float = float("nan")                           # per-pixel MSE on held-out local data
    seconds: float = 0.0
    steps: int = 0
    analog: bool = False


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if not arr.flags.writeable:  # built-in datasets are read-only (shared, cached): copy once
        arr = arr.copy()
    return torch.from_numpy(arr)


def make_optimizer(model: nn.Module, lr: float, optimizer: str = "sgd") -> torch.optim.Optimizer:
    if is_analog(model):
        if optimizer != "sgd":
            raise ConfigError(f"optimizer: got {optimizer!r}; analog tiles train with pulsed SGD only")
        return analog.AnalogOptimizer(model.parameters(), lr=lr)
    if optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr)


@torch.no_grad()
def reconstruction_mse(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 256) -> float:
    """Per-pixel mean squared error of model(x) vs x (eval mode; analog forward noise included)."""
    x = _as_tensor(x)
    if x.shape[0] == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size]
        total += float(torch.sum((model(xb) - xb) ** 2))
    model.train(was_training)
    return total / x.numel()


@torch.no_grad()
def encode(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Latents z (N, latent_dim) float32 from the encoder, in eval mode."""
    x = _as_tensor(x)
    was_training = model.training
    model.eval()
    out = [model.encode(x[s:s + batch_size]) for s in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(out).cpu().numpy().astype(np.float32)


def train_autoencoder(model: nn.Module, x_train: np.ndarray | torch.Tensor,
                      x_val: np.ndarray | torch.Tensor | None = None, *, epochs: int = 5,
                      batch_size: int = 32, lr: float = 0.05, optimizer: str = "sgd", seed: int = 0,
                      progress: bool = True, desc: str = "AE", y_train: np.ndarray | None = None,
                      defense: DefenseConfig | None = None, num_classes: int | None = None) -> TrainResult:
    """Train on x_train for `epochs` (seeded shuffling); report held-out per-pixel MSE on x_val.

    `defense` (NoPeek and the label objective, edge_client/objectives.py) changes the loss; the label
    objective needs `y_train`. train_loss stays the per-pixel reconstruction MSE in every case."""
    x_train = _as_tensor(x_train)
    if x_train.shape[0] == 0:
        raise DataError("x_train: no samples to train on")
    x_val = _as_tensor(x_val) if x_val is not None and len(x_val) else None
    result = TrainResult(epochs=epochs, analog=is_analog(model))
    if x_val is not None:
        result.initial_val_mse = reconstruction_mse(model, x_val)
    opt = make_optimizer(model, lr, optimizer)
    trains = defense is not None and defense.trains
    head, head_opt, y_t, protos = None, None, None, None
    if trains and defense.uses_labels:
        if y_train is None or len(y_train) != x_train.shape[0]:
            raise ValueError("y_train: the label objective (defense.label_weight or prototype_weight > 0) "
                             "needs one label per image")
        y_t = torch.tensor(np.asarray(y_train), dtype=torch.int64)
        classes = int(num_classes or int(y_t.max()) + 1)
        if defense.label_weight:
            head = LabelHead(model.latent_dim, classes, seed)
            # digital, device-only: Adam reaches a useful head within the first epoch of a 5-epoch run
            head_opt = torch.optim.Adam(head.parameters(), lr=1e-2)
        if defense.prototype_weight:
            protos = class_prototypes(classes, model.latent_dim, defense.prototype_radius)
    gen = torch.Generator().manual_seed(int(seed))
    n = x_train.shape[0]
    pixels = x_train[0].numel()
    steps_per_epoch = math.ceil(n / batch_size)
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, disable=not progress, leave=False, unit="step")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        running, seen = 0.0, 0
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            xb = x_train[idx]
            opt.zero_grad(set_to_none=True)
            if trains:
                if head_opt is not None:
                    head_opt.zero_grad(set_to_none=True)
                z = model.encode(xb)
                recon = model.decoder(z)
                rec_loss = torch.sum((recon - xb) ** 2) / xb.shape[0]
                loss = defended_loss(rec_loss, xb, z, y_t[idx] if y_t is not None else None, head,
                                     defense.nopeek_weight, defense.label_weight, protos,
                                     defense.prototype_weight)
            else:
                recon = model(xb)
                rec_loss = loss = torch.sum((recon - xb) ** 2) / xb.shape[0]
            if not torch.isfinite(loss):
                bar.close()
                raise FloatingPointError(f"training diverged (loss {float(loss)}); lower lr (got {lr})")
            loss.backward()
            opt.step()
            if head_opt is not None:
                head_opt.step()
            result.steps += 1
            running += float(rec_loss.detach()) * xb.shape[0]
            seen += xb.shape[0]
            bar.update(1)
            if result.steps % 20 == 0:
                bar.set_postfix(mse=f"{running / seen / pixels:.4f}", refresh=False)
        result.train_loss.append(running / seen / pixels)
    bar.close()
    result.seconds = time.perf_counter() - t0
    if x_val is not None:
        result.val_mse = reconstruction_mse(model, x_val)
    return result
