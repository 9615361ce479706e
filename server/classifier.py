"""The server's classifier: an MLP over latents, on analog tiles (``analog`` package) or digital torch.

Same architecture both ways (Linear -> ReLU -> ... -> Linear); analog mode converts every Linear to an
analog layer with the configured TileConfig and trains with ``AnalogOptimizer`` (pulsed updates on the
tiles, plain SGD for digital parameters such as the client embedding); digital mode uses plain SGD
with the same learning rate, so the two are a like-for-like reference.

``client_conditioning = "embedding"`` (docs/design.md §1.3, option b): a learned per-client vector is
concatenated to z, because each client's latent space is its own. A client unseen at training time
gets the mean embedding. An embedding only shifts the first layer's bias per client: it cannot undo a
rotation or scaling of a client's latent space.

``client_conditioning = "adapter"`` (option c, a shared trunk with a small per-client head): each
client c gets an affine map ``z -> A_c z + b_c`` (A_c = I, b_c = 0 at init) in front of the shared
MLP trunk, trained jointly with it. ``adapter_rank = 0`` makes A_c a full d x d matrix, d(d+1)
parameters per client (1,056 at d = 32), enough to undo any rotation/scaling; ``adapter_rank = r``
uses ``A_c = I + U_c V_c^T`` (U_c = 0 at init), d(2r+1) parameters. The heads are **digital**
(plain SGD at ``lr * adapter_lr_scale * n_clients``, even when the trunk is on analog tiles): they are tiny (d^2
MACs per sample), selected per request, and must stay exact per client; the trunk carries the
analog cost. A client unseen at training time has no head, and an identity head would silently
misclassify its (unaligned) latents, so it is refused: ``UnknownClient`` (Classify answers
FAILED_PRECONDITION naming the client; upload its latents and retrain).

``anchor_map`` (public-anchor alignment, ``server.anchors``): every client also uploaded the latents
of the same public anchor images; the server fits, without labels, a per-client affine map onto a
reference space (the generalized Procrustes mean of all clients' anchors) and trains on the mapped
latents of every client that has anchors (rows of a client without anchors are left out and listed
as ``unaligned_clients``). Classify maps a client's latents the same way; a client whose anchors
arrived after training (or who has no labelled rows at all) is mapped on first use from its stored
anchors, and one without anchors is refused (``UnknownClient``, FAILED_PRECONDITION). With an
adapter on top, a client without a head uses the identity head: its latents are already aligned.

Held-out split: per client, a seeded random ``held_out_fraction`` of its rows is never trained on;
the accuracy on them is the checkpoint's ``held_out_accuracy`` (also reported per client).

Checkpoints: ``STORE/classifiers/vNNNN/{model.pt,report.json}``; ``classifiers/latest.json`` is
replaced atomically after the checkpoint is complete, so readers (Classify) never see half a model.
Inference in analog mode runs the noisy forward pass of the tiles, as the hardware would.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from server.config import ClassifierConfig
from server.store import LatentStore

CHECKPOINT_DIR = "classifiers"
LATEST = "latest.json"


class TrainingError(RuntimeError):
    """The store cannot train a classifier (too few rows, one class, mixed latent dims)."""


class UnknownClient(TrainingError):
    """An adapter classifier was asked about a client it has no per-client head for."""


def adapter_parameters(latent_dim: int, rank: int) -> int:
    """Parameters of one client's adapter head: full d(d+1), low-rank d(2r+1)."""
    return latent_dim * (latent_dim + 1) if rank == 0 else latent_dim * (2 * rank + 1)


def _ckpt_root(store_dir: str | Path) -> Path:
    return Path(store_dir) / CHECKPOINT_DIR


def latest_key(store_dir: str | Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of latest.json, a cheap change detector; None when nothing is trained."""
    try:
        st = (_ckpt_root(store_dir) / LATEST).stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def latest_info(store_dir: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((_ckpt_root(store_dir) / LATEST).read_text())
    except FileNotFoundError:
        return None


def _adapter_class():
    import torch
    from torch import nn

    class ClientAdapter(nn.Module):
        """Per-client affine head z -> A_c z + b_c (digital), identity at init; see the module docstring."""

        def __init__(self, n_clients: int, dim: int, rank: int, identity_for_unknown: bool = False) -> None:
            super().__init__()
            self.rank = rank
            self.identity_for_unknown = identity_for_unknown
            self.bias = nn.Parameter(torch.zeros(n_clients, dim))
            if rank == 0:
                self.weight = nn.Parameter(torch.eye(dim).repeat(n_clients, 1, 1))
            else:  # I + U V^T: U = 0 keeps the identity at init, V random so U gets a gradient
                self.u = nn.Parameter(torch.zeros(n_clients, dim, rank))
                self.v = nn.Parameter(torch.randn(n_clients, dim, rank) / dim ** 0.5)

        def forward(self, z: torch.Tensor, client_idx: torch.Tensor) -> torch.Tensor:
            unknown = client_idx < 0
            if bool(unknown.any()):
                if not self.identity_for_unknown:
                    raise UnknownClient("client_id: no adapter head for this client")
                out = self.forward(z[~unknown], client_idx[~unknown]) if bool((~unknown).any()) else z[:0]
                full = z.clone()
                full[~unknown] = out
                return full
            b = self.bias[client_idx]
            if self.rank == 0:
                return torch.bmm(self.weight[client_idx], z.unsqueeze(2)).squeeze(2) + b
            vz = torch.bmm(self.v[client_idx].transpose(1, 2), z.unsqueeze(2))    # (B, r, 1)
            return z + torch.bmm(self.u[client_idx], vz).squeeze(2) + b

    return ClientAdapter


def _build(latent_dim: int, hidden: list[int], n_classes: int, n_clients: int, cfg: ClassifierConfig):
    import torch
    from torch import nn

    ClientAdapter = _adapter_class()

    class LatentMLP(nn.Module):
        """z (+ client embedding) -> hidden ReLU layers -> class logits."""

        def __init__(self) -> None:
            super().__init__()
            extra = cfg.embedding_dim if cfg.client_conditioning == "embedding" else 0
            self.embedding = nn.Embedding(max(n_clients, 1), extra) if extra else None
            self.adapter = (ClientAdapter(max(n_clients, 1), latent_dim, cfg.adapter_rank,
                                          identity_for_unknown=cfg.anchor_map != "none")
                            if cfg.client_conditioning == "adapter" else None)
            dims = [latent_dim + extra, *hidden]
            layers: list[nn.Module] = []
            for a, b in zip(dims[:-1], dims[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            layers.append(nn.Linear(dims[-1], n_classes))
            self.body = nn.Sequential(*layers)

        def forward(self, z: torch.Tensor, client_idx: torch.Tensor) -> torch.Tensor:
            if self.adapter is not None:
                z = self.adapter(z, client_idx)
            if self.embedding is not None:
                known = client_idx >= 0
                emb = self.embedding(client_idx.clamp(min=0))
                if not bool(known.all()):
                    mean = self.embedding.weight.mean(dim=0, keepdim=True).expand_as(emb)
                    emb = torch.where(known[:, None], emb, mean)
                z = torch.cat([z, emb], dim=1)
            return self.body(z)

    model = LatentMLP()
    tile = cfg.tile_config()
    if tile is not None:
        import analog

        if hasattr(analog, "reset_layer_counter"):
            analog.reset_layer_counter()  # a seeded TileConfig rebuilds the same devices at load time
        model.body = analog.convert_to_analog(model.body, tile)
    return model


def _optimizer(model, cfg: ClassifierConfig, n_clients: int = 1):
    """SGD (digital) or AnalogOptimizer. Adapter heads step at lr * adapter_lr_scale * n_clients: the
    loss is a batch mean and each head sees only its client's ~1/n of a batch, so without the factor
    the heads would learn n times slower than the shared trunk (measured in docs/fleet.md)."""
    import torch

    head = list(model.adapter.parameters()) if model.adapter is not None else []
    ids = {id(p) for p in head}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]}]
    if head:
        groups.append({"params": head, "lr": cfg.lr * cfg.adapter_lr_scale * max(n_clients, 1)})
    if cfg.analog is None:
        return torch.optim.SGD(groups, lr=cfg.lr)
    import analog

    return analog.AnalogOptimizer(groups, lr=cfg.lr)


def _split(client_ids: list[str], n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-client seeded split: every client with >= 2 rows contributes to both parts."""
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


def describe(cfg: ClassifierConfig, latent_dim: int, n_classes: int) -> str:
    arch = " -> ".join(str(d) for d in [latent_dim, *cfg.hidden, n_classes])
    cond = f", client embedding {cfg.embedding_dim}" if cfg.client_conditioning == "embedding" else ""
    if cfg.client_conditioning == "adapter":
        kind = "full" if cfg.adapter_rank == 0 else f"rank-{cfg.adapter_rank}"
        cond = (f", per-client digital {kind} affine adapter "
                f"({adapter_parameters(latent_dim, cfg.adapter_rank)} parameters each)")
    if cfg.anchor_map != "none":
        cond += f", public-anchor alignment ({cfg.anchor_map})"
    if cfg.analog is None:
        return f"digital MLP {arch}{cond}, SGD lr {cfg.lr}"
    dev = (cfg.analog.get("device") or {}).get("type", "default device")
    alg = (cfg.analog.get("algorithm") or {}).get("type", "AnalogSGD")
    return f"analog MLP {arch}{cond}, {dev} / {alg}, lr {cfg.lr}"


def _predict(model, z, idx, batch: int = 4096):
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, z.shape[0], batch):
            out.append(torch.softmax(model(z[s:s + batch], idx[s:s + batch]), dim=1))
    return torch.cat(out) if out else torch.zeros(0)


def train_classifier(store_dir: str | Path, cfg: ClassifierConfig, *, progress: bool = False) -> dict[str, Any]:
    """Train on every stored row except the held-out split, save a new checkpoint version, return its report."""
    import torch
    from torch.nn import functional as F

    t0 = time.perf_counter()
    with LatentStore(store_dir) as store:
        z_np, y_np, client_ids = store.latents()
        anchor_sets = {}
        if cfg.anchor_map != "none":
            for cid in store.anchor_counts():
                z_a, idx = store.anchor_latents(cid)
                anchor_sets[cid] = (idx, z_a)
    alignment, unaligned = None, []
    if cfg.anchor_map != "none":
        alignment = fit_alignment(anchor_sets, cfg)
        unaligned = sorted(set(client_ids) - set(alignment["maps"]))
        keep = np.asarray([c in alignment["maps"] for c in client_ids], dtype=bool)
        z_np, y_np = z_np[keep], y_np[keep]
        client_ids = [c for c, k in zip(client_ids, keep) if k]
        z_np = apply_alignment(alignment, z_np, client_ids)
    n = len(y_np)
    if n < cfg.min_rows:
        raise TrainingError(f"store: {n} rows stored, training needs at least classifier.min_rows ({cfg.min_rows})")
    classes = sorted(int(c) for c in np.unique(y_np))
    if len(classes) < 2:
        raise TrainingError(f"labels: all {n} rows have label {classes[0]}, need at least 2 classes")
    clients = sorted(set(client_ids))
    cindex = {c: i for i, c in enumerate(clients)}
    train_rows, held_rows = _split(client_ids, n, cfg.held_out_fraction, cfg.seed)
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
    model = _build(latent_dim, cfg.hidden, len(classes), len(clients), cfg)
    opt = _optimizer(model, cfg, len(clients))
    gen = torch.Generator().manual_seed(cfg.seed)
    tr = torch.from_numpy(train_rows)
    history: list[dict[str, float]] = []
    epochs = range(cfg.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc=f"classifier ({cfg.mode})", unit="epoch")
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
    pred = _predict(model, zs[held], idx[held]).argmax(1)
    hit = (pred == y[held]).numpy()
    held_clients = np.asarray(client_ids)[held_rows]
    per_client = {c: {"held_out_rows": int((held_clients == c).sum()),
                      "accuracy": float(hit[held_clients == c].mean()) if (held_clients == c).any() else None}
                  for c in clients}
    train_pred = _predict(model, zs[tr], idx[tr]).argmax(1)
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
            "reference_anchors": int(alignment["ref_idx"].size),
            "aligned_clients": sorted(alignment["maps"]),
            "unaligned_clients": unaligned,
            "residual": {c: m.residual for c, m in alignment["maps"].items()}},
        "description": describe(cfg, latent_dim, len(classes)),
        "history": history,
        "seconds": round(time.perf_counter() - t0, 3),
        "config": cfg.to_dict(),
    }
    payload = {"state_dict": model.state_dict(), "mean": mean, "std": std, "classes": classes, "clients": clients,
               "latent_dim": int(latent_dim), "config": asdict(cfg), "weights": _analog_weights(model),
               "alignment": None if alignment is None else {
                   "ref_idx": alignment["ref_idx"], "ref": alignment["ref"],
                   "maps": {c: m.to_dict() for c, m in alignment["maps"].items()}}}
    return _save(store_dir, payload, result)


def fit_alignment(anchor_sets: dict[str, tuple[np.ndarray, np.ndarray]], cfg: ClassifierConfig) -> dict[str, Any]:
    """Reference space and per-client maps from every client's (anchor indices, anchor latents)."""
    from server import anchors as am

    try:
        ref_idx, ref = am.reference_space(anchor_sets)
        maps = {c: am.fit_map(idx, z, ref_idx, ref, cfg.anchor_map, cfg.anchor_ridge)
                for c, (idx, z) in anchor_sets.items()}
    except am.AnchorError as exc:
        raise TrainingError(str(exc)) from None
    return {"ref_idx": ref_idx, "ref": ref, "maps": maps}


def apply_alignment(alignment: dict[str, Any], z: np.ndarray, client_ids: list[str]) -> np.ndarray:
    """Each row through its client's anchor map (every client must have one)."""
    ids = np.asarray(client_ids)
    out = np.empty((z.shape[0], alignment["ref"].shape[1]), np.float32)
    for cid in sorted(set(client_ids)):
        rows = ids == cid
        out[rows] = alignment["maps"][cid].apply(z[rows])
    return out


def _analog_weights(model) -> list:
    return [m.get_weights().detach().clone() for m in model.modules() if hasattr(m, "get_weights")]


def _save(store_dir: str | Path, payload: dict, result: dict[str, Any]) -> dict[str, Any]:
    import torch

    root = _ckpt_root(store_dir)
    root.mkdir(parents=True, exist_ok=True)
    existing = [int(p.name[1:]) for p in root.glob("v[0-9]*") if p.name[1:].isdigit()]
    version = max(existing, default=0) + 1
    while True:  # mkdir is atomic: two trainers never share a version
        vdir = root / f"v{version:04d}"
        try:
            vdir.mkdir()
            break
        except FileExistsError:
            version += 1
    result = {"version": version, **result,
              "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "checkpoint": str(vdir / "model.pt")}
    payload["version"] = version
    torch.save(payload, vdir / "model.pt")
    (vdir / "report.json").write_text(json.dumps(result, indent=2))
    info = {k: result[k] for k in ("version", "held_out_accuracy", "held_out_rows", "trained_rows", "trained_at",
                                   "description", "latent_dim", "classes", "client_conditioning", "mode",
                                   "checkpoint", "anchor_map")}
    tmp = root / f".{LATEST}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, root / LATEST)
    return result


class Classifier:
    """A loaded checkpoint; ``predict_proba`` is thread-safe (one forward at a time)."""

    def __init__(self, payload: dict) -> None:
        import torch

        self.version = int(payload["version"])
        self.classes = list(payload["classes"])
        self.clients = list(payload["clients"])
        self.latent_dim = int(payload["latent_dim"])
        self.cfg = ClassifierConfig(**payload["config"])
        self.mean, self.std = payload["mean"], payload["std"]
        torch.manual_seed(self.cfg.seed)  # same device-to-device draws as at training time
        self.model = _build(self.latent_dim, self.cfg.hidden, len(self.classes), len(self.clients), self.cfg)
        try:
            self.model.load_state_dict(payload["state_dict"])
        except RuntimeError:
            self.model.load_state_dict(payload["state_dict"], strict=False)
            for layer, w in zip([m for m in self.model.modules() if hasattr(m, "set_weights")], payload["weights"]):
                layer.set_weights(w)
        self.model.eval()
        self._index = {c: i for i, c in enumerate(self.clients)}
        self._lock = threading.Lock()
        self.alignment = None
        if payload.get("alignment"):
            from server.anchors import AnchorMap

            a = payload["alignment"]
            self.alignment = {"ref_idx": np.asarray(a["ref_idx"]), "ref": np.asarray(a["ref"]),
                              "maps": {c: AnchorMap.from_dict(m) for c, m in a["maps"].items()}}

    def _align(self, z: np.ndarray, client_ids: list[str], anchors) -> np.ndarray:
        """Map each client's rows onto the reference space, fitting a missing client's map from its
        stored anchors (``anchors(client_id) -> (z, indices)``, newest last) on first use."""
        from server import anchors as am

        maps = self.alignment["maps"]
        for cid in sorted(set(client_ids) - set(maps)):
            z_a, idx = anchors(cid) if anchors is not None else (np.zeros((0, 0)), np.zeros(0))
            if len(idx) == 0:
                raise UnknownClient(
                    f"client_id: {cid!r} has uploaded no anchor latents; classifier version {self.version} "
                    f"maps every client's latents through its public anchors (anchor_map = "
                    f"{self.cfg.anchor_map}), so upload the anchor set's latents (header.anchors) first")
            try:
                maps[cid] = am.fit_map(idx, z_a, self.alignment["ref_idx"], self.alignment["ref"],
                                       self.cfg.anchor_map, self.cfg.anchor_ridge)
            except am.AnchorError as exc:
                raise UnknownClient(f"client_id: {cid!r}: {exc}") from None
        return apply_alignment(self.alignment, z, client_ids)

    def predict_proba(self, z: np.ndarray, client_ids: list[str], anchors=None) -> np.ndarray:
        """Class probabilities; ``anchors(client_id) -> (z, indices)`` serves a client's stored anchor
        latents when the classifier was trained with an anchor map and has none for that client."""
        import torch

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
            return _predict(self.model, zt, idx).numpy()

    def predict(self, z: np.ndarray, client_ids: list[str]) -> np.ndarray:
        return np.asarray(self.classes)[self.predict_proba(z, client_ids).argmax(axis=1)]


def load_classifier(store_dir: str | Path, version: int | None = None) -> Classifier:
    """The latest (or a given) checkpoint of a store."""
    import torch

    if version is None:
        info = latest_info(store_dir)
        if info is None:
            raise TrainingError(f"classifier: none trained in {store_dir}")
        version = int(info["version"])
    path = _ckpt_root(store_dir) / f"v{version:04d}" / "model.pt"
    if not path.is_file():
        raise TrainingError(f"classifier: version {version} has no checkpoint at {path}")
    return Classifier(torch.load(path, weights_only=False))


def format_result(result: dict[str, Any]) -> str:
    """A terminal table of one training run."""
    lines = [f"classifier version {result['version']}: {result['description']}",
             f"  held-out accuracy {result['held_out_accuracy']:.4f} on {result['held_out_rows']} rows "
             f"(train accuracy {result['train_accuracy']:.4f} on {result['trained_rows']} rows), "
             f"{result['seconds']:.1f} s",
             f"  {'client':<24} {'held-out rows':>13} {'accuracy':>9}"]
    for cid, r in result["per_client"].items():
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        lines.append(f"  {cid:<24} {r['held_out_rows']:>13} {acc:>9}")
    lines.append(f"  checkpoint {result['checkpoint']}")
    return "\n".join(lines)
