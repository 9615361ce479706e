"""The server-side attacker's decoders: a latent map, an optional label embedding, a decoder body.

Every inversion attack of the suite ends in the same model, ``x_hat = body(A z + b + E[y])``: `A, b`
start at a map the attack fitted (an anchor map, or the identity), `E` is a per-class offset in
latent space (zero at start; only with `labels`, since the server holds every row's label) and the
body is a copy of the server's pretrained decoder or a fresh one of the clients' architecture. One
training loop (`fit`) serves all of them: Adam on pixel MSE, seeded, with Gaussian noise on the
latents as augmentation (the stored latents are quantized and come from noisy chips).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_client.autoencoder import build_autoencoder
from edge_client.config import EdgeConfig


@dataclass(frozen=True)
class FitSettings:
    """How an attacker decoder is trained (`privacy.attack_*` keys)."""

    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 32
    latent_noise: float = 0.1        # augmentation: N(0, (latent_noise * per-feature std)^2) on z
    seed: int = 0


class AttackDecoder(nn.Module):
    """x_hat = body(z @ weight + bias + embedding[y]); see the module docstring."""

    def __init__(self, body: nn.Module, latent_dim: int, weight: np.ndarray | None = None,
                 bias: np.ndarray | None = None, num_classes: int = 0, out_dim: int | None = None) -> None:
        super().__init__()
        out_dim = out_dim or latent_dim
        self.map = nn.Linear(latent_dim, out_dim)
        with torch.no_grad():
            w = np.eye(latent_dim, out_dim) if weight is None else np.asarray(weight)
            self.map.weight.copy_(torch.as_tensor(w.T, dtype=torch.float32))
            self.map.bias.copy_(torch.as_tensor(np.zeros(out_dim) if bias is None else bias, dtype=torch.float32))
        self.embedding = nn.Embedding(num_classes, out_dim) if num_classes else None
        if self.embedding is not None:
            nn.init.zeros_(self.embedding.weight)
        self.body = body

    @property
    def uses_labels(self) -> bool:
        return self.embedding is not None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.map(z)
        if self.embedding is not None:
            if y is None:
                raise ValueError("labels: this decoder is label-conditioned and needs y")
            h = h + self.embedding(y)
        return self.body(h)


def decoder_body(cfg: EdgeConfig, image_shape: tuple[int, int, int], seed: int,
                 pretrained: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A digital decoder of the clients' architecture: the pretrained one (a copy), or freshly seeded."""
    model = build_autoencoder(tuple(image_shape), cfg.model.latent_dim, cfg.model.autoencoder, tile_config=None,
                              conv_channels=cfg.model.conv_channels, mlp_hidden=cfg.model.mlp_hidden, init_seed=seed)
    if pretrained is not None:
        model.load_state_dict(pretrained)
    return copy.deepcopy(model.decoder)


def fit(model: AttackDecoder, z: np.ndarray, x: np.ndarray, y: np.ndarray | None, settings: FitSettings
        ) -> AttackDecoder:
    """Train `model` on pairs (z, x[, y]); returns it in eval mode."""
    z_t = torch.as_tensor(np.asarray(z, dtype=np.float32))
    x_t = torch.as_tensor(np.array(x, dtype=np.float32))
    y_t = torch.as_tensor(np.asarray(y, dtype=np.int64)) if model.uses_labels else None
    if len(z_t) != len(x_t) or len(z_t) == 0:
        raise ValueError(f"attack pairs: got {len(z_t)} latents and {len(x_t)} images; need as many, >= 1")
    sd = z_t.std(0, keepdim=True) if len(z_t) > 1 else torch.ones(1, z_t.shape[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        gen = torch.Generator().manual_seed(settings.seed + 1)
        opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
        model.train()
        for _ in range(settings.epochs):
            perm = torch.randperm(len(z_t), generator=gen)
            for s in range(0, len(perm), settings.batch_size):
                b = perm[s:s + settings.batch_size]
                zb = z_t[b] + settings.latent_noise * sd * torch.randn(len(b), z_t.shape[1], generator=gen)
                loss = torch.mean((model(zb, y_t[b] if y_t is not None else None) - x_t[b]) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
    model.eval()
    return model


@torch.no_grad()
def decode(model: nn.Module, z: np.ndarray, y: np.ndarray | None = None, batch_size: int = 512) -> np.ndarray:
    """model(z[, y]) in eval mode, batched, as a numpy array."""
    z_t = torch.as_tensor(np.asarray(z, dtype=np.float32))
    y_t = torch.as_tensor(np.asarray(y, dtype=np.int64)) if y is not None else None
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(z_t), batch_size):
        args = (z_t[s:s + batch_size],) + ((y_t[s:s + batch_size],) if y_t is not None else ())
        out.append(model(*args))
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0,), np.float32)
