"""Public-anchor alignment (``server.anchors``) as the classifier uses it: every client also uploaded
the latents of the same public anchor images; without labels, a per-client affine map sends each
client's latent space onto a reference space (the generalized Procrustes mean of all clients' anchors).
Training maps the rows of every client with anchors; Classify maps a request's latents the same way."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server import anchors as am
from server.classifier.errors import TrainingError, UnknownClient
from server.config import ClassifierConfig


@dataclass
class Alignment:
    """The reference space (anchor indices and latents) and one fitted map per client."""

    ref_idx: np.ndarray
    ref: np.ndarray
    maps: dict[str, am.AnchorMap]

    def apply(self, z: np.ndarray, client_ids: list[str]) -> np.ndarray:
        """Each row through its client's anchor map (every client must have one)."""
        ids = np.asarray(client_ids)
        out = np.empty((z.shape[0], self.ref.shape[1]), np.float32)
        for cid in sorted(set(client_ids)):
            rows = ids == cid
            out[rows] = self.maps[cid].apply(z[rows])
        return out

    def fit_client(self, cid: str, idx: np.ndarray, z: np.ndarray, cfg: ClassifierConfig, version: int) -> None:
        """Fit the map of a client whose anchors arrived after training, from its stored anchors."""
        if len(idx) == 0:
            raise UnknownClient(
                f"client_id: {cid!r} has uploaded no anchor latents; classifier version {version} "
                f"maps every client's latents through its public anchors (anchor_map = "
                f"{cfg.anchor_map}), so upload the anchor set's latents (header.anchors) first")
        try:
            self.maps[cid] = am.fit_map(idx, z, self.ref_idx, self.ref, cfg.anchor_map, cfg.anchor_ridge)
        except am.AnchorError as exc:
            raise UnknownClient(f"client_id: {cid!r}: {exc}") from None

    def to_dict(self) -> dict:
        return {"ref_idx": self.ref_idx, "ref": self.ref, "maps": {c: m.to_dict() for c, m in self.maps.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "Alignment":
        return cls(np.asarray(data["ref_idx"]), np.asarray(data["ref"]),
                   {c: am.AnchorMap.from_dict(m) for c, m in data["maps"].items()})


def fit_alignment(anchor_sets: dict[str, tuple[np.ndarray, np.ndarray]], cfg: ClassifierConfig) -> Alignment:
    """Reference space and per-client maps from every client's (anchor indices, anchor latents)."""
    try:
        ref_idx, ref = am.reference_space(anchor_sets)
        maps = {c: am.fit_map(idx, z, ref_idx, ref, cfg.anchor_map, cfg.anchor_ridge)
                for c, (idx, z) in anchor_sets.items()}
    except am.AnchorError as exc:
        raise TrainingError(str(exc)) from None
    return Alignment(ref_idx, ref, maps)
