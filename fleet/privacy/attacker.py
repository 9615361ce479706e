"""The model-inversion attacker (He et al. 2019, against collaborative inference).

It holds leaked (x, z) pairs from ONE client, trains its own digital decoder z -> x, and
reconstructs the OTHER clients' images from their latents; `attack` scores it against the
mean image of the leaked set (no latents) and, when given, the victim's own decoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from fleet.config import PrivacyConfig
from fleet.privacy.metrics import reconstruction_metrics


def standardize(z: np.ndarray) -> np.ndarray:
    """Per-feature standardization of one client's stored latents. The server holds all of a
    client's latents, so it can undo each client's scale and offset without any leaked pair."""
    z = np.asarray(z, dtype=np.float32)
    return (z - z.mean(0, keepdims=True)) / np.maximum(z.std(0, keepdims=True), 1e-8)


def attacker_decoder(latent_dim: int, image_shape: tuple[int, ...], hidden: int) -> nn.Module:
    """A digital MLP decoder z -> x (sigmoid pixels): the attacker's own model, not the client's."""
    pixels = int(np.prod(image_shape))
    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, pixels), nn.Sigmoid(), nn.Unflatten(1, tuple(image_shape)))


def train_attacker(z: np.ndarray, x: np.ndarray, cfg: PrivacyConfig, progress: bool = True) -> nn.Module:
    """Fit the attacker's decoder on leaked pairs (z standardized, x (N, C, H, W) in [0, 1])."""
    z_t = torch.as_tensor(np.asarray(z, dtype=np.float32))
    x_t = torch.as_tensor(np.array(x, dtype=np.float32))
    if len(z_t) != len(x_t) or len(z_t) == 0:
        raise ValueError(f"leaked pairs: got {len(z_t)} latents and {len(x_t)} images; need as many, >= 1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = attacker_decoder(z_t.shape[1], tuple(x_t.shape[1:]), cfg.hidden)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        bar = tqdm(range(cfg.epochs), desc="privacy: attacker decoder", disable=not progress, leave=False)
        for _ in bar:
            perm = torch.randperm(len(z_t), generator=gen)
            total = 0.0
            for s in range(0, len(perm), cfg.batch_size):
                b = perm[s:s + cfg.batch_size]
                loss = torch.mean((model(z_t[b]) - x_t[b]) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            bar.set_postfix(mse=f"{total / len(perm):.4f}")
    model.eval()
    return model


@torch.no_grad()
def reconstruct(model: nn.Module, z: np.ndarray, batch_size: int = 512) -> np.ndarray:
    z_t = torch.as_tensor(np.asarray(z, dtype=np.float32))
    was = model.training
    model.eval()
    out = [model(z_t[s:s + batch_size]) for s in range(0, len(z_t), batch_size)]
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0,), np.float32)


@dataclass
class AttackResult:
    """What `attack` measured: metrics per victim, plus the reconstructions of the victims."""

    victims: list[dict[str, Any]]
    held_out: dict[str, float] | None     # the leaked client's own non-leaked images
    recon: dict[str, np.ndarray]           # victim name -> attacker reconstructions


def attack(leaked_x: np.ndarray, leaked_z: np.ndarray, victims: dict[str, tuple[np.ndarray, np.ndarray]],
           cfg: PrivacyConfig, held_out: tuple[np.ndarray, np.ndarray] | None = None,
           own: dict[str, np.ndarray] | None = None, progress: bool = True) -> AttackResult:
    """Train on the leaked pairs, then score each victim {name: (x, z_standardized)}: attacker vs the
    mean-image guess (and vs the victim's own decoder output `own[name]`, when given). Latents must
    already be standardized per client (`standardize`)."""
    model = train_attacker(leaked_z, leaked_x, cfg, progress)
    mean_img = np.asarray(leaked_x, dtype=np.float32).mean(axis=0, keepdims=True)
    rows, recon = [], {}
    for name, (x, z) in victims.items():
        x_hat = reconstruct(model, z).reshape(np.shape(x))
        recon[name] = x_hat
        row: dict[str, Any] = {"client_id": name, "n": int(len(x)),
                               "attack": reconstruction_metrics(x, x_hat),
                               "mean_image": reconstruction_metrics(x, np.broadcast_to(mean_img, np.shape(x)))}
        if own is not None and name in own:
            row["own_decoder"] = reconstruction_metrics(x, own[name])
        rows.append(row)
    ho = None
    if held_out is not None and len(held_out[0]):
        ho = reconstruction_metrics(held_out[0], reconstruct(model, held_out[1]).reshape(np.shape(held_out[0])))
    return AttackResult(rows, ho, recon)


def mean_metrics(rows: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    """Sample-weighted mean of a metric dict across victims."""
    have = [r for r in rows if key in r and r[key]["n"]]
    if not have:
        return None
    n = sum(r[key]["n"] for r in have)
    return {m: float(sum(r[key][m] * r[key]["n"] for r in have) / n) for m in ("mse", "psnr", "ssim")} | {"n": n}
