"""What the honest-but-curious server holds, as the attacks see it (docs/privacy.md, threat model).

Per client: its stored training latents (dequantized, upload order), their labels, and, when the
alignment uploads anchors, its latents of the public anchor images. Fleet-wide: the public images
(with their labels: a public set is labelled), the clients' architecture (it is in the config the
server hands out) and, with alignment "pretrained", the autoencoder the server pretrained itself.
Never the clients' private images, encoders or decoders: those are the harness's ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from edge_client.config import EdgeConfig
from server import anchors as am


@dataclass
class ClientView:
    """One client as the server stores it."""

    name: str
    z: np.ndarray                            # (N, d) stored training latents
    y: np.ndarray                            # (N,) their labels
    anchor_idx: np.ndarray | None = None     # (K,) indices into the public set, one per anchor row
    anchor_z: np.ndarray | None = None       # (K, d) this client's latents of those public images

    @classmethod
    def from_store(cls, name: str, z: np.ndarray, y: np.ndarray, anchor_z: np.ndarray,
                   anchor_idx: np.ndarray) -> "ClientView":
        """From `LatentStore.latents` / `anchor_latents`: a re-uploaded anchor's last row wins."""
        if not len(anchor_idx):
            return cls(name, np.asarray(z, np.float32), np.asarray(y, np.int64))
        last = {int(i): k for k, i in enumerate(anchor_idx)}
        idx = np.asarray(sorted(last), np.int64)
        rows = np.asarray([last[int(i)] for i in idx])
        return cls(name, np.asarray(z, np.float32), np.asarray(y, np.int64), idx,
                   np.asarray(anchor_z, np.float32)[rows])

    @property
    def has_anchors(self) -> bool:
        return self.anchor_idx is not None and len(self.anchor_idx) > 0


@dataclass
class ServerView:
    """Everything an attack may use."""

    cfg: EdgeConfig                           # the clients' architecture (latent_dim, autoencoder kind)
    public_x: np.ndarray                      # (P, C, H, W) the public images
    public_y: np.ndarray                      # (P,) their labels
    clients: dict[str, ClientView]
    pretrained: dict[str, torch.Tensor] | None = None   # the server's pretrained autoencoder, if any
    num_classes: int = 10
    _reference: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.public_x.shape[1:])  # type: ignore[return-value]

    @property
    def has_anchors(self) -> bool:
        return bool(self.clients) and all(c.has_anchors for c in self.clients.values())

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """(anchor indices, reference latents): the shared space the classifier's anchor maps target."""
        if self._reference is None:
            self._reference = am.reference_space({n: (c.anchor_idx, c.anchor_z) for n, c in self.clients.items()})
        return self._reference

    def map_onto(self, client: ClientView, target_idx: np.ndarray, target: np.ndarray) -> am.AnchorMap:
        """The least-squares affine map of this client's anchor latents onto `target` (same public images)."""
        return am.fit_map(client.anchor_idx, client.anchor_z, target_idx, target, "lstsq")
