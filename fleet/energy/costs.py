"""What each edge device spends: energy and latency per client and phase, from the events its tiles
fired (analog.energy) and the bytes its radio moved (fleet/energy/radio.py), against the same work on a
digital edge device (an MCU, an edge NPU) and against FedAvg's per-round cost. docs/energy.md.

Phases: ``program`` (the initial or pretrained weights written onto the tiles), ``train`` (local
training, including the held-out MSE evaluations the trainer runs), ``encode`` (encoding and
quantizing the latents, and the public anchors), ``upload`` (latents), ``download`` (pretrained
weights). Every figure is a band (min, typical, max).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from analog.energy.model import DIGITAL_DEVICES, ZERO, AnalogCosts, Band, band_sum, digital_cost, phase_costs
from fleet.config import FleetConfig
from fleet.energy.radio import Radio, radio
from fleet.tables import grid

COMPUTE_PHASES = ("program", "train", "encode")
RADIO_PHASES = ("upload", "download")
DEVICES = ("analog", *DIGITAL_DEVICES)


def _band(d: dict[str, float]) -> Band:
    return Band(d["min"], d["typical"], d["max"])


def device_phases(counts: dict, up_bits: float, down_bits: float, link: Radio, mode: str,
                  costs: AnalogCosts = AnalogCosts()) -> dict[str, dict[str, Any]]:
    """{device: {compute_j, radio_j, total_j, latency_s, phases: {phase: {energy_j, latency_s}}}}."""
    pc = phase_costs(counts, costs, mode)
    up = link.cost(up_bits, 1)
    down = link.cost(down_bits, 1) if down_bits else {"energy_j": ZERO, "latency_s": ZERO}
    out: dict[str, dict[str, Any]] = {}
    for dev in DEVICES:
        phases = {}
        for phase in COMPUTE_PHASES:
            cost = pc.get(phase, {}).get(dev)
            phases[phase] = ({"energy_j": cost["total_j"], "latency_s": cost["total_s"]} if cost
                             else {"energy_j": ZERO, "latency_s": ZERO})
            if cost and "energy_j" in cost:      # the analog split: mvm, update, transfer, program, digital
                phases[phase].update(parts_j=cost["energy_j"], parts_s=cost["latency_s"])
        phases["upload"], phases["download"] = up, down
        compute = band_sum([phases[p]["energy_j"] for p in COMPUTE_PHASES])
        radio_j = band_sum([phases[p]["energy_j"] for p in RADIO_PHASES])
        out[dev] = {"compute_j": compute, "radio_j": radio_j, "total_j": compute + radio_j,
                    "latency_s": band_sum([p["latency_s"] for p in phases.values()]), "phases": phases}
    return out


def fedavg_round(fleet: FleetConfig, samples: int, pixels: int, classes: int, link: Radio,
                 costs: AnalogCosts = AnalogCosts()) -> dict[str, Any]:
    """One FedAvg round of one client: local epochs of its MLP classifier over ``samples`` images
    (3 MACs per weight per sample: forward, input gradient, weight gradient) and the model down and
    up as fp32 over one connection."""
    sizes = [pixels, *fleet.classifier_config.hidden, classes]
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    params = weights + sum(sizes[1:])
    macs_fwd = float(weights) * samples * fleet.fedavg.local_epochs
    counts = {"mac_fwd": macs_fwd, "mac_bwd": macs_fwd, "mac_update": macs_fwd, "mvm_fwd": samples}
    bits = 2 * params * 32.0
    air = link.cost(bits, 1)
    out: dict[str, Any] = {"params": params, "bits_per_round": bits, "samples": samples,
                           "local_epochs": fleet.fedavg.local_epochs}
    per_dev = {"analog": {"compute_j": costs.mac_lumped * (3 * macs_fwd)},
               **{name: {"compute_j": digital_cost(counts, dev)["total_j"]} for name, dev in DIGITAL_DEVICES.items()}}
    for d in per_dev.values():
        d["radio_j"] = air["energy_j"]
        d["total_j"] = d["compute_j"] + air["energy_j"]
    out["devices"] = per_dev
    out["radio_latency_s"] = air["latency_s"]
    return out


def crossovers(dev: dict[str, Any], up_bits: float, link: Radio, fedavg: dict[str, Any] | None,
               name: str) -> dict[str, Any]:
    """Where radio equals compute (the upload size at which it would, at the typical figures) and
    how many FedAvg rounds cost as much as this client's whole latent pipeline."""
    compute, radio_j = dev["compute_j"].typical, dev["radio_j"].typical
    out: dict[str, Any] = {"radio_over_compute": radio_j / compute if compute else math.inf,
                           "upload_bits_where_radio_equals_compute":
                               max(compute - link.connect_j.typical, 0.0) / link.j_per_bit.typical}
    if fedavg:
        per_round = fedavg["devices"][name]["total_j"].typical
        out["fedavg_rounds_costing_the_same"] = dev["total_j"].typical / per_round if per_round else math.inf
    return out


def energy_report(fleet: FleetConfig, result: dict[str, Any], costs: AnalogCosts = AnalogCosts()) -> dict[str, Any]:
    """The ``energy`` section of report.json from the latent pipeline's clients (and FedAvg's config)."""
    link = radio(fleet.energy.radio)
    mode = fleet.energy.mode
    lat = result.get("latent") or {}
    clients = []
    pixels = classes = 0
    for c in lat.get("clients", []):
        events = c.get("events") or {}
        up_bits, down_bits = 8.0 * int(c.get("wire_bytes", 0)), 8.0 * int(c.get("init_bytes_down", 0))
        devs = device_phases(events.get("counts", {}), up_bits, down_bits, link, mode, costs)
        pixels = int(c.get("pixels", pixels) or pixels)
        classes = max(classes, len(c.get("labels", []) or []))
        clients.append({"client_id": c["client_id"], "partition_id": c.get("partition_id"),
                        "n_train": c.get("n_train"), "up_bits": up_bits, "down_bits": down_bits,
                        "analog_events": bool(events.get("counts")),
                        "max_pulses_per_device": max((v["max"] for v in events.get("pulses_per_device", {}).values()),
                                                     default=0.0),
                        **{k: v for k, v in devs["analog"].items()},
                        "digital": {name: devs[name] for name in DIGITAL_DEVICES}})
    fed = None
    if clients and pixels and classes:
        mean_train = sum(int(c["n_train"] or 0) for c in clients) / len(clients)
        fed = fedavg_round(fleet, int(round(mean_train)), pixels, classes, link, costs)
    cross = {}
    if clients:
        mean = {key: _mean([c[key] for c in clients]) for key in ("compute_j", "radio_j", "total_j")}
        cross = crossovers(mean, sum(c["up_bits"] for c in clients) / len(clients), link, fed, "analog")
        cross["digital"] = {name: crossovers({k: _mean([c["digital"][name][k] for c in clients])
                                              for k in ("compute_j", "radio_j", "total_j")},
                                             0.0, link, fed, name) for name in DIGITAL_DEVICES}
    return {"radio": link.to_dict(), "mode": mode, "model": costs.to_dict(),
            "digital_devices": {n: d.to_dict() for n, d in DIGITAL_DEVICES.items()},
            "clients": clients, "fedavg_per_round": fed, "crossover": cross}


def _mean(bands: list[Band]) -> Band:
    n = max(len(bands), 1)
    return band_sum(bands) * (1.0 / n)


def _eng(x: float, unit: str) -> str:
    if not math.isfinite(x):
        return "-"
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(x) >= scale or scale == 1e-12:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x} {unit}"


def _span(b: Band, unit: str) -> str:
    return f"{_eng(b.typical, unit)} [{_eng(b.min, unit)}..{_eng(b.max, unit)}]"


def format_energy(energy: dict[str, Any]) -> str:
    """A terminal table: per client the analog device's compute, radio, total and latency, and the
    same work on the digital devices; FedAvg's per-round cost and the crossovers."""
    rows = [["client", "compute", "radio", "total (analog)", "latency", "total (MCU)", "total (edge NPU)"]]
    for c in energy["clients"]:
        dig = c["digital"]
        rows.append([c["client_id"], _eng(_b(c["compute_j"]).typical, "J"), _eng(_b(c["radio_j"]).typical, "J"),
                     _span(_b(c["total_j"]), "J"), _eng(_b(c["latency_s"]).typical, "s"),
                     _eng(_b(dig["mcu"]["total_j"]).typical, "J"), _eng(_b(dig["edge_npu"]["total_j"]).typical, "J")])
    r = energy["radio"]
    lines = [f"energy per device ({energy['mode']} analog model, radio {r['name']}: "
             f"{_eng(r['j_per_bit']['typical'], 'J')}/bit + {_eng(r['connect_j']['typical'], 'J')}/connection; "
             "typical [min..max]):", grid(rows)]
    fed = energy.get("fedavg_per_round")
    if fed:
        d = fed["devices"]
        lines.append(f"FedAvg, one round per client ({fed['params']} params both ways, {fed['samples']} samples x "
                     f"{fed['local_epochs']} epoch): analog {_eng(_b(d['analog']['total_j']).typical, 'J')}, "
                     f"MCU {_eng(_b(d['mcu']['total_j']).typical, 'J')}, "
                     f"edge NPU {_eng(_b(d['edge_npu']['total_j']).typical, 'J')} "
                     f"(radio {_eng(_b(d['mcu']['radio_j']).typical, 'J')} of it)")
    x = energy.get("crossover") or {}
    if x:
        text = (f"radio/compute {x['radio_over_compute']:.3g} (analog, typical); radio would equal compute at "
                f"{_eng(x['upload_bits_where_radio_equals_compute'] / 8, 'B')} moved (up + down)")
        if "fedavg_rounds_costing_the_same" in x:
            text += (f"; the latent pipeline costs as much as {x['fedavg_rounds_costing_the_same']:.3g} FedAvg "
                     "rounds on the analog chip")
        lines.append(text)
    return "\n".join(lines)


def _b(value: Any) -> Band:
    return value if isinstance(value, Band) else _band(value)


def plot_energy(energy: dict[str, Any], out_dir: Path, title: str) -> Path | None:
    """energy_per_phase.png: stacked bars per phase, per client on analog tiles (left), and the mean
    client on analog tiles, an MCU and an edge NPU beside one FedAvg round (right, log scale)."""
    if not energy.get("clients"):
        return None
    import matplotlib  # imported on use (slow to import), with the file-only backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = (*COMPUTE_PHASES, *RADIO_PHASES)
    clients = energy["clients"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained",
                                   gridspec_kw={"width_ratios": [max(len(clients), 3), 4]})
    colors = dict(zip(phases, plt.get_cmap("tab10").colors))
    bottom = [0.0] * len(clients)
    for p in phases:
        vals = [_b(c["phases"][p]["energy_j"]).typical for c in clients]
        ax1.bar(range(len(clients)), vals, bottom=bottom, color=colors[p], label=p)
        bottom = [a + b for a, b in zip(bottom, vals)]
    ax1.errorbar(range(len(clients)), bottom,
                 yerr=[[t - _b(c["total_j"]).min for t, c in zip(bottom, clients)],
                       [_b(c["total_j"]).max - t for t, c in zip(bottom, clients)]],
                 fmt="none", ecolor="black", capsize=3, lw=0.8)
    ax1.set_xticks(range(len(clients)), [str(c["partition_id"]) for c in clients])
    ax1.set_xlabel("client (analog tiles; bars: typical, whiskers: min..max)")
    ax1.set_ylabel("energy per device (J)")
    ax1.legend(fontsize=8)
    names = ["analog", "mcu", "edge_npu"]
    labels = ["analog tiles", "MCU", "edge NPU"]
    means = {n: {p: _mean([_b((c if n == "analog" else c["digital"][n])["phases"][p]["energy_j"]) for c in clients]).typical
                 for p in phases} for n in names}
    bottom2 = [0.0] * (len(names))
    for p in phases:
        vals = [means[n][p] for n in names]
        ax2.bar(range(len(names)), vals, bottom=bottom2, color=colors[p])
        bottom2 = [a + b for a, b in zip(bottom2, vals)]
    fed = energy.get("fedavg_per_round")
    if fed:
        d = fed["devices"]
        xs = [i + 0.3 for i in range(len(names))]
        ax2.bar(xs, [_b(d[n]["total_j"]).typical for n in names], width=0.2, color="gray",
                label="one FedAvg round (compute + radio)")
        ax2.legend(fontsize=8)
    ax2.set_yscale("log")
    ax2.set_ylim(bottom=max(bottom2) * 1e-4)
    ax2.set_xticks(range(len(names)), labels)
    ax2.set_ylabel("mean client energy (J, log)")
    ax2.set_title("same work on digital devices", fontsize=9)
    r = energy["radio"]["name"]
    fig.suptitle(textwrap.fill(f"Energy per device by phase, radio {r}, {energy['mode']} analog model -- {title}",
                               150), fontsize=9)
    path = out_dir / "energy_per_phase.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def as_json(energy: dict[str, Any]) -> dict[str, Any]:
    """Bands as {min, typical, max} dicts (report.json)."""
    def conv(v: Any) -> Any:
        if isinstance(v, Band):
            return v.to_dict()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v
    return conv(energy)


# ---------------------------------------------------------------------- sweep
#: per-point columns the sweep adds (mean client, typical unless named; J and s)
SWEEP_FIELDS = ["energy_j", "energy_j_min", "energy_j_max", "compute_j", "radio_j", "latency_s",
                "energy_mcu_j", "energy_npu_j", "fedavg_round_j", "fedavg_rounds_same_j", "radio_over_compute",
                "upload_bytes_radio_equals_compute"]
_CARRIED = ("events", "labels", "init_bytes_down", "n_train", "pixels")


def point_energy(fleet: FleetConfig, lat: dict[str, Any], trained: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """SWEEP_FIELDS of one sweep point: the mean client of ``energy_report``. ``trained``: the clients of
    the point whose encoders these latents come from (a re-quantized bit width trains nothing new:
    its compute is theirs, its radio its own bytes)."""
    clients = [dict(c) for c in lat.get("clients", [])]
    if trained:
        src = {c["client_id"]: c for c in trained}
        for c in clients:
            for key in _CARRIED:
                if key in src.get(c["client_id"], {}):
                    c[key] = src[c["client_id"]][key]
    nan = float("nan")
    if not fleet.energy.enabled or not clients:
        return {k: nan for k in SWEEP_FIELDS}
    e = energy_report(fleet, {"latent": {"clients": clients}})
    total = _mean([c["total_j"] for c in e["clients"]])
    fed = e.get("fedavg_per_round")
    x = e.get("crossover", {})
    return {"energy_j": total.typical, "energy_j_min": total.min, "energy_j_max": total.max,
            "compute_j": _mean([c["compute_j"] for c in e["clients"]]).typical,
            "radio_j": _mean([c["radio_j"] for c in e["clients"]]).typical,
            "latency_s": _mean([c["latency_s"] for c in e["clients"]]).typical,
            "energy_mcu_j": _mean([c["digital"]["mcu"]["total_j"] for c in e["clients"]]).typical,
            "energy_npu_j": _mean([c["digital"]["edge_npu"]["total_j"] for c in e["clients"]]).typical,
            "fedavg_round_j": fed["devices"]["analog"]["total_j"].typical if fed else nan,
            "fedavg_rounds_same_j": x.get("fedavg_rounds_costing_the_same", nan),
            "radio_over_compute": x.get("radio_over_compute", nan),
            "upload_bytes_radio_equals_compute": x.get("upload_bits_where_radio_equals_compute", nan) / 8}


def format_sweep_energy(rows: list[dict[str, Any]], radio_name: str, fedavg_rounds: int | None = None) -> str:
    """Energy per device per point: total [min..max], its split, radio/compute, and how many FedAvg
    rounds cost as much (latents win where FedAvg needs more rounds than that)."""
    table = [["line", "d", "bits", "J/device", "compute", "radio", "radio/compute", "radio = compute at (bytes moved)",
              "FedAvg rounds, same J", "MCU J/device"]]
    for r in rows:
        if not math.isfinite(r.get("energy_j", float("nan"))):
            continue
        table.append([r["label"], str(r["latent_dim"]), str(r["bits"]),
                      f"{_eng(r['energy_j'], 'J')} [{_eng(r['energy_j_min'], 'J')}..{_eng(r['energy_j_max'], 'J')}]",
                      _eng(r["compute_j"], "J"), _eng(r["radio_j"], "J"), f"{r['radio_over_compute']:.3g}",
                      _eng(r["upload_bytes_radio_equals_compute"], "B"), f"{r['fedavg_rounds_same_j']:.3g}",
                      _eng(r["energy_mcu_j"], "J")])
    if len(table) == 1:
        return ""
    head = f"energy per device, radio {radio_name} (mean client, typical [min..max])"
    tail = (f"FedAvg ran {fedavg_rounds} rounds: the latent pipeline costs less wherever 'FedAvg rounds, same J' "
            f"< {fedavg_rounds}" if fedavg_rounds else "latents cost less than FedAvg when it needs more rounds "
                                                         "than 'FedAvg rounds, same J'")
    return "\n".join([head, grid(table), tail])


def plot_sweep_energy(rows: list[dict[str, Any]], path: Path, radio_name: str, subtitle: str,
                      fedavg: dict[str, Any] | None = None) -> Path | None:
    """Accuracy vs energy per device (log x, min..max bars), one line per (line, bits); FedAvg's
    per-round cost (and its whole run, if it ran) as vertical lines."""
    pts_all = [r for r in rows if math.isfinite(r.get("energy_j", float("nan")))]
    if not pts_all:
        return None
    import matplotlib  # imported on use (slow to import), with the file-only backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {32: "o", 16: "D", 8: "s", 4: "^"}
    fig, ax = plt.subplots(figsize=(8.5, 6.0), layout="constrained")
    for (lab, bits) in dict.fromkeys((r["label"], r["bits"]) for r in pts_all):
        pts = sorted((r for r in pts_all if r["label"] == lab and r["bits"] == bits), key=lambda r: r["energy_j"])
        xs = [r["energy_j"] for r in pts]
        ys = [100 * r["accuracy"] for r in pts]
        line = ax.plot(xs, ys, marker=markers.get(bits, "o"), linestyle="--" if lab == "digital" else "-",
                       label=f"{lab}, {bits}-bit")[0]
        ax.errorbar(xs, ys, xerr=[[x - r["energy_j_min"] for x, r in zip(xs, pts)],
                                  [r["energy_j_max"] - x for x, r in zip(xs, pts)]],
                    fmt="none", ecolor=line.get_color(), elinewidth=0.8, capsize=2, alpha=0.6)
        for x, y, r in zip(xs, ys, pts):
            ax.annotate(f"d={r['latent_dim']}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    per_round = [r["fedavg_round_j"] for r in pts_all if math.isfinite(r.get("fedavg_round_j", float("nan")))]
    if per_round:
        ax.axvline(per_round[0], color="crimson", linestyle=":", label=f"one FedAvg round ({_eng(per_round[0], 'J')})")
        if fedavg and fedavg.get("rounds"):
            ax.axvline(per_round[0] * fedavg["rounds"], color="crimson", linestyle="-.",
                       label=f"FedAvg, {fedavg['rounds']} rounds ({100 * fedavg['accuracy']:.1f}%)")
    ax.set_xscale("log")
    ax.set_xlabel(f"energy per device (J, log): program + train + encode on analog tiles + {radio_name} radio")
    ax.set_ylabel("fleet accuracy, per-client test splits (%)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(textwrap.fill(f"Accuracy vs energy per device, radio {radio_name} ({subtitle})", 90), fontsize=9)
    fig.legend(loc="outside lower center", fontsize=7, ncol=2)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
