"""Fleet run outputs: the resolved config, report.json, a terminal table and PNG plots."""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import tomli_w

from fleet.config import FleetConfig
from fleet.energy import format_energy, plot_energy
from fleet.inference import format_inference
from fleet.privacy import format_privacy
from fleet.tables import grid, json_safe


def write_config(fleet: FleetConfig, out_dir: Path) -> Path:
    """The resolved config, so the run is reproducible from its folder alone."""
    path = out_dir / "config.toml"
    path.write_text(tomli_w.dumps(fleet.to_dict()))
    return path


def write_report(result: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "report.json").write_text(json.dumps(json_safe(result), indent=2))
    table = format_table(result)
    (out_dir / "table.txt").write_text(table + "\n")
    try:
        plot_report(result, out_dir)
    except Exception as exc:  # noqa: BLE001 - a plot must never lose a finished run's numbers
        (out_dir / "plot_error.txt").write_text(f"{type(exc).__name__}: {exc}\n")


def _fmt_bytes(n: float | None) -> str:
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def format_table(result: dict[str, Any]) -> str:
    """A readable summary: one row per pipeline, then per-client rows of the latent pipeline."""
    head = (f"fleet {result['name']}: {result['num_clients']} clients on {result['dataset']}, "
            f"{result['partition']}, alignment={result['alignment']}, "
            f"edge={_side(result['edge_side'])}, server={_side(result['server_side'])}")
    rows = [["pipeline", "accuracy", "client min..max", "bytes up", "bytes down", "pixels/d", "raw/wire",
             "recon MSE"]]
    lat = result.get("latent")
    if lat:
        sp = lat["accuracy_spread"]
        rows.append([f"latent d={lat['latent_dim']} {lat['bits']}-bit", _pct(lat["accuracy"]),
                     f"{_pct(sp['min'])}..{_pct(sp['max'])}", _fmt_bytes(lat["bytes_up"]),
                     _fmt_bytes(lat["bytes_down"]), f"{lat['compression_pixels_per_latent']:.1f}",
                     f"{lat['compression_raw_over_wire']:.1f}x",
                     f"{lat['recon_mse']:.4f}"])
    fa = result.get("fedavg")
    if fa:
        sp = fa["accuracy_spread"]
        rows.append([f"FedAvg {fa['rounds']} rounds", _pct(fa["accuracy"]), f"{_pct(sp['min'])}..{_pct(sp['max'])}",
                     _fmt_bytes(fa["bytes_up"]), _fmt_bytes(fa["bytes_down"]), "-", "-", "-"])
    parts = [head, grid(rows)]
    if lat:
        crow = [["client", "rows", "stored", "test", "accuracy", "wire bytes", "B/sample", "recon MSE"]]
        for c in lat["clients"]:
            crow.append([c["client_id"], str(c.get("rows", "-")), str(c["stored_rows"]), str(c["n_test"]),
                         _pct(c["accuracy"]), str(c.get("wire_bytes", "-")),
                         f"{c.get('bytes_per_sample', float('nan')):.1f}",
                         f"{c.get('recon_mse', float('nan')):.4f}"])
        parts.append(grid(crow))
        clf = lat["classifier"]
        parts.append(f"{classifier_summary(clf)}; store {'matches' if lat['store_matches'] else 'DOES NOT match'} the rows sent "
                     f"({lat['rows_stored']} stored / {lat['rows_sent']} sent)")
        if lat.get("defense"):
            parts.append(format_defense(lat["defense"]))
    if result.get("privacy"):
        parts.append(format_privacy(result["privacy"]))
    if result.get("deploy"):
        parts.append(format_inference(result["deploy"]))
    if result.get("energy"):
        parts.append(format_energy(result["energy"]))
    t = result.get("timings_s", {})
    parts.append("wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()))
    return "\n".join(parts)


def format_defense(d: dict[str, Any]) -> str:
    """The edge defense in one line: its settings and epsilon per released row (docs/privacy.md)."""
    eps = d.get("epsilon")
    dp = (f"epsilon {eps:.3g} per released row (delta {d['delta']:g}, {d['neighbouring']})" if eps is not None
          else "no epsilon (no noise)")
    proto = f", prototype_weight {d['prototype_weight']:g}" if d.get("prototype_weight") else ""
    return (f"edge defense: noise_multiplier {d['noise_multiplier']:g}, clip_norm {d['clip_norm']:g} "
            f"({100 * d['clipped_share']:.0f}% of rows clipped, median norm {d['row_norm_median']:.3g}), "
            f"nopeek_weight {d['nopeek_weight']:g}, label_weight {d['label_weight']:g}"
            f"{proto}; {dp}")


def classifier_summary(clf: dict[str, Any]) -> str:
    """The server classifier in one line: its accuracy is on the held-out rows, not the trained ones."""
    return (f"classifier v{clf['version']}: server-side held-out accuracy {_pct(clf['held_out_accuracy'])} "
            f"on {clf['held_out_rows']} held-out rows, trained on {clf['trained_rows']} rows "
            f"({clf['description']})")


def _side(desc: dict[str, Any]) -> str:
    if desc.get("mode") == "digital":
        return "digital"
    side = f"{desc.get('algorithm', '?')} on {desc.get('device', '?')}"
    return f"{side} (preset {desc['preset']})" if desc.get("preset") else side


def run_title(result: dict[str, Any]) -> str:
    """What ran, for plot titles: sides (analog device/algorithm or digital), d, bits, partition, seed."""
    lat = result.get("latent") or {}
    parts = [f"{result['name']}: {result['num_clients']} clients on {result['dataset']}, {result['partition']}",
             f"edge {_side(result['edge_side'])}, server {_side(result['server_side'])}"]
    if lat:
        parts.append(f"d={lat['latent_dim']} {lat['bits']}-bit, alignment {result['alignment']}")
    if "seed" in result:
        parts.append(f"1 seed ({result['seed']})")
    return "; ".join(parts)


def per_client_figure(result: dict[str, Any]):
    """Per-client accuracy bars; each client's tick says how many samples it trained and was tested
    on (Dirichlet partitions differ a lot), the value is printed on each bar, and the legend sits
    below the axes, where it hides no bar."""
    import matplotlib  # imported on use (slow to import), with the file-only backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, fa = result.get("latent"), result.get("fedavg")
    n = max(len((lat or fa)["clients"]), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * n + 2), 4.6), layout="constrained")
    width = 0.4 if lat and fa else 0.7
    series = [(s, f"{name} ({100 * s['accuracy']:.1f}% sample-weighted)", off)
              for s, name, off in ((lat, "latent pipeline", -width / 2 if fa else 0.0),
                                   (fa, "FedAvg", width / 2 if lat else 0.0)) if s]
    for s, label, off in series:
        xs = [c["partition_id"] + off for c in s["clients"]]
        ys = [100 * c["accuracy"] for c in s["clients"]]
        bars = ax.bar(xs, ys, width, label=label)
        ax.bar_label(bars, labels=[f"{y:.0f}" for y in ys], fontsize=7, padding=1)
    clients = (lat or fa)["clients"]
    ax.set_xticks([c["partition_id"] for c in clients],
                  [f"{c['partition_id']}\n{c.get('n_train', c.get('rows', '?'))} train\n{c['n_test']} test"
                   for c in clients], fontsize=7)
    ax.set_xlabel("client (partition id) and its samples")
    ax.set_ylabel("accuracy on its own test split (%)")
    ax.set_ylim(0, 109)                             # room for the value over a 100% bar
    ax.set_title("Per-client accuracy\n" + textwrap.fill(run_title(result), int(fig.get_figwidth() * 13)),
                 fontsize=9)
    fig.legend(loc="outside lower center", fontsize=8, ncol=2)
    return fig


def plot_report(result: dict[str, Any], out_dir: Path) -> None:
    """accuracy_per_client.png, energy_per_phase.png (with an energy section) and, with a FedAvg run,
    accuracy_vs_bytes.png."""
    import matplotlib  # imported on use (slow to import), with the file-only backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, fa = result.get("latent"), result.get("fedavg")
    if result.get("energy"):
        plot_energy(result["energy"], out_dir, run_title(result))
    if lat or fa:
        fig = per_client_figure(result)
        fig.savefig(out_dir / "accuracy_per_client.png", dpi=120)
        plt.close(fig)
    if fa and fa["curve"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([p["bytes_total"] for p in fa["curve"]], [100 * p["accuracy"] for p in fa["curve"]],
                "o-", label="FedAvg (after each round)")
        if lat:
            ax.plot([lat["bytes_up"] + (lat["bytes_down"] or 0)], [100 * lat["accuracy"]], "*", ms=14,
                    label=f"latent pipeline (d={lat['latent_dim']}, {lat['bits']}-bit)")
        ax.set_xscale("log")
        ax.set_xlabel("total bytes communicated, both directions")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Accuracy vs communication\n" + textwrap.fill(run_title(result), 80), fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "accuracy_vs_bytes.png", dpi=120)
        plt.close(fig)
