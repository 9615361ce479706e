"""A trained checkpoint loaded for inference. In analog mode Classify runs the noisy forward pass of
the tiles, as the hardware would."""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from server.classifier import checkpoints
from server.classifier.alignment import Alignment
from server.classifier.errors import TrainingError, UnknownClient
from server.classifier.model import build_model, predict_proba
from server.config import ClassifierConfig

#: ``anchors(client_id) -> (anchor latents, anchor indices)``: a client's stored anchors, newest last
AnchorSource = Callable[[str], tuple[np.ndarray, np.ndarray]]


def _load_weights(model: torch.nn.Module, payload: dict[str, Any]) -> None:
    """The saved state dict; when it no longer matches the model's (a checkpoint written before the
    tiles' state gained or lost buffers), what matches is loaded and every analog layer is programmed
    with its saved effective weights, so such a checkpoint still classifies as it did."""
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError:
        model.load_state_dict(payload["state_dict"], strict=False)
        for layer, w in zip([m for m in model.modules() if hasattr(m, "set_weights")], payload["weights"]):
            layer.set_weights(w)


class Classifier:
    """A loaded checkpoint; ``predict_proba`` is thread-safe (one forward at a time)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.version = int(payload["version"])
        self.classes = list(payload["classes"])
        self.clients = list(payload["clients"])
        self.latent_dim = int(payload["latent_dim"])
        self.cfg = ClassifierConfig(**payload["config"])
        self.mean, self.std = payload["mean"], payload["std"]
        torch.manual_seed(self.cfg.seed)  # same device-to-device draws as at training time
        self.model = build_model(self.latent_dim, len(self.classes), len(self.clients), self.cfg)
        _load_weights(self.model, payload)
        self.model.eval()
        self._index = {c: i for i, c in enumerate(self.clients)}
        self._lock = threading.Lock()
        self.alignment = Alignment.from_dict(payload["alignment"]) if payload.get("alignment") else None

    def _align(self, z: np.ndarray, client_ids: list[str], anchors: AnchorSource | None) -> np.ndarray:
        """Map each client's rows onto the reference space, fitting a missing client's map from its
        stored anchors on first use."""
        for cid in sorted(set(client_ids) - set(self.alignment.maps)):
            z_a, idx = anchors(cid) if anchors is not None else (np.zeros((0, 0)), np.zeros(0))
            self.alignment.fit_client(cid, idx, z_a, self.cfg, self.version)
        return self.alignment.apply(z, client_ids)

    def predict_proba(self, z: np.ndarray, client_ids: list[str], anchors: AnchorSource | None = None) -> np.ndarray:
        """Class probabilities; ``anchors`` serves a client's stored anchor latents when the classifier
        was trained with an anchor map and has none for that client."""
        if self.alignment is not None:
            with self._lock:
                z = self._align(z, client_ids, anchors)
        elif self.cfg.client_conditioning == "adapter":
            unknown = sorted({c for c in client_ids if c not in self._index})
            if unknown:
                raise UnknownClient(
                    f"client_id: {unknown[0]!r} has no adapter head in classifier version {self.version} "
                    f"(trained on {len(self.clients)} clients); its latent space is its own, so upload its "
                    "latents and retrain the classifier")
        zt = (torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)) - self.mean) / self.std
        idx = torch.tensor([self._index.get(c, -1) for c in client_ids], dtype=torch.long)
        with self._lock:
            return predict_proba(self.model, zt, idx).numpy()

    def predict(self, z: np.ndarray, client_ids: list[str]) -> np.ndarray:
        return np.asarray(self.classes)[self.predict_proba(z, client_ids).argmax(axis=1)]


def load_classifier(store_dir: str | Path, version: int | None = None) -> Classifier:
    """The latest (or a given) checkpoint of a store."""
    if version is None:
        info = checkpoints.latest_info(store_dir)
        if info is None:
            raise TrainingError(f"classifier: none trained in {store_dir}")
        version = int(info["version"])
    path = checkpoints.model_path(store_dir, version)
    if not path.is_file():
        raise TrainingError(f"classifier: version {version} has no checkpoint at {path}")
    return Classifier(torch.load(path, weights_only=False))
