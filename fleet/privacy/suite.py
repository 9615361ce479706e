"""The attack suite: every server-side inversion the server's holdings allow, scored alike.

Each attack reconstructs every victim's stored training latents; all are scored on the same images
(the victims' real training images, pooled) by PSNR, SSIM and the re-identification rate, next to two
free guesses: the class-mean image (the server holds every row's label) and the mean image, both
of the public set. The **strongest** attack is the server-side one with the highest SSIM (PSNR breaks
a tie); the headline is its PSNR gain over the class-mean guess (`gain_db`). Rows that use a leaked
pair or the victims' own decoders are reported beside it, never chosen as the strongest.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fleet.privacy.anchor_attacks import anchor_decoder, pretrained_map
from fleet.privacy.decoders import FitSettings, decode, decoder_body, AttackDecoder
from fleet.privacy.fora import fora
from fleet.privacy.metrics import reconstruction_metrics, reidentification
from fleet.privacy.views import ServerView
from server.anchors import AnchorError


@dataclass(frozen=True)
class Attack:
    """One server-side attack: what it needs of the server's holdings and how it runs."""

    needs: tuple[str, ...]              # "anchors", "pretrained"
    labels: bool                        # uses the stored labels
    run: Callable[[ServerView, list[str], FitSettings], dict[str, np.ndarray]]
    what: str


def _pretrained_raw(view: ServerView, victims: list[str], settings: FitSettings) -> dict[str, np.ndarray]:
    model = AttackDecoder(decoder_body(view.cfg, view.image_shape, settings.seed, view.pretrained),
                          view.cfg.model.latent_dim)
    return {n: decode(model, view.clients[n].z) for n in victims}


ATTACKS: dict[str, Attack] = {
    "pretrained_map_tuned": Attack(("pretrained", "anchors"), True,
                                   lambda v, n, s: pretrained_map(v, n, s, tune=True),
                                   "pretrained decoder through the anchor map, fine-tuned on the client's "
                                   "anchors, label-conditioned"),
    "pretrained_map": Attack(("pretrained", "anchors"), False, lambda v, n, s: pretrained_map(v, n, s),
                             "pretrained decoder through the client's anchor map"),
    "anchor_decoder": Attack(("anchors",), True, anchor_decoder,
                             "fresh decoder on all clients' anchors in the reference space, label-conditioned"),
    "pretrained_raw": Attack(("pretrained",), False, _pretrained_raw,
                             "pretrained decoder on the stored latents as they are"),
    "fora": Attack((), True, fora, "FORA-style substitute encoder matched (MMD on (z, y)) to the client's "
                                   "latents, decoder trained on public images"),
}


def missing(view: ServerView, name: str) -> str | None:
    """Why attack `name` cannot run on this view (None: it can)."""
    have = {"anchors": view.has_anchors, "pretrained": view.pretrained is not None}
    lacks = [HOLDINGS[n] for n in ATTACKS[name].needs if not have[n]]
    return f"the server holds no {' and no '.join(lacks)}" if lacks else None


HOLDINGS = {"anchors": "anchor latents", "pretrained": "pretrained weights"}


def not_by_default(view: ServerView, name: str) -> str | None:
    """Why the default suite leaves a runnable attack out: FORA when anchors give stronger ones."""
    if name == "fora" and view.has_anchors:
        return "anchors give the server stronger attacks; name it in privacy.server_attacks to run it"
    return None


@dataclass
class Truth:
    """The harness's ground truth for one victim: its training images in stored-row order, their
    labels, and which rows are scored (rows whose image is in the attacker's public set are not)."""

    x: np.ndarray
    y: np.ndarray
    keep: np.ndarray


def score(truth: dict[str, Truth], recon: dict[str, np.ndarray], candidates: int, seed: int) -> dict[str, Any]:
    """MSE, PSNR, SSIM and re-identification of reconstructions, pooled over the victims."""
    names = list(truth)
    x = np.concatenate([truth[n].x[truth[n].keep] for n in names])
    y = np.concatenate([truth[n].y[truth[n].keep] for n in names])
    x_hat = np.concatenate([np.asarray(recon[n]).reshape(truth[n].x.shape)[truth[n].keep] for n in names])
    out = reconstruction_metrics(x, x_hat)
    rid = reidentification(x, y, x_hat, candidates, seed)
    return out | {"reid": rid["reid"], "reid_chance": rid["chance"]}


def baselines(view: ServerView, truth: dict[str, Truth]) -> dict[str, dict[str, np.ndarray]]:
    """The free guesses: the public set's class-mean image (by each row's label) and its mean image."""
    classes = np.arange(view.num_classes)
    mean = view.public_x.mean(axis=0)
    class_mean = np.stack([view.public_x[view.public_y == c].mean(axis=0) if np.any(view.public_y == c) else mean
                           for c in classes])
    return {"class_mean": {n: class_mean[t.y] for n, t in truth.items()},
            "mean_image": {n: np.broadcast_to(mean, t.x.shape) for n, t in truth.items()}}


def run_suite(view: ServerView, truth: dict[str, Truth], settings: FitSettings, attacks: list[str] | None = None,
              candidates: int = 100, extra: dict[str, tuple[str, dict[str, np.ndarray]]] | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Run the server-side attacks on the victims in `truth` and score them with the baselines and
    the `extra` rows ({name: (what, reconstructions)}: a leaked-pairs attack, the own decoders).
    Returns the `privacy.server_attack` section of report.json."""
    victims = list(truth)
    names = list(ATTACKS) if attacks is None else list(attacks)
    rows: list[dict[str, Any]] = []
    recon: dict[str, dict[str, np.ndarray]] = {}
    skipped = {}
    for name in tqdm(names, desc="privacy: server attacks", disable=not progress, leave=False):
        why = missing(view, name) or (not_by_default(view, name) if attacks is None else None)
        if why:
            skipped[name] = why
            continue
        t0 = time.perf_counter()
        try:
            recon[name] = ATTACKS[name].run(view, victims, settings)
        except AnchorError as exc:          # e.g. fewer anchors than a least-squares map needs
            skipped[name] = str(exc)
            continue
        rows.append({"attack": name, "kind": "server", "labels": ATTACKS[name].labels, "what": ATTACKS[name].what,
                     **score(truth, recon[name], candidates, settings.seed), "seconds": time.perf_counter() - t0})
    base = baselines(view, truth)
    what = {"class_mean": "public set's mean image of the row's class (labels only)",
            "mean_image": "public set's mean image (nothing)"}
    for name, rec in base.items():
        rows.append({"attack": name, "kind": "baseline", "labels": name == "class_mean", "what": what[name],
                     **score(truth, rec, candidates, settings.seed)})
    for name, (desc, rec) in (extra or {}).items():
        if set(victims) <= set(rec):
            rows.append({"attack": name, "kind": name, "labels": False, "what": desc,
                         **score(truth, rec, candidates, settings.seed)})
    out: dict[str, Any] = {"rows": rows, "skipped": skipped, "victims": victims,
                           "scored_images": int(sum(t.keep.sum() for t in truth.values())),
                           "strongest_by": "ssim (then psnr)"}
    server = [r for r in rows if r["kind"] == "server"]
    cm = next(r for r in rows if r["attack"] == "class_mean")
    if server:
        best = max(server, key=lambda r: (r["ssim"], r["psnr"]))
        out.update(attack=best["attack"], psnr=best["psnr"], ssim=best["ssim"], mse=best["mse"], reid=best["reid"],
                   reid_chance=best["reid_chance"], gain_db=best["psnr"] - cm["psnr"],
                   ssim_gain=best["ssim"] - cm["ssim"])
    out["recon"] = recon            # not serialized: the phase draws from it and drops it
    return out
