"""Latent noise on the device: clip each latent row, add Gaussian noise, account epsilon per row.

Every row the device releases (training latents, the public anchors' latents, the held-out rows it
sends to Classify) goes through `release_latents` BEFORE quantization, so the wire only ever carries
noisy values (quantization, the upload's scale and the server's anchor map are post-processing).

Privacy unit: one image and the one latent row it produces. With rows clipped to L2 norm C and noise
N(0, (noise_multiplier * C)^2 I), one row is a Gaussian mechanism. The neighbouring relation is
replace-one (this image swapped for any other), so the sensitivity is 2C: the number of rows and
their labels travel in the clear, so "a row was added or removed" is not what the server must not
learn; "what is in this row" is. Each image is released once (its training row, or its Classify
row for the held-out split), so epsilon per row is epsilon per image for what its own row says.
The anchors are public images; their noise protects nothing of theirs but takes from the server the
exact (anchor latent -> public image) pairs it would otherwise fit an inverse of this encoder on.
Out of scope of this epsilon: the encoder itself was trained on all of the client's images and
never leaves the device, but every row depends on it (a DP-SGD-trained encoder would cover that),
and the labels, which are released in the clear.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .config import DefenseConfig

DELTA = 1e-5
# independent noise streams per release (see `release_latents`)
STREAM_TRAIN, STREAM_ANCHORS, STREAM_TEST = 1, 2, 3


def clip_rows(z: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float]:
    """Scale every row of z whose L2 norm exceeds clip_norm onto the ball; returns (z, share clipped).
    clip_norm 0 leaves z as is."""
    z = np.asarray(z, dtype=np.float32)
    if clip_norm <= 0:
        return z, 0.0
    norms = np.linalg.norm(z.astype(np.float64), axis=1, keepdims=True)
    factor = np.minimum(1.0, clip_norm / np.maximum(norms, 1e-30))
    return (z * factor).astype(np.float32), float(np.mean(norms[:, 0] > clip_norm))


def release_latents(z: np.ndarray, defense: DefenseConfig, seed: int, stream: int) -> np.ndarray:
    """The latents the device may release: clipped and noised per `defense`, seeded per (client seed,
    stream). With noise_multiplier = clip_norm = 0 this returns z itself (no copy, no draw)."""
    if not (defense.clip_norm or defense.noise_multiplier):
        return z
    out, _ = clip_rows(z, defense.clip_norm)
    if defense.noise_multiplier > 0:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), 0xD1F]))
        std = defense.noise_multiplier * defense.clip_norm
        out = (out.astype(np.float64) + rng.normal(0.0, std, size=out.shape)).astype(np.float32)
    return out


@lru_cache(maxsize=64)
def epsilon_per_row(noise_multiplier: float, delta: float = DELTA) -> float:
    """Epsilon of one release of a clipped row with noise std noise_multiplier * C under replace-one
    neighbours (sensitivity 2C): dp-accounting's privacy-loss distribution of the Gaussian mechanism
    N(0, m^2) vs N(2, m^2) in units of C (pessimistic discretization, so an upper bound that is
    tight to ~0.1%). The grid is coarsened with the loss's spread (4 / m^2) so that small
    multipliers (epsilon in the hundreds) take milliseconds, not minutes. inf without noise."""
    if noise_multiplier <= 0:
        return float("inf")
    # imported on use: dp_accounting loads scipy and mpmath, which a run without noise need not
    from dp_accounting.pld import privacy_loss_distribution as pld

    m = float(noise_multiplier)
    loss = pld.from_gaussian_mechanism(m, sensitivity=2.0, pessimistic_estimate=True,
                                       value_discretization_interval=1e-3 * max(1.0, 4.0 / m ** 2))
    return float(loss.get_epsilon_for_delta(float(delta)))


@dataclass(frozen=True)
class ReleaseReport:
    """What a client says about its released rows (in its upload summary and the fleet report)."""

    noise_multiplier: float
    clip_norm: float
    noise_std: float
    epsilon: float               # per released row, replace-one, delta = DELTA (inf: no noise)
    delta: float
    clipped_share: float         # share of training rows whose norm exceeded clip_norm
    row_norm_median: float       # of the training rows before clipping (to choose clip_norm)

    def to_dict(self) -> dict:
        return {"noise_multiplier": self.noise_multiplier, "clip_norm": self.clip_norm, "noise_std": self.noise_std,
                "epsilon": self.epsilon if np.isfinite(self.epsilon) else None, "delta": self.delta,
                "neighbouring": "replace-one (sensitivity 2 x clip_norm)", "clipped_share": self.clipped_share,
                "row_norm_median": self.row_norm_median}


def release_report(z: np.ndarray, defense: DefenseConfig) -> ReleaseReport:
    """Epsilon and clipping figures for the (unclipped) training latents z."""
    _, share = clip_rows(z, defense.clip_norm)
    return ReleaseReport(defense.noise_multiplier, defense.clip_norm, defense.noise_multiplier * defense.clip_norm,
                         epsilon_per_row(defense.noise_multiplier), DELTA, share,
                         float(np.median(np.linalg.norm(np.asarray(z, np.float64), axis=1))))
