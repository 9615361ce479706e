"""Inversion from public data the alignment hands the server (no leaked pair).

With anchors, every client uploads its latents of the public images: per client the server holds an
inversion training set (its anchor latents -> the public images) and the labels of every row. With
alignment "pretrained" it also holds the decoder it pretrained on those images. Three attacks:

* ``pretrained_map``: the pretrained decoder through the client's least-squares anchor map onto the
  pretrained encoder's latents of the same public images (no training);
* ``pretrained_map_tuned``: the same decoder and map, fine-tuned on the client's anchor pairs,
  label-conditioned (the strongest on the default config: docs/privacy.md);
* ``anchor_decoder``: a fresh decoder of the clients' architecture trained on every client's anchor
  latents mapped into the shared reference space (the other chips' anchors augment each client's),
  label-conditioned, then applied to each victim's stored latents through its map.

Each returns {victim name: reconstructions (N, C, H, W)} for the victims asked for.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from edge_client.autoencoder import build_autoencoder
from edge_client.training import encode
from fleet.privacy.decoders import AttackDecoder, FitSettings, decode, decoder_body, fit
from fleet.privacy.views import ServerView

Recon = dict[str, np.ndarray]
POOLED_PASSES = 3


def _pretrained_latents(view: ServerView) -> np.ndarray:
    """The pretrained encoder's latents of the public images: the space its decoder reads."""
    cfg = view.cfg
    model = build_autoencoder(view.image_shape, cfg.model.latent_dim, cfg.model.autoencoder, tile_config=None,
                              conv_channels=cfg.model.conv_channels, mlp_hidden=cfg.model.mlp_hidden, init_seed=0)
    model.load_state_dict(view.pretrained)
    return encode(model, view.public_x)


def pretrained_map(view: ServerView, victims: list[str], settings: FitSettings, tune: bool = False,
                   labels: bool = True) -> Recon:
    """The pretrained decoder through each victim's anchor map (`tune`: fine-tuned on its anchors)."""
    target = _pretrained_latents(view)
    target_idx = np.arange(len(target))
    out: Recon = {}
    for k, name in enumerate(victims):
        c = view.clients[name]
        amap = view.map_onto(c, target_idx, target)
        model = AttackDecoder(decoder_body(view.cfg, view.image_shape, settings.seed, view.pretrained),
                              view.cfg.model.latent_dim, amap.weight, amap.bias,
                              num_classes=view.num_classes if (tune and labels) else 0)
        if tune:
            fit(model, c.anchor_z, view.public_x[c.anchor_idx], view.public_y[c.anchor_idx],
                replace(settings, seed=settings.seed + 101 * k))
        out[name] = decode(model, c.z, c.y if model.uses_labels else None)
    return out


def anchor_decoder(view: ServerView, victims: list[str], settings: FitSettings, labels: bool = True) -> Recon:
    """One fresh decoder on all clients' anchors in the reference space, applied per victim."""
    ref_idx, ref = view.reference()
    maps = {n: view.map_onto(c, ref_idx, ref) for n, c in view.clients.items()}
    z = np.concatenate([maps[n].apply(c.anchor_z) for n, c in view.clients.items()])
    idx = np.concatenate([c.anchor_idx for c in view.clients.values()])
    with torch.random.fork_rng(devices=[]):
        body = decoder_body(view.cfg, view.image_shape, settings.seed + 7)
    model = AttackDecoder(body, view.cfg.model.latent_dim, num_classes=view.num_classes if labels else 0)
    # as many steps as POOLED_PASSES passes over one client's anchors per epoch, whatever the fleet's size
    # (8 clients x 500 anchors at 30 epochs would otherwise cost 8x a per-client fit)
    per_client = len(z) / max(len(view.clients), 1)
    epochs = max(1, round(settings.epochs * min(1.0, POOLED_PASSES * per_client / len(z))))
    fit(model, z, view.public_x[idx], view.public_y[idx], replace(settings, epochs=epochs))
    return {n: decode(model, maps[n].apply(view.clients[n].z), view.clients[n].y if labels else None)
            for n in victims}
