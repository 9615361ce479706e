"""Public-anchor alignment: per-client maps from a client's latent space to one reference space.

Every client encodes the same public anchor images (no client owns them) with its own encoder and
uploads their latents, tagged with each anchor's index in the public set. The server then knows,
without any label, where the same image lands in every client's latent space, and fits per client
an affine map ``z -> z @ W_c + b_c`` onto a common reference:

* the **reference** is the generalized Procrustes mean of all clients' anchor latents (each centred
  and scaled to unit RMS, rotated onto the running mean, averaged, a few rounds): no client's space
  is privileged, and an orthogonal fit cannot collapse the reference the way a free linear fit could;
* the **map** of one client is fitted on the anchors it shares with the reference, by
  ``lstsq`` (ordinary least squares, a full affine map), ``ridge`` (least squares with an L2 penalty
  ``ridge * n`` on the standardized latents, for few anchors or noisy chips) or ``procrustes``
  (rotation + one scale + offset: the fewest parameters, exact for a rigid drift).

A client that uploaded anchors later (or has no labelled rows) is mapped the same way at Classify
time: the map needs its anchors and the reference only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import AnalogEdgeError

METHODS = ("lstsq", "ridge", "procrustes")
GPA_ROUNDS = 8


class AnchorError(AnalogEdgeError, ValueError):
    """The anchors cannot define a map (too few shared anchors, wrong shape)."""


@dataclass(frozen=True)
class AnchorMap:
    """``apply(z) = z @ weight + bias``; float64 inside, float32 out."""

    weight: np.ndarray    # (d, d_ref)
    bias: np.ndarray      # (d_ref,)
    method: str
    anchors_used: int
    residual: float       # RMS error on the anchors, relative to the reference's RMS (1.0)

    def apply(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z, np.float64) @ self.weight + self.bias).astype(np.float32)

    def to_dict(self) -> dict:
        return {"weight": self.weight, "bias": self.bias, "method": self.method,
                "anchors_used": self.anchors_used, "residual": self.residual}

    @classmethod
    def from_dict(cls, d: dict) -> "AnchorMap":
        return cls(np.asarray(d["weight"]), np.asarray(d["bias"]), str(d["method"]), int(d["anchors_used"]),
                   float(d["residual"]))


def _orthogonal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The orthogonal Q minimizing ||a Q - b||_F (both centred): U V^T of svd(a^T b)."""
    u, _, vt = np.linalg.svd(a.T @ b, full_matrices=False)
    return u @ vt


def _unit(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    rms = float(np.sqrt(np.mean(a ** 2)))
    return a / rms if rms > 0 else a


def _by_index(idx: np.ndarray, z: np.ndarray) -> dict[int, np.ndarray]:
    """Last row wins per anchor index (a re-uploaded anchor replaces the earlier one)."""
    return {int(i): row for i, row in zip(idx, z)}


def common_anchors(anchor_sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The anchor indices every client uploaded, sorted."""
    common: set[int] | None = None
    for idx, _ in anchor_sets.values():
        s = {int(i) for i in idx}
        common = s if common is None else common & s
    return np.asarray(sorted(common or ()), dtype=np.int64)


def reference_space(anchor_sets: dict[str, tuple[np.ndarray, np.ndarray]], min_anchors: int = 2
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(anchor indices, reference latents (n, d)) from every client's (indices, latents)."""
    if not anchor_sets:
        raise AnchorError("anchors: no client uploaded anchor latents")
    idx = common_anchors(anchor_sets)
    if idx.size < min_anchors:
        raise AnchorError(f"anchors: the clients share {idx.size} anchor indices, need at least {min_anchors}")
    mats = []
    for cid in sorted(anchor_sets):
        rows = _by_index(*anchor_sets[cid])
        mats.append(_unit(np.stack([np.asarray(rows[int(i)], np.float64) for i in idx])))
    dims = {m.shape[1] for m in mats}
    if len(dims) > 1:
        raise AnchorError(f"latent_dim: the clients' anchors mix latent dims {sorted(dims)}")
    ref = mats[0]
    for _ in range(GPA_ROUNDS):
        ref = _unit(np.mean([m @ _orthogonal(m, ref) for m in mats], axis=0))
    return idx, ref


def fit_map(idx: np.ndarray, z: np.ndarray, ref_idx: np.ndarray, ref: np.ndarray, method: str = "lstsq",
            ridge: float = 1e-2) -> AnchorMap:
    """The map of one client's anchors (idx, z) onto the reference (ref_idx, ref), by `method`."""
    if method not in METHODS:
        raise AnchorError(f"anchor_map: got {method!r}, must be one of {', '.join(METHODS)}")
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or z.shape[1] != ref.shape[1]:
        raise AnchorError(f"latent_dim: anchors have shape {z.shape}, the reference has {ref.shape[1]} columns")
    rows = _by_index(np.asarray(idx), z)
    keep = [k for k, i in enumerate(ref_idx) if int(i) in rows]
    need = z.shape[1] + 1 if method == "lstsq" else 2
    if len(keep) < need:
        raise AnchorError(f"anchors: {len(keep)} of this client's anchors are in the reference, "
                          f"{method} needs at least {need}")
    a = np.stack([rows[int(ref_idx[k])] for k in keep])
    r = ref[keep]
    mu_a, mu_r = a.mean(axis=0), r.mean(axis=0)
    ac, rc = a - mu_a, r - mu_r
    if method == "lstsq":
        w, *_ = np.linalg.lstsq(ac, rc, rcond=None)
    elif method == "ridge":
        sd = ac.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        s = ac / sd
        w = np.linalg.solve(s.T @ s + ridge * len(keep) * np.eye(s.shape[1]), s.T @ rc) / sd[:, None]
    else:
        q = _orthogonal(ac, rc)
        norm = float(np.sum(ac ** 2))
        scale = float(np.trace(ac.T @ rc @ q.T)) / norm if norm > 0 else 1.0
        w = scale * q
    b = mu_r - mu_a @ w
    resid = float(np.sqrt(np.mean((a @ w + b - r) ** 2)))
    return AnchorMap(w, b, method, len(keep), resid)
