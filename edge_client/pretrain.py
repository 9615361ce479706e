"""Pretrained shared initialization: one digital autoencoder trained on the public images, whose
weights every client programs onto its own tiles before training on its private data.

Why: a shared seed gives every chip the same *random* start, and each chip's training then drifts
its latent space its own way. Starting from weights that already encode digits puts every client
near the same solution, so local training moves each latent space less. The weights travel once,
server to client (their bytes are the download this costs); on analog tiles programming them is
not exact (``analog.inference.program_weights``: programming noise, clipping to device bounds).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.validation import ConfigError

from .autoencoder import build_autoencoder
from .config import EdgeConfig
from .training import train_autoencoder


def pretrain_autoencoder(cfg: EdgeConfig, images: np.ndarray, epochs: int, seed: int,
                         lr: float | None = None) -> tuple[dict[str, torch.Tensor], float]:
    """Train cfg's architecture digitally on `images`; return (state dict, reconstruction MSE on them)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"images: got shape {x.shape}, must be (N >= 2, C, H, W)")
    torch.manual_seed(seed)
    model = build_autoencoder(tuple(x.shape[1:]), cfg.model.latent_dim, cfg.model.autoencoder, tile_config=None,
                              conv_channels=cfg.model.conv_channels, mlp_hidden=cfg.model.mlp_hidden, init_seed=seed)
    res = train_autoencoder(model, x, x, epochs=epochs, batch_size=cfg.training.batch_size, lr=lr or cfg.training.lr,
                            optimizer="sgd", seed=seed, progress=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, float(res.val_mse)


def save_weights(state: dict[str, torch.Tensor], path: str | Path) -> int:
    """Write the weights; returns their size in bytes (float32 values, what a download carries)."""
    torch.save(state, path)
    return sum(int(t.numel()) * t.element_size() for t in state.values())


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"init_weights: {p} does not exist")
    state = torch.load(p, weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"init_weights: {p} is not a state dict of tensors")
    return state
