"""How much do latents reveal, as numbers: distance correlation dCor(X, Z) and image metrics.

`distance_correlation` is Szekely's sample distance correlation between flattened images and
their latents (0 iff independent in the population, 1 for a similarity map; the quantity NoPeek,
Vepakomma et al., minimizes). It sees non-linear dependence that Pearson correlation misses.
`reconstruction_metrics` scores reconstructed images (MSE, PSNR, SSIM).
"""
from __future__ import annotations

import numpy as np
import torch


def _centered_distances(a: torch.Tensor) -> torch.Tensor:
    """Double-centred Euclidean distance matrix A_ij = a_ij - a_i. - a_.j + a_.. (Szekely 2007)."""
    d = torch.cdist(a, a)
    return d - d.mean(dim=0, keepdim=True) - d.mean(dim=1, keepdim=True) + d.mean()


def _u_centered_distances(a: torch.Tensor) -> torch.Tensor:
    """U-centred distance matrix (Szekely & Rizzo 2014): zero diagonal, unbiased inner products."""
    n = a.shape[0]
    d = torch.cdist(a, a)
    u = (d - d.sum(0, keepdim=True) / (n - 2) - d.sum(1, keepdim=True) / (n - 2)
         + d.sum() / ((n - 1) * (n - 2)))
    return u.fill_diagonal_(0.0)


def distance_correlation(x: np.ndarray | torch.Tensor, z: np.ndarray | torch.Tensor,
                         max_samples: int = 1000, seed: int = 0, bias_corrected: bool = False) -> float:
    """Sample distance correlation dCor(X, Z) in [0, 1] between rows of x and z (any trailing shape,
    flattened). O(n^2) memory, so at most `max_samples` rows are used (a seeded random subset).

    Default: the V-statistic of Szekely, Rizzo & Bakirov (2007), the one NoPeek uses. It is biased
    upward for small n and high dimension (independent Gaussians, n = 500: ~0.07 at 1-D, ~0.6 at
    784-D vs 32-D), so compare values at equal n and dimension. `bias_corrected=True` returns the
    bias-corrected squared dCor of Szekely & Rizzo (2013/2014, U-centred), ~0 under independence
    (it can be slightly negative) and 1 for a similarity map.
    """
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).reshape(len(x), -1)
    zt = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z).reshape(len(z), -1)
    if xt.shape[0] != zt.shape[0]:
        raise ValueError(f"distance_correlation: x has {xt.shape[0]} rows, z has {zt.shape[0]}; must be equal")
    n = xt.shape[0]
    if n < 2:
        raise ValueError(f"distance_correlation: got {n} rows, need >= 2")
    if max_samples < 2:
        raise ValueError(f"max_samples: got {max_samples}, must be >= 2")
    if n > max_samples:
        idx = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False)))
        xt, zt = xt[idx], zt[idx]
    if bias_corrected:
        if xt.shape[0] < 4:
            raise ValueError(f"distance_correlation: bias_corrected needs >= 4 rows, got {xt.shape[0]}")
        a, b = _u_centered_distances(xt.double()), _u_centered_distances(zt.double())
        den = torch.sqrt((a * a).sum() * (b * b).sum())
        return float((a * b).sum() / den) if den > 0 else 0.0
    a = _centered_distances(xt.double())
    b = _centered_distances(zt.double())
    dcov2 = (a * b).mean()
    dvar = (a * a).mean() * (b * b).mean()
    if dvar <= 0:                       # a constant x or z: no dependence is measurable
        return 0.0
    return float(torch.sqrt(torch.clamp(dcov2, min=0.0) / torch.sqrt(dvar)))


def reconstruction_metrics(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    """Per-image MSE, PSNR (dB, pixels in [0, 1]) and SSIM, averaged over images. x: (N, C, H, W)."""
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.clip(np.asarray(x_hat, dtype=np.float64).reshape(x.shape), 0.0, 1.0)
    if x.ndim != 4:
        raise ValueError(f"x: got shape {x.shape}, must be (N, C, H, W)")
    if len(x) == 0:
        return {"mse": float("nan"), "psnr": float("nan"), "ssim": float("nan"), "n": 0}
    mse = ((x - x_hat) ** 2).reshape(len(x), -1).mean(axis=1)
    psnr = 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))
    win = min(7, *x.shape[2:])          # skimage's 7x7 window, odd and no larger than the image
    win -= 1 - win % 2
    ssim = ssim_batch(x, x_hat, win) if win >= 3 else np.array([float("nan")])
    return {"mse": float(mse.mean()), "psnr": float(psnr.mean()), "ssim": float(np.mean(ssim)), "n": int(len(x))}


def ssim_batch(x: np.ndarray, y: np.ndarray, win: int = 7) -> np.ndarray:
    """Per-image SSIM of (N, C, H, W) batches in [0, 1], the same numbers as skimage's
    ``structural_similarity(a, b, data_range=1, channel_axis=0, win_size=win)`` (uniform window,
    sample covariance, K1 0.01, K2 0.03, the border of half a window left out), vectorized over the
    batch: one image at a time through skimage cost ~1 ms each, the suite scores ~30k per run."""
    from scipy.ndimage import uniform_filter  # imported on use: only the privacy phase needs it

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    size = (1, 1, win, win)
    ux, uy = uniform_filter(x, size), uniform_filter(y, size)
    uxx, uyy, uxy = uniform_filter(x * x, size), uniform_filter(y * y, size), uniform_filter(x * y, size)
    norm = win * win / (win * win - 1.0)
    vx, vy, vxy = norm * (uxx - ux * ux), norm * (uyy - uy * uy), norm * (uxy - ux * uy)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return s[:, :, pad:s.shape[2] - pad, pad:s.shape[3] - pad].mean(axis=(1, 2, 3))


def reidentification(x: np.ndarray, y: np.ndarray, x_hat: np.ndarray, candidates: int = 100,
                     seed: int = 0) -> dict[str, float]:
    """Re-identification rate: the share of reconstructions whose nearest image (pixel L2) among
    `candidates` same-class images of `x` (the original plus `candidates - 1` others drawn, seeded,
    from the images of its class in `x`) is the original. Chance is 1 / candidates (1% at 100);
    a class with fewer images offers all of them, and `chance` reports the mean 1 / offered.

    Why same-class: the server holds every row's label, so re-identifying within the class is the
    question the reconstruction, not the label, has to answer."""
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    x_hat = np.clip(np.asarray(x_hat, dtype=np.float32).reshape(len(x), -1), 0.0, 1.0)
    y = np.asarray(y)
    if len(y) != len(x):
        raise ValueError(f"reidentification: {len(x)} images but {len(y)} labels; must be equal")
    if candidates < 2:
        raise ValueError(f"candidates: got {candidates}, must be >= 2")
    if len(x) == 0:
        return {"reid": float("nan"), "chance": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    hits, chance = np.zeros(len(x), bool), np.zeros(len(x))
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        d = torch.cdist(torch.from_numpy(x_hat[idx]), torch.from_numpy(x[idx])).numpy()   # (recon, image)
        k = min(candidates, len(idx))
        for row in range(len(idx)):     # one draw of k - 1 other images per reconstruction
            others = np.delete(np.arange(len(idx)), row)
            pick = rng.choice(others, k - 1, replace=False) if k - 1 < len(others) else others
            hits[idx[row]] = d[row, row] < d[row, pick].min(initial=np.inf)
            chance[idx[row]] = 1.0 / k
    return {"reid": float(hits.mean()), "chance": float(chance.mean()), "n": int(len(x))}
