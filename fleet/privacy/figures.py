"""The privacy phase's outputs for people: the terminal table and the reconstructions figure."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fleet.config import FleetConfig
from fleet.names import client_name
from fleet.tables import grid


def plot_reconstructions(xs: dict[int, np.ndarray], recon: dict[str, np.ndarray], own: dict[str, np.ndarray],
                         fleet: FleetConfig, path: Path, examples: int,
                         server: tuple[str, dict[str, np.ndarray]] | None = None) -> None:
    """Rows: victims' originals, the strongest server-side attack (no leak), the leaked-pairs
    attacker's reconstructions, the victims' own decoders."""
    if examples == 0 or not recon:
        return
    import matplotlib  # imported on use (slow to import), with the file-only backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(recon)
    rng = np.random.default_rng(fleet.privacy.seed)
    picks = [(names[i % len(names)], None) for i in range(examples)]
    picks = [(n, int(rng.integers(len(recon[n])))) for n, _ in picks]
    by_name = {client_name(p): p for p in xs}
    rows = [("original", lambda n, i: xs[by_name[n]][i])]
    if server is not None:
        rows.append((f"server:\n{server[0]}", lambda n, i: server[1][n][i]))
    rows.append(("leaked pairs", lambda n, i: recon[n][i]))
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
    fig.suptitle(f"{fleet.name}, seed {fleet.seed}: model inversion by the server alone"
                 f"{f' ({server[0]})' if server else ''} and from {client_name(fleet.privacy.leaked_client)}'s "
                 f"leaked pairs ({fleet.privacy.leaked_fraction:g} of its images)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def privacy_line(priv: dict[str, Any]) -> str:
    """The fleet table's one privacy line: the strongest server-side attack against the free guess."""
    if "skipped" in priv:
        return f"privacy: skipped ({priv['skipped']})"
    sa = priv.get("server_attack") or {}
    if "attack" not in sa:
        return "privacy: no server-side attack could run (" + "; ".join(
            f"{k}: {v}" for k, v in sa.get("skipped", {}).items()) + ")"
    own = next((r for r in sa["rows"] if r["attack"] == "own_decoder"), None)
    tail = f"; victims' own decoders SSIM {own['ssim']:.3f}" if own else ""
    return (f"privacy: strongest server attack (no leak) {sa['attack']}: PSNR {sa['psnr']:.1f} dB, "
            f"{sa['gain_db']:+.1f} dB over the class-mean guess, SSIM {sa['ssim']:.3f}, re-identified "
            f"{100 * sa['reid']:.0f}% (chance {100 * sa['reid_chance']:.0f}%){tail}")


def format_suite(sa: dict[str, Any]) -> str:
    """The attack suite's table: every attack and guess on the same victims' images."""
    rows = [["attack (victims' training images, pooled)", "labels", "PSNR", "SSIM", "re-id", "seconds"]]
    for r in sa["rows"]:
        star = " *" if r["attack"] == sa.get("attack") else ""
        rows.append([f"{r['attack']}{star}", "yes" if r["labels"] else "no", f"{r['psnr']:.2f} dB", f"{r['ssim']:.3f}",
                     f"{100 * r['reid']:.1f}%", f"{r['seconds']:.0f}" if "seconds" in r else "-"])
    notes = [f"* strongest server-side attack (by {sa['strongest_by']}); {sa['scored_images']} images of "
             f"{len(sa['victims'])} victims; re-id chance {100 * sa['rows'][0]['reid_chance']:.1f}%"]
    notes += [f"not run: {k} ({v})" for k, v in sa.get("skipped", {}).items()]
    return "\n".join([grid(rows), *notes])


def format_privacy(priv: dict[str, Any]) -> str:
    """The terminal table: the privacy line, the suite, the leaked-pairs attack vs baselines (victims'
    mean), then one row per victim."""
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
    if priv.get("attack_anchor_aligned"):
        rows.insert(3, ["the same attack through the anchor maps", *cells(priv["attack_anchor_aligned"])])
    if priv.get("leaked_client_held_out"):
        rows.append([f"attack on {priv['leaked_client']}'s other images", *cells(priv["leaked_client_held_out"])])
    per = [["victim", "dCor(X,Z)", "attack MSE", "PSNR", "SSIM", "mean-img PSNR", "own-dec PSNR"]]
    for v in priv["victims"]:
        a = cells(v["attack"])
        per.append([v["client_id"], f"{v['dcor']:.3f}", *a, cells(v["mean_image"])[1],
                    cells(v.get("own_decoder"))[1]])
    head = [privacy_line(priv), format_suite(priv["server_attack"])] if priv.get("server_attack", {}).get("rows") else []
    return "\n".join([*head, f"dCor(X, Z) {priv['dcor']:.3f} (mean over clients); leaked-pairs attacker "
                              f"{priv['attacker']}", grid(rows), grid(per)])
