"""The inference-chip phase of a fleet run (docs/fleet.md): what the fleet loses over time on inference chips.

After training, every edge encoder and the server classifier are programmed once onto a PCM-like
inference chip (`analog.inference.PCMLike`; one chip per device: client p gets seed
inference.seed * 1000003 + p + 1, the server inference.seed * 1000003) and the fleet is evaluated at
each of `inference.times` (the `[inference]` table) after programming, with and without global drift
compensation. Encoders drift too, so the latents a client computes a year later differ from those the classifier learned.
Each client encodes its own held-out split on its deployed encoder, quantizes like its uploads
(its saved scale and bit width), and the deployed classifier classifies them. Like the privacy
phase this is a measurement harness on the run's saved state (client encoders, classifier
checkpoint); the trained models are not changed.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

import analog
from analog import inference
from edge_client import runner as er
from edge_client.codec import quantize_latents
from edge_client.state import ClientState
from fleet.config import FleetConfig
from fleet.names import client_name
from server.classifier.loading import load_classifier


def device_seed(seed: int, device: int) -> int:
    """The inference chip of client ``device`` (>= 0); the server's chip is device -1."""
    return seed * 1_000_003 + device + 1


def _client(fleet: FleetConfig, out_dir: Path, p: int) -> dict[str, Any]:
    cfg = fleet.edge_config
    data = er.client_data(cfg, p, fleet.num_clients, fleet.alpha_or_none)
    state_dir = out_dir / "clients" / client_name(p)
    model = er.load_encoder(cfg, state_dir, data.dataset.image_shape, p)
    return {"client_id": client_name(p), "encoder": model.encoder, "state": ClientState.load(state_dir),
            "x": torch.from_numpy(np.ascontiguousarray(data.x_test, dtype=np.float32)), "y": data.y_test}


@torch.no_grad()
def _latents(encoder: torch.nn.Module, x: torch.Tensor, state: ClientState, batch: int = 256) -> np.ndarray:
    """The deployed encoder's latents, quantized like the client's uploads and dequantized (what the
    server sees)."""
    z = torch.cat([encoder(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()
    scale = state.scale or None
    if state.bits in (8, 4) and scale is not None:
        qmax = {8: 127, 4: 7}[state.bits]
        z = np.clip(z, -np.asarray(scale) * qmax, np.asarray(scale) * qmax)
    return quantize_latents(z, state.bits or 32, scale=scale, seed=state.seed + 3).dequantize()


def _accuracy(clients: list[dict[str, Any]], classifier: Any, encoders: list[torch.nn.Module]) -> dict[str, Any]:
    correct, n, per = 0, 0, {}
    for c, enc in zip(clients, encoders):
        if len(c["y"]) == 0:
            continue
        pred = classifier.predict(_latents(enc, c["x"], c["state"]), [c["client_id"]] * len(c["y"]))
        k = int((pred == c["y"]).sum())
        correct, n = correct + k, n + len(c["y"])
        per[c["client_id"]] = k / len(c["y"])
    return {"accuracy": correct / n if n else float("nan"), "n_test": n, "per_client": per}


def _deployed_classifier(classifier: Any, t: float, comp: bool, seed: int) -> Any:
    """A copy of the loaded classifier whose MLP body computes as its inference chip at time t."""
    out = copy.copy(classifier)
    out.model = copy.deepcopy(classifier.model)
    out.model.body = analog.deploy(classifier.model.body, inference.PCMLike(), t, comp, device_seed(seed, -1))
    return out


def run_inference(fleet: FleetConfig, out_dir: Path) -> dict[str, Any]:
    """Accuracy of the trained fleet on inference chips at each of inference.times, +- compensation."""
    store_dir = out_dir / "server"
    if not (store_dir / "latents.sqlite3").exists():
        return {"skipped": f"no local store at {store_dir} (an external latent service holds the classifier)"}
    torch.manual_seed(0)
    classifier = load_classifier(store_dir)
    clients = [_client(fleet, out_dir, p) for p in range(fleet.num_clients)]
    seed = fleet.inference.seed
    trained = _accuracy(clients, classifier, [c["encoder"] for c in clients])
    chip = inference.PCMLike()
    programmed = [inference.program(c["encoder"], chip, device_seed(seed, p)) for p, c in enumerate(clients)]
    rows = []
    for label, t in zip(fleet.inference.times, fleet.inference.seconds):
        for comp in (False, True):
            encoders = [prog.at(t, comp) for prog in programmed]
            res = _accuracy(clients, _deployed_classifier(classifier, t, comp, seed), encoders)
            rows.append({"time": label, "t_seconds": t, "compensation": comp, **res})
    return {"chip": chip.to_dict(), "seed": seed, "trained_accuracy": trained["accuracy"],
            "n_test": trained["n_test"], "rows": rows}


def format_inference(result: dict[str, Any]) -> str:
    """The terminal table: fleet accuracy at each time after programming, with and without compensation."""
    if "skipped" in result:
        return f"deployment: skipped ({result['skipped']})"
    times = list(dict.fromkeys(r["time"] for r in result["rows"]))
    acc = {(r["time"], r["compensation"]): r["accuracy"] for r in result["rows"]}
    head = f"deployment on PCM-like inference chips (seed {result['seed']}), fleet accuracy on {result['n_test']} " \
           f"held-out samples; as trained {100 * result['trained_accuracy']:.1f}%"
    lines = [head, "  " + f"{'drift compensation':<20}" + "".join(f"{t:>9}" for t in times)]
    for comp in (False, True):
        lines.append("  " + f"{'on' if comp else 'off':<20}" + "".join(f"{100 * acc[(t, comp)]:>8.1f}%" for t in times))
    return "\n".join(lines)


def plot_inference(result: dict[str, Any], out_dir: Path, title: str) -> Path | None:
    """deploy_accuracy_vs_time.png: fleet accuracy vs time after programming, +- compensation."""
    if "skipped" in result or not result["rows"]:
        return None
    import matplotlib  # imported on use (slow to import), with the file-only backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for comp, style in ((False, "--o"), (True, "-s")):
        rows = [r for r in result["rows"] if r["compensation"] == comp]
        ax.plot([np.log10(max(r["t_seconds"], 1.0)) for r in rows], [r["accuracy"] for r in rows], style,
                label=f"drift compensation {'on' if comp else 'off'}", mfc="none")
    ax.axhline(result["trained_accuracy"], color="gray", lw=1, ls=":", label="as trained (no inference chip)")
    ticks = [r for r in result["rows"] if r["compensation"]]
    ax.set_xticks([np.log10(max(r["t_seconds"], 1.0)) for r in ticks], [r["time"] for r in ticks])
    ax.set_xlabel("time after programming")
    ax.set_ylabel("fleet test accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "deploy_accuracy_vs_time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
