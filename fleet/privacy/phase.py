"""The privacy phase of a fleet run (docs/privacy.md): dCor per client, the server-side attack
suite, and the attack from one client's leaked pairs.

`run_privacy` reads the latents exactly as the server stored them (`server.store.LatentStore`,
dequantized, in upload order) and pairs them with the clients' training images from their
partitions (`edge_client.runner.client_data`). The images never cross the wire: this is a
measurement harness that holds the ground truth the attacker lacks. What the server holds is
gathered into a `ServerView`; the suite sees nothing else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_client import runner as er
from edge_client.config import EdgeConfig
from edge_client.data import load_dataset, public_anchor_indices
from fleet.config import FleetConfig
from fleet.names import PRETRAINED_FILE, client_name
from fleet.privacy.attacker import attack, mean_metrics, reconstruct, standardize
from fleet.privacy.decoders import FitSettings
from fleet.privacy.figures import plot_reconstructions
from fleet.privacy.metrics import distance_correlation
from fleet.privacy.suite import Truth, run_suite
from fleet.privacy.views import ClientView, ServerView
from server import anchors as am
from server.store import LatentStore


def _client_split(fleet: FleetConfig, partition_id: int) -> tuple[EdgeConfig, er.ClientData]:
    cfg = fleet.edge_config
    return cfg, er.client_data(cfg, partition_id, fleet.num_clients, fleet.alpha_or_none)


@torch.no_grad()
def _own_decoder(cfg: EdgeConfig, state_dir: Path, image_shape: tuple[int, int, int], partition_id: int,
                 z: np.ndarray) -> np.ndarray | None:
    """The victim's own decoder (on its own tiles, eval mode) applied to its stored latents."""
    path = state_dir / er.DECODER_FILE
    if not path.exists():
        return None
    model = er.load_encoder(cfg, state_dir, image_shape, partition_id)
    model.decoder.load_state_dict(torch.load(path, weights_only=True))
    return reconstruct(model.decoder, z)


def _anchor_mapped(stored: dict[int, np.ndarray], anchors: dict[int, tuple[np.ndarray, np.ndarray]]
                   ) -> dict[int, np.ndarray]:
    """Every client's stored latents through its least-squares anchor map onto the shared reference."""
    sets = {p: (idx, z) for p, (z, idx) in anchors.items()}
    ref_idx, ref = am.reference_space(sets)
    return {p: am.fit_map(*sets[p], ref_idx, ref, "lstsq").apply(stored[p]) for p in stored}


def public_set(fleet: FleetConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(images, labels, dataset indices or None) of the attacker's public set: the fleet's public
    anchor set when it has one; otherwise `privacy.public_images` images of the dataset's public
    slice, which then belong to clients (the phase leaves those rows out of the scores)."""
    cfg = fleet.edge_config
    ds = load_dataset(cfg.data.source)
    if cfg.public.size and cfg.public.path is not None:
        pub = load_dataset(cfg.public.path)
        return np.asarray(pub.x[: cfg.public.size], np.float32), np.asarray(pub.y[: cfg.public.size]), None
    idx = public_anchor_indices(ds.y, cfg.public.size or fleet.privacy.public_images)
    return np.asarray(ds.x[idx], np.float32), np.asarray(ds.y[idx]), None if cfg.public.size else idx


def server_view(fleet: FleetConfig, out_dir: Path, clients: dict[str, ClientView]) -> tuple[ServerView, np.ndarray | None]:
    """What the server of this run holds (and the dataset indices of a borrowed public set)."""
    px, py, borrowed = public_set(fleet)
    pre = None
    path = out_dir / PRETRAINED_FILE             # the server's own copy of what it sent the clients
    if fleet.alignment.pretrained and path.is_file():
        pre = torch.load(path, weights_only=True)
    classes = int(max(py.max(initial=0), *(c.y.max(initial=0) for c in clients.values()))) + 1
    return ServerView(fleet.edge_config, px, py, clients, pre, classes), borrowed


def run_privacy(fleet: FleetConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """The privacy phase of a fleet run: dCor per client and the attack from `privacy.leaked_client`.
    Needs the run's store (`out_dir/server`) and client state dirs (`out_dir/clients`)."""
    pc = fleet.privacy
    store_dir = out_dir / "server"
    if not (store_dir / "latents.sqlite3").exists():
        return {"skipped": f"no local store at {store_dir} (an external latent service holds the latents)"}
    if fleet.num_clients < 2:
        return {"skipped": "fleet.num_clients: got 1, the attack needs a leaked client and >= 1 victim"}
    store = LatentStore(store_dir, readonly=True)
    try:
        rows = {p: store.latents(client_name(p)) for p in range(fleet.num_clients)}
        anchors = {p: store.anchor_latents(client_name(p)) for p in range(fleet.num_clients)}
    finally:
        store.close()
    stored = {p: rows[p][0] for p in rows}
    views = {client_name(p): ClientView.from_store(client_name(p), rows[p][0], rows[p][1], *anchors[p])
             for p in rows}
    view, borrowed = server_view(fleet, out_dir, views)
    xs, dcor, own_recon, truth = {}, [], {}, {}
    for p in range(fleet.num_clients):
        cfg, data = _client_split(fleet, p)
        x = np.asarray(data.x_train, dtype=np.float32)
        keep = np.ones(len(x), bool) if borrowed is None else ~np.isin(data.train_idx, borrowed)
        if p != pc.leaked_client:
            truth[client_name(p)] = Truth(x, np.asarray(data.y_train), keep)
        if len(stored[p]) != len(x):
            raise ValueError(f"store: {client_name(p)} has {len(stored[p])} stored rows but {len(x)} training "
                             "images; the privacy phase pairs them in upload order and needs all of them")
        xs[p] = x
        dcor.append({"client_id": client_name(p), "n": int(min(len(x), pc.dcor_samples)),
                     "dcor": distance_correlation(x, stored[p], pc.dcor_samples, pc.seed + p)})
        if p != pc.leaked_client:
            rec = _own_decoder(cfg, out_dir / "clients" / client_name(p), data.dataset.image_shape, p, stored[p])
            if rec is not None:
                own_recon[client_name(p)] = rec
    L = pc.leaked_client
    n_leak = max(1, int(round(pc.leaked_fraction * len(xs[L]))))
    perm = np.random.default_rng(pc.seed).permutation(len(xs[L]))
    leak, rest = np.sort(perm[:n_leak]), np.sort(perm[n_leak:])
    zL = standardize(stored[L])
    victims = {client_name(p): (xs[p], standardize(stored[p])) for p in range(fleet.num_clients) if p != L}
    res = attack(xs[L][leak], zL[leak], victims, pc, held_out=(xs[L][rest], zL[rest]) if len(rest) else None,
                 own=own_recon, progress=progress)
    for row in res.victims:
        row["dcor"] = next(d["dcor"] for d in dcor if d["client_id"] == row["client_id"])
    aligned = None
    if all(len(a[1]) for a in anchors.values()):
        # The stronger attacker alignment makes possible: the server holds every client's public
        # anchor latents, so it maps all stored latents into one space (the classifier's own map)
        # and the leaked client's decoder applies to every victim there.
        mapped = _anchor_mapped(stored, anchors)
        zA = standardize(mapped[L])
        vA = {client_name(p): (xs[p], standardize(mapped[p])) for p in range(fleet.num_clients) if p != L}
        resA = attack(xs[L][leak], zA[leak], vA, pc, progress=progress)
        aligned = mean_metrics(resA.victims, "attack")
    settings = FitSettings(pc.attack_epochs, pc.attack_lr, pc.attack_batch_size, pc.attack_noise, pc.seed)
    extra = {"leaked_pairs": (f"{n_leak} leaked pairs of {client_name(L)} (digital MLP decoder)", res.recon)}
    if set(truth) <= set(own_recon):
        extra["own_decoder"] = ("the victims' own decoders (on their tiles)", own_recon)
    suite = run_suite(view, truth, settings, pc.server_attacks or None, pc.reid_candidates, extra, progress)
    suite_recon = suite.pop("recon")
    if borrowed is not None:
        suite["public_set"] = (f"{len(borrowed)} images of the dataset's public slice; the fleet has no public "
                               "set, so victims' rows among them are not scored")
    out = {
        "server_attack": suite,
        "leaked_client": client_name(L), "leaked_pairs": int(n_leak), "leaked_fraction": pc.leaked_fraction,
        "attacker": f"digital MLP {stored[L].shape[1]}-{pc.hidden}-{pc.hidden}-{xs[L][0].size}, "
                    f"Adam lr {pc.lr}, {pc.epochs} epochs, batch {pc.batch_size}, seed {pc.seed}",
        "latent_source": "server store (dequantized wire latents), standardized per client",
        "dcor": float(np.mean([d["dcor"] for d in dcor])),
        "dcor_clients": dcor,
        "attack": mean_metrics(res.victims, "attack"),
        "attack_anchor_aligned": aligned,     # None when the clients uploaded no anchors
        "mean_image": mean_metrics(res.victims, "mean_image"),
        "own_decoder": mean_metrics(res.victims, "own_decoder"),
        "leaked_client_held_out": res.held_out,
        "victims": res.victims,
    }
    try:
        best = suite.get("attack")
        plot_reconstructions(xs, res.recon, own_recon, fleet, out_dir / "privacy_reconstructions.png", pc.examples,
                             (best, suite_recon[best]) if best else None)
        out["figure"] = "privacy_reconstructions.png"
    except Exception as exc:  # noqa: BLE001 - a plot must never lose the numbers
        out["figure_error"] = f"{type(exc).__name__}: {exc}"
    return out
