"""Training a classifier on a store's latents: held-out split, optimizer, loop, new checkpoint version.

Analog mode trains with ``AnalogOptimizer`` (pulsed updates on the tiles, plain SGD for digital
parameters such as the client embedding); digital mode uses plain SGD with the same learning rate.
With ``anchor_map`` every client's rows go through its anchor map first (``alignment``); rows of a
client without anchors are left out and listed as ``unaligned_clients``.

Held-out split: per client, a seeded random ``held_out_fraction`` of its rows is never trained on;
the accuracy on them is the checkpoint's ``held_out_accuracy`` (also reported per client).
"""
from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

import analog
from server.classifier import checkpoints
from server.classifier.alignment import Alignment, fit_alignment
from server.classifier.errors import TrainingError
from server.classifier.model import adapter_parameters, analog_weights, build_model, predict_proba
from server.classifier.report import describe
from server.config import ClassifierConfig
from server.store import LatentStore


def held_out_split(client_ids: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows), split per client with ``seed``: every client with >= 2 rows
    contributes to both parts."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(client_ids)
    train, held = [], []
    for cid in sorted(set(client_ids)):
        rows = np.flatnonzero(ids == cid)
        rows = rows[rng.permutation(rows.size)]
        k = int(round(fraction * rows.size))
        k = min(max(k, 1 if rows.size >= 2 else 0), rows.size - 1)
        held.append(rows[:k])
        train.append(rows[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def make_optimizer(model: nn.Module, cfg: ClassifierConfig, n_clients: int = 1) -> torch.optim.Optimizer:
    """SGD (digital) or AnalogOptimizer. Adapter heads step at lr * adapter_lr_scale * n_clients: the
    loss is a batch mean and each head sees only its client's ~1/n of a batch, so without the factor
    the heads would learn n times slower than the shared trunk (measured in docs/fleet.md)."""
    head = list(model.adapter.parameters()) if model.adapter is not None else []
    ids = {id(p) for p in head}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]}]
    if head:
        groups.append({"params": head, "lr": cfg.lr * cfg.adapter_lr_scale * max(n_clients, 1)})
    if cfg.analog is None:
        return torch.optim.SGD(groups, lr=cfg.lr)
    return analog.AnalogOptimizer(groups, lr=cfg.lr)


def _read_store(store_dir: str | Path, cfg: ClassifierConfig):
    """(latents, labels, client ids) and, with an anchor map, every client's (anchor indices, latents)."""
    with LatentStore(store_dir) as store:
        z_np, y_np, client_ids = store.latents()
        anchor_sets = {}
        if cfg.anchor_map != "none":
            for cid in store.anchor_counts():
                z_a, idx = store.anchor_latents(cid)
                anchor_sets[cid] = (idx, z_a)
    return z_np, y_np, client_ids, anchor_sets


def train_classifier(store_dir: str | Path, cfg: ClassifierConfig, *, progress: bool = False) -> dict[str, Any]:
    """Train on every stored row except the held-out split, save a new checkpoint version, return its report."""
    t0 = time.perf_counter()
    z_np, y_np, client_ids, anchor_sets = _read_store(store_dir, cfg)
    alignment: Alignment | None = None
    unaligned: list[str] = []
    if cfg.anchor_map != "none":
        alignment = fit_alignment(anchor_sets, cfg)
        unaligned = sorted(set(client_ids) - set(alignment.maps))
        keep = np.asarray([c in alignment.maps for c in client_ids], dtype=bool)
        z_np, y_np = z_np[keep], y_np[keep]
        client_ids = [c for c, k in zip(client_ids, keep) if k]
        z_np = alignment.apply(z_np, client_ids)
    n = len(y_np)
    if n < cfg.min_rows:
        raise TrainingError(f"store: {n} rows stored, training needs at least classifier.min_rows ({cfg.min_rows})")
    classes = sorted(int(c) for c in np.unique(y_np))
    if len(classes) < 2:
        raise TrainingError(f"labels: all {n} rows have label {classes[0]}, need at least 2 classes")
    clients = sorted(set(client_ids))
    cindex = {c: i for i, c in enumerate(clients)}
    train_rows, held_rows = held_out_split(client_ids, cfg.held_out_fraction, cfg.seed)
    if held_rows.size == 0:
        raise TrainingError("held_out_fraction: leaves no held-out rows; store more rows per client")

    torch.manual_seed(cfg.seed)
    z = torch.from_numpy(z_np)
    lab = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([lab[int(v)] for v in y_np], dtype=torch.long)
    idx = torch.tensor([cindex[c] for c in client_ids], dtype=torch.long)
    if cfg.standardize:
        mean = z[train_rows].mean(dim=0)
        std = z[train_rows].std(dim=0, unbiased=False).clamp(min=1e-6)
    else:
        mean, std = torch.zeros(z.shape[1]), torch.ones(z.shape[1])
    zs = (z - mean) / std

    latent_dim = z.shape[1]
    model = build_model(latent_dim, len(classes), len(clients), cfg)
    opt = make_optimizer(model, cfg, len(clients))
    gen = torch.Generator().manual_seed(cfg.seed)
    tr = torch.from_numpy(train_rows)
    history: list[dict[str, float]] = []
    epochs = tqdm(range(cfg.epochs), desc=f"classifier ({cfg.mode})", unit="epoch", disable=not progress)
    for epoch in epochs:
        model.train()
        perm = tr[torch.randperm(tr.numel(), generator=gen)]
        total, correct, count = 0.0, 0, 0
        for s in range(0, perm.numel(), cfg.batch_size):
            b = perm[s:s + cfg.batch_size]
            logits = model(zs[b], idx[b])
            loss = F.cross_entropy(logits, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * b.numel()
            correct += int((logits.argmax(1) == y[b]).sum())
            count += b.numel()
        history.append({"epoch": epoch + 1, "loss": total / count, "train_accuracy": correct / count})
        if progress:
            epochs.set_postfix(loss=f"{total / count:.4f}", acc=f"{correct / count:.3f}")
        if not np.isfinite(total):
            raise TrainingError(f"classifier.lr: training diverged (loss {total}) at epoch {epoch + 1}; lower lr")

    model.eval()
    held = torch.from_numpy(held_rows)
    pred = predict_proba(model, zs[held], idx[held]).argmax(1)
    hit = (pred == y[held]).numpy()
    held_clients = np.asarray(client_ids)[held_rows]
    per_client = {c: {"held_out_rows": int((held_clients == c).sum()),
                      "accuracy": float(hit[held_clients == c].mean()) if (held_clients == c).any() else None}
                  for c in clients}
    train_pred = predict_proba(model, zs[tr], idx[tr]).argmax(1)
    result: dict[str, Any] = {
        "held_out_accuracy": float(hit.mean()),
        "held_out_rows": int(held_rows.size),
        "trained_rows": int(train_rows.size),
        "train_accuracy": float((train_pred == y[tr]).float().mean()),
        "per_client": per_client,
        "classes": classes,
        "clients": clients,
        "latent_dim": int(latent_dim),
        "mode": cfg.mode,
        "client_conditioning": cfg.client_conditioning,
        "adapter_parameters_per_client": (adapter_parameters(int(latent_dim), cfg.adapter_rank)
                                          if cfg.client_conditioning == "adapter" else 0),
        "anchor_map": cfg.anchor_map,
        "anchors": None if alignment is None else {
            "reference_anchors": int(alignment.ref_idx.size),
            "aligned_clients": sorted(alignment.maps),
            "unaligned_clients": unaligned,
            "residual": {c: m.residual for c, m in alignment.maps.items()}},
        "description": describe(cfg, latent_dim, len(classes)),
        "history": history,
        "seconds": round(time.perf_counter() - t0, 3),
        "config": cfg.to_dict(),
    }
    payload = {"state_dict": model.state_dict(), "mean": mean, "std": std, "classes": classes, "clients": clients,
               "latent_dim": int(latent_dim), "config": asdict(cfg), "weights": analog_weights(model),
               "alignment": None if alignment is None else alignment.to_dict()}
    return _save(store_dir, payload, result)


def _save(store_dir: str | Path, payload: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Write the model of a new version, then publish it; returns the report with version and path."""
    version, vdir = checkpoints.reserve_version(store_dir)
    path = checkpoints.model_path(store_dir, version)
    result = {"version": version, **result,
              "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "checkpoint": str(path)}
    torch.save({**payload, "version": version}, path)
    checkpoints.publish(store_dir, vdir, result)
    return result
