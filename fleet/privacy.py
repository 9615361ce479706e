"""How much do the shared latents reveal? Distance correlation and a model-inversion attack.

Two measurements (DESIGN.md section 6):

* `distance_correlation(x, z)`: Szekely's sample distance correlation between flattened images and
  their latents (0 iff independent in the population, 1 for a similarity map; the quantity NoPeek,
  Vepakomma et al., minimizes). It sees non-linear dependence that Pearson correlation misses.
* A model-inversion attack (He et al. 2019, against collaborative inference): the attacker (the
  server, or an eavesdropper on the wire) holds leaked (x, z) pairs from ONE client, trains its own
  digital decoder z -> x, and reconstructs the OTHER clients' images from the latents the server
  stored. Reported as MSE / PSNR / SSIM on the victims' images next to two baselines: the mean
  image of the leaked set (what an attacker without latents gets) and the victim's own decoder
  (roughly what the latent can reveal at most).

`run_privacy` is the fleet phase: it reads the latents exactly as the server stored them
(`server.store.LatentStore`, dequantized, in upload order) and pairs them with the clients'
training images from their partitions (`edge_client.runner.client_data`). The images never cross
the wire: this is a measurement harness that holds the ground truth the attacker lacks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fleet.config import FleetConfig, PrivacyConfig


# ----------------------------------------------------------------------------- distance correlation
def _centered_distances(a: torch.Tensor) -> torch.Tensor:
    """Double-centred Euclidean distance matrix A_ij = a_ij - a_i. - a_.j + a_.. (Szekely 2007)."""
    d = torch.cdist(a, a)
    return d - d.mean(dim=0, keepdim=True) - d.mean(dim=1, keepdim=True) + d.mean()


def _u_centered_distances(a: torch.Tensor) -> torch.Tensor:
    """U-centred distance matrix (Szekely & Rizzo 2014): zero diagonal, unbiased inner products."""
    n = a.shape[0]
    d = torch.cdist(a, a)
    u = (d - d.sum(0, keepdim=True) / (n - 2) - d.sum(1, keepdim=True) / (n - 2)
         + d.sum() / ((n - 1) * (n - 2)))
    return u.fill_diagonal_(0.0)


def distance_correlation(x: np.ndarray | torch.Tensor, z: np.ndarray | torch.Tensor,
                         max_samples: int = 1000, seed: int = 0, bias_corrected: bool = False) -> float:
    """Sample distance correlation dCor(X, Z) in [0, 1] between rows of x and z (any trailing shape,
    flattened). O(n^2) memory, so at most `max_samples` rows are used (a seeded random subset).

    Default: the V-statistic of Szekely, Rizzo & Bakirov (2007), the one NoPeek uses. It is biased
    upward for small n and high dimension (independent Gaussians, n = 500: ~0.07 at 1-D, ~0.6 at
    784-D vs 32-D), so compare values at equal n and dimension. `bias_corrected=True` returns the
    bias-corrected squared dCor of Szekely & Rizzo (2013/2014, U-centred), ~0 under independence
    (it can be slightly negative) and 1 for a similarity map.
    """
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).reshape(len(x), -1)
    zt = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z).reshape(len(z), -1)
    if xt.shape[0] != zt.shape[0]:
        raise ValueError(f"distance_correlation: x has {xt.shape[0]} rows, z has {zt.shape[0]}; must be equal")
    n = xt.shape[0]
    if n < 2:
        raise ValueError(f"distance_correlation: got {n} rows, need >= 2")
    if max_samples < 2:
        raise ValueError(f"max_samples: got {max_samples}, must be >= 2")
    if n > max_samples:
        idx = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False)))
        xt, zt = xt[idx], zt[idx]
    if bias_corrected:
        if xt.shape[0] < 4:
            raise ValueError(f"distance_correlation: bias_corrected needs >= 4 rows, got {xt.shape[0]}")
        a, b = _u_centered_distances(xt.double()), _u_centered_distances(zt.double())
        den = torch.sqrt((a * a).sum() * (b * b).sum())
        return float((a * b).sum() / den) if den > 0 else 0.0
    a = _centered_distances(xt.double())
    b = _centered_distances(zt.double())
    dcov2 = (a * b).mean()
    dvar = (a * a).mean() * (b * b).mean()
    if dvar <= 0:                       # a constant x or z: no dependence is measurable
        return 0.0
    return float(torch.sqrt(torch.clamp(dcov2, min=0.0) / torch.sqrt(dvar)))


# ----------------------------------------------------------------------------- reconstruction metrics
def reconstruction_metrics(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    """Per-image MSE, PSNR (dB, pixels in [0, 1]) and SSIM, averaged over images. x: (N, C, H, W)."""
    from skimage.metrics import structural_similarity

    x = np.asarray(x, dtype=np.float64)
    x_hat = np.clip(np.asarray(x_hat, dtype=np.float64).reshape(x.shape), 0.0, 1.0)
    if x.ndim != 4:
        raise ValueError(f"x: got shape {x.shape}, must be (N, C, H, W)")
    if len(x) == 0:
        return {"mse": float("nan"), "psnr": float("nan"), "ssim": float("nan"), "n": 0}
    mse = ((x - x_hat) ** 2).reshape(len(x), -1).mean(axis=1)
    psnr = 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))
    win = min(7, *x.shape[2:])          # skimage's 7x7 window, odd and no larger than the image
    win -= 1 - win % 2
    ssim = [structural_similarity(a, b, data_range=1.0, channel_axis=0, win_size=win)
            for a, b in zip(x, x_hat)] if win >= 3 else [float("nan")]
    return {"mse": float(mse.mean()), "psnr": float(psnr.mean()), "ssim": float(np.mean(ssim)), "n": int(len(x))}


# ----------------------------------------------------------------------------- the attacker
def standardize(z: np.ndarray) -> np.ndarray:
    """Per-feature standardization of one client's stored latents. The server holds all of a
    client's latents, so it can undo each client's scale and offset without any leaked pair."""
    z = np.asarray(z, dtype=np.float32)
    return (z - z.mean(0, keepdims=True)) / np.maximum(z.std(0, keepdims=True), 1e-8)


def attacker_decoder(latent_dim: int, image_shape: tuple[int, ...], hidden: int) -> nn.Module:
    """A digital MLP decoder z -> x (sigmoid pixels): the attacker's own model, not the client's."""
    pixels = int(np.prod(image_shape))
    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, pixels), nn.Sigmoid(), nn.Unflatten(1, tuple(image_shape)))


def train_attacker(z: np.ndarray, x: np.ndarray, cfg: PrivacyConfig, progress: bool = True) -> nn.Module:
    """Fit the attacker's decoder on leaked pairs (z standardized, x (N, C, H, W) in [0, 1])."""
    from tqdm.auto import tqdm

    z_t = torch.as_tensor(np.asarray(z, dtype=np.float32))
    x_t = torch.as_tensor(np.array(x, dtype=np.float32))
    if len(z_t) != len(x_t) or len(z_t) == 0:
        raise ValueError(f"leaked pairs: got {len(z_t)} latents and {len(x_t)} images; need as many, >= 1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = attacker_decoder(z_t.shape[1], tuple(x_t.shape[1:]), cfg.hidden)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        bar = tqdm(range(cfg.epochs), desc="privacy: attacker decoder", disable=not progress, leave=False)
        for _ in bar:
            perm = torch.randperm(len(z_t), generator=gen)
            total = 0.0
            for s in range(0, len(perm), cfg.batch_size):
                b = perm[s:s + cfg.batch_size]
                loss = torch.mean((model(z_t[b]) - x_t[b]) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            bar.set_postfix(mse=f"{total / len(perm):.4f}")
    model.eval()
    return model


@torch.no_grad()
def reconstruct(model: nn.Module, z: np.ndarray, batch_size: int = 512) -> np.ndarray:
    z_t = torch.as_tensor(np.asarray(z, dtype=np.float32))
    was = model.training
    model.eval()
    out = [model(z_t[s:s + batch_size]) for s in range(0, len(z_t), batch_size)]
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0,), np.float32)


@dataclass
class AttackResult:
    """What `attack` measured: metrics per victim, plus the reconstructions of the victims."""

    victims: list[dict[str, Any]]
    held_out: dict[str, float] | None     # the leaked client's own non-leaked images
    recon: dict[str, np.ndarray]           # victim name -> attacker reconstructions


def attack(leaked_x: np.ndarray, leaked_z: np.ndarray, victims: dict[str, tuple[np.ndarray, np.ndarray]],
           cfg: PrivacyConfig, held_out: tuple[np.ndarray, np.ndarray] | None = None,
           own: dict[str, np.ndarray] | None = None, progress: bool = True) -> AttackResult:
    """Train on the leaked pairs, then score each victim {name: (x, z_standardized)}: attacker vs the
    mean-image guess (and vs the victim's own decoder output `own[name]`, when given). Latents must
    already be standardized per client (`standardize`)."""
    model = train_attacker(leaked_z, leaked_x, cfg, progress)
    mean_img = np.asarray(leaked_x, dtype=np.float32).mean(axis=0, keepdims=True)
    rows, recon = [], {}
    for name, (x, z) in victims.items():
        x_hat = reconstruct(model, z).reshape(np.shape(x))
        recon[name] = x_hat
        row: dict[str, Any] = {"client_id": name, "n": int(len(x)),
                               "attack": reconstruction_metrics(x, x_hat),
                               "mean_image": reconstruction_metrics(x, np.broadcast_to(mean_img, np.shape(x)))}
        if own is not None and name in own:
            row["own_decoder"] = reconstruction_metrics(x, own[name])
        rows.append(row)
    ho = None
    if held_out is not None and len(held_out[0]):
        ho = reconstruction_metrics(held_out[0], reconstruct(model, held_out[1]).reshape(np.shape(held_out[0])))
    return AttackResult(rows, ho, recon)


def _mean_metrics(rows: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    """Sample-weighted mean of a metric dict across victims."""
    have = [r for r in rows if key in r and r[key]["n"]]
    if not have:
        return None
    n = sum(r[key]["n"] for r in have)
    return {m: float(sum(r[key][m] * r[key]["n"] for r in have) / n) for m in ("mse", "psnr", "ssim")} | {"n": n}


# ----------------------------------------------------------------------------- the fleet phase
def _client_split(fleet: FleetConfig, partition_id: int):
    from edge_client.config import EdgeConfig
    from edge_client.runner import client_data

    cfg = EdgeConfig.from_dict(fleet.edge_dict(partition_id))
    return cfg, client_data(cfg, partition_id, fleet.num_clients, fleet.alpha_or_none)


@torch.no_grad()
def _own_decoder(cfg, state_dir: Path, image_shape: tuple[int, int, int], partition_id: int,
                 z: np.ndarray) -> np.ndarray | None:
    """The victim's own decoder (on its own tiles, eval mode) applied to its stored latents."""
    from edge_client import runner as er

    path = state_dir / er.DECODER_FILE
    if not path.exists():
        return None
    model = er.load_encoder(cfg, state_dir, image_shape, partition_id)
    model.decoder.load_state_dict(torch.load(path, weights_only=True))
    return reconstruct(model.decoder, z)


def run_privacy(fleet: FleetConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """The privacy phase of a fleet run: dCor per client and the attack from `privacy.leaked_client`.
    Needs the run's store (`out_dir/server`) and client state dirs (`out_dir/clients`)."""
    from fleet.client_tasks import client_name
    from server.store import LatentStore

    pc = fleet.privacy
    store_dir = out_dir / "server"
    if not (store_dir / "latents.sqlite3").exists():
        return {"skipped": f"no local store at {store_dir} (an external latent service holds the latents)"}
    if fleet.num_clients < 2:
        return {"skipped": "fleet.num_clients: got 1, the attack needs a leaked client and >= 1 victim"}
    store = LatentStore(store_dir, readonly=True)
    try:
        stored = {p: store.latents(client_name(p))[0] for p in range(fleet.num_clients)}
    finally:
        store.close()
    xs, dcor, own_recon = {}, [], {}
    for p in range(fleet.num_clients):
        cfg, data = _client_split(fleet, p)
        x = np.asarray(data.x_train, dtype=np.float32)
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
    out = {
        "leaked_client": client_name(L), "leaked_pairs": int(n_leak), "leaked_fraction": pc.leaked_fraction,
        "attacker": f"digital MLP {stored[L].shape[1]}-{pc.hidden}-{pc.hidden}-{xs[L][0].size}, "
                    f"Adam lr {pc.lr}, {pc.epochs} epochs, batch {pc.batch_size}, seed {pc.seed}",
        "latent_source": "server store (dequantized wire latents), standardized per client",
        "dcor": float(np.mean([d["dcor"] for d in dcor])),
        "dcor_clients": dcor,
        "attack": _mean_metrics(res.victims, "attack"),
        "mean_image": _mean_metrics(res.victims, "mean_image"),
        "own_decoder": _mean_metrics(res.victims, "own_decoder"),
        "leaked_client_held_out": res.held_out,
        "victims": res.victims,
    }
    try:
        plot_reconstructions(xs, res.recon, own_recon, fleet, out_dir / "privacy_reconstructions.png", pc.examples)
        out["figure"] = "privacy_reconstructions.png"
    except Exception as exc:  # noqa: BLE001 - a plot must never lose the numbers
        out["figure_error"] = f"{type(exc).__name__}: {exc}"
    return out


def plot_reconstructions(xs: dict[int, np.ndarray], recon: dict[str, np.ndarray], own: dict[str, np.ndarray],
                         fleet: FleetConfig, path: Path, examples: int) -> None:
    """Rows: victims' originals, the attacker's reconstructions, the victims' own decoders."""
    if examples == 0 or not recon:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fleet.client_tasks import client_name

    names = list(recon)
    rng = np.random.default_rng(fleet.privacy.seed)
    picks = [(names[i % len(names)], None) for i in range(examples)]
    picks = [(n, int(rng.integers(len(recon[n])))) for n, _ in picks]
    by_name = {client_name(p): p for p in xs}
    rows = [("original", lambda n, i: xs[by_name[n]][i]), ("attacker", lambda n, i: recon[n][i])]
    if all(n in own for n, _ in picks):
        rows.append(("own decoder", lambda n, i: own[n][i]))
    fig, axes = plt.subplots(len(rows), len(picks), figsize=(1.2 * len(picks), 1.3 * len(rows)), squeeze=False)
    for r, (label, get) in enumerate(rows):
        for c, (n, i) in enumerate(picks):
            img = np.asarray(get(n, i))
            img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
            ax = axes[r][c]
            ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(n.replace("client-", "c"), fontsize=7)
    fig.suptitle(f"model inversion from {client_name(fleet.privacy.leaked_client)}'s leaked pairs "
                 f"({fleet.privacy.leaked_fraction:g} of its images)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_privacy(priv: dict[str, Any]) -> str:
    """The terminal table: attack vs baselines (victims' mean), then one row per victim."""
    from fleet.report import _grid

    if "skipped" in priv:
        return f"privacy: skipped ({priv['skipped']})"

    def cells(m: dict[str, float] | None) -> list[str]:
        if not m:
            return ["-", "-", "-"]
        ok = all(math.isfinite(m[k]) for k in ("mse", "psnr", "ssim"))
        return [f"{m['mse']:.4f}", f"{m['psnr']:.1f} dB", f"{m['ssim']:.3f}"] if ok else ["-", "-", "-"]

    rows = [["privacy (victims' training images)", "MSE", "PSNR", "SSIM"],
            ["mean-image guess (no latents)", *cells(priv["mean_image"])],
            [f"attack from {priv['leaked_client']}'s {priv['leaked_pairs']} leaked pairs", *cells(priv["attack"])],
            ["victims' own decoders", *cells(priv["own_decoder"])]]
    if priv.get("leaked_client_held_out"):
        rows.append([f"attack on {priv['leaked_client']}'s other images", *cells(priv["leaked_client_held_out"])])
    per = [["victim", "dCor(X,Z)", "attack MSE", "PSNR", "SSIM", "mean-img PSNR", "own-dec PSNR"]]
    for v in priv["victims"]:
        a = cells(v["attack"])
        per.append([v["client_id"], f"{v['dcor']:.3f}", *a, cells(v["mean_image"])[1],
                    cells(v.get("own_decoder"))[1]])
    return "\n".join([f"privacy: dCor(X, Z) {priv['dcor']:.3f} (mean over clients); attacker {priv['attacker']}",
                      _grid(rows), _grid(per)])
