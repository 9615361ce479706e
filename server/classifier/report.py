"""How a classifier is described in one line and a training run in a terminal table."""
from __future__ import annotations

from typing import Any

from server.classifier.model import adapter_parameters
from server.config import ClassifierConfig


def describe(cfg: ClassifierConfig, latent_dim: int, n_classes: int) -> str:
    """Architecture, conditioning, tiles and learning rate of a classifier, in one line."""
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
    table = cfg.analog.get("algorithm") or {}
    alg = table.get("preset") or table.get("type", "AnalogSGD")      # a preset by its name
    return f"analog MLP {arch}{cond}, {dev} / {alg}, lr {cfg.lr}"


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
