"""Compression vs accuracy sweep: latent size x wire bits x device x algorithm (the central figure).

Work is reused where the physics allows: for each (tile config, latent_dim) every client trains its
autoencoder ONCE (a full fleet run at the first bit width); each further bit width re-quantizes
the same encoder's latents, uploads them to a fresh latent service, retrains the classifier and
re-evaluates every client on its own test split. Reference lines: the digital pipeline (same
grid, ideal tiles) and an MLP on raw pixels trained centrally on the pooled training images;
optionally the FedAvg baseline as one point. Sweeps run clients in-process (the `local` backend):
the Flower path adds orchestration, not different numbers.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from analog.algorithms import ALGORITHMS
from analog.devices import DEVICES
from common.validation import ConfigError, check_choice, check_int
from fleet.config import FleetConfig
from fleet.energy import SWEEP_FIELDS, format_sweep_energy, plot_sweep_energy, point_energy
from fleet.flower import run_fleet
from fleet.names import PRETRAINED_FILE, client_name
from fleet.privacy import run_privacy
from fleet.run import (
    LocalData,
    LocalTransport,
    ServiceHandle,
    build_mlp,
    evaluate,
    execute,
    latent_evaluate,
    requantize_upload,
    summarize_latent,
    train_local,
)
from fleet.tables import grid, json_safe

CSV_FIELDS = ["label", "device", "algorithm", "digital", "latent_dim", "bits", "accuracy", "accuracy_min",
              "accuracy_max", "compression_pixels", "compression_wire", "bytes_up", "bytes_per_sample",
              "recon_mse", "classifier_held_out", "seconds", *SWEEP_FIELDS]
#: with --privacy: the strongest server-side attack of the suite (fleet/privacy/suite.py, docs/privacy.md)
PRIVACY_FIELDS = ["attack", "attack_gain_db", "attack_psnr", "attack_ssim", "attack_reid"]


def _ints(text: str, name: str, allowed: tuple[int, ...] | None = None) -> list[int]:
    """A comma list of distinct integers >= 1 (each one of `allowed`, when given)."""
    try:
        vals = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{name}: got {text!r}, must be a comma list of integers") from None
    if not vals:
        raise ConfigError(f"{name}: got {text!r}, must name at least one value")
    for v in vals:
        if allowed:
            check_choice(name, v, allowed)
        else:
            check_int(name, v, 1)
    return list(dict.fromkeys(vals))


@dataclass(frozen=True)
class SweepSpec:
    latent_dims: list[int]
    bits: list[int]
    devices: list[str]          # device type names; empty = the config's device
    algorithms: list[str]       # algorithm names or presets, "@edge" / "@server": that side only; empty or "config" = the config's
    references: bool = True     # digital pipeline + raw-pixel classifier
    fedavg: bool = False
    privacy: bool = False       # the privacy phase at every point (the attack suite's strongest attack)

    @classmethod
    def parse(cls, latent_dims: str, bits: str, devices: str = "", algorithms: str = "",
              references: bool = True, fedavg: bool = False, privacy: bool = False) -> "SweepSpec":
        spec = cls(_ints(latent_dims, "--latent-dims"), _ints(bits, "--bits", (32, 16, 8, 4)),
                   [d.strip() for d in devices.split(",") if d.strip()],
                   [a.strip() for a in algorithms.split(",") if a.strip()], references, fedavg, privacy)
        return spec

    def tiles(self, fleet: FleetConfig) -> list[tuple[str, dict[str, Any] | None]]:
        """(label, tile tables or None for digital) for every analog line, validated now.

        A line's tables are ``{"analog": ..., "edge": ..., "classifier": ...}``: the shared [analog]
        table and, where the config gives a side its own ([edge.analog], [classifier.analog]), that
        side's, each with the line's device / algorithm swapped in, so both sides train alike."""
        if fleet.digital:
            return [("digital", None)]
        for name in self.devices:
            if name not in DEVICES:
                raise ConfigError(f"--devices: got {name!r}, must be one of {', '.join(sorted(DEVICES))}")
        lines = [_algorithm_sides(a) for a in self.algorithms] or [(None, None, "both")]
        out = []
        for dev in self.devices or [None]:
            for edge_alg, server_alg, where in lines:
                # "@edge": only the edge autoencoders train with the line's algorithm, the server keeps
                # the config's; "@server": the reverse (the edge pinned to the config's own table);
                # "A@edge+B@server": each side its own
                tiles = {"analog": _swap(fleet.analog, dev, server_alg)}
                if "analog" in fleet.classifier:
                    tiles["classifier"] = _swap(fleet.classifier["analog"], dev, server_alg)
                if "analog" in fleet.edge or edge_alg != server_alg:
                    tiles["edge"] = _swap(fleet.edge.get("analog", fleet.analog), dev, edge_alg)
                _apply(fleet, tiles)          # validates every table
                d = (tiles["analog"].get("device") or {}).get("type", "default")
                e = _algorithm_name(tiles.get("edge", tiles["analog"]).get("algorithm"))
                a = _algorithm_name(tiles["analog"].get("algorithm"))
                name = {"both": a, "edge": e, "server": a}.get(where, f"{e}@edge+{a}@server")
                label = f"{name} on {d}" if where in ("both", "sides") else f"{name} on {d}, {where} only"
                tiles["line_algorithm"] = name if where in ("both", "sides") else f"{name}@{where}"
                out.append((label, tiles))
        return out


def _algorithm_sides(text: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    """One ``--algorithms`` item -> (edge table, server table, where): ``NAME`` both sides,
    ``NAME@edge`` / ``NAME@server`` one side, ``A@edge+B@server`` each side its own (None: the config's)."""
    parts = [_algorithm_line(p) for p in text.split("+")]
    if len(parts) == 1:
        alg, where = parts[0]
        return (alg if where != "server" else None), (alg if where != "edge" else None), where
    sides = {where: alg for alg, where in parts}
    if len(parts) != 2 or set(sides) != {"edge", "server"}:
        raise ConfigError(f"--algorithms: got {text!r}; a '+' joins exactly one NAME@edge and one NAME@server")
    return sides["edge"], sides["server"], "sides"


def _algorithm_line(text: str) -> tuple[dict[str, Any] | None, str]:
    """``NAME`` or ``NAME@edge`` / ``NAME@server`` -> (algorithm table, side); NAME an algorithm type,
    an algorithm preset (analog.algorithms.presets) or ``config`` (the config's own tables)."""
    from analog.algorithms.presets import ALGORITHM_PRESETS

    name, _, where = text.partition("@")
    check_choice("--algorithms side", where or "both", ("both", "edge", "server"))
    if name == "config":                 # the config's own tables, as given (a reference line)
        return None, "both"
    if name in ALGORITHMS:
        return {"type": name}, where or "both"
    if name in ALGORITHM_PRESETS:
        return {"preset": name}, where or "both"
    raise ConfigError(f"--algorithms: got {name!r}, must be one of "
                      f"{', '.join(sorted(ALGORITHMS) + sorted(ALGORITHM_PRESETS))}, config (optionally @edge or @server)")


def _algorithm_name(table: dict[str, Any] | None) -> str:
    table = table or {}
    return table.get("preset") or table.get("type", "AnalogSGD")


def _swap(tile: dict[str, Any] | None, device: str | None, algorithm: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of a TileConfig table with the device and/or algorithm table replaced (None: kept)."""
    out = copy.deepcopy(tile) or {}
    if device:
        out["device"] = {"type": device}
    if algorithm:
        out["algorithm"] = dict(algorithm)
    return out


def _apply(fleet: FleetConfig, tiles: dict[str, Any] | None, **edge: dict[str, Any]) -> FleetConfig:
    """`fleet` with a line's tile tables (None: the digital pipeline) and these [edge] tables' keys
    (e.g. ``model={"latent_dim": 16}``)."""
    sides = {side: copy.deepcopy(getattr(fleet, side)) for side in ("edge", "classifier")}
    for table, keys in edge.items():
        sides["edge"][table] = {**sides["edge"].get(table, {}), **keys}
    if tiles is None:
        return fleet.with_overrides(edge=sides["edge"], digital=True)
    for side in ("edge", "classifier"):
        if side in tiles:
            sides[side]["analog"] = tiles[side]
    return fleet.with_overrides(analog=tiles["analog"], **sides, digital=False)


def _point_fleet(fleet: FleetConfig, tiles: dict | None, latent_dim: int, bits: int,
                 privacy: bool = False) -> FleetConfig:
    # the privacy phase runs only when the sweep asks (--privacy), at every point alike (see _point_privacy)
    return _apply(fleet, tiles, model={"latent_dim": latent_dim}, wire={"bits": bits}).with_overrides(
        backend="local", server="inprocess", mode="latent",
        privacy=dataclasses.replace(fleet.privacy, enabled=privacy))


def privacy_columns(priv: dict[str, Any] | None) -> dict[str, Any]:
    """A point's privacy columns: the strongest server-side attack, its PSNR gain over the class-mean
    guess, its SSIM and re-identification rate (empty when the phase did not run or had no attack)."""
    sa = (priv or {}).get("server_attack") or {}
    if "attack" not in sa:
        return {k: "" for k in PRIVACY_FIELDS}
    return {"attack": sa["attack"], "attack_gain_db": sa["gain_db"], "attack_psnr": sa["psnr"],
            "attack_ssim": sa["ssim"], "attack_reid": sa["reid"]}


def _point_privacy(fleet: FleetConfig, src_root: Path, out: Path) -> dict[str, Any]:
    """The privacy phase of a re-quantized point: its own store, the copied client states and the
    pretrained weights the first bit width's server trained (the attacker holds them at every point)."""
    src_pre, dst_pre = src_root.parent / PRETRAINED_FILE, out / PRETRAINED_FILE
    if src_pre.is_file() and not dst_pre.is_file():
        shutil.copy2(src_pre, dst_pre)
    priv = run_privacy(fleet, out, progress=False)
    (out / "privacy.json").write_text(json.dumps(json_safe(priv), indent=2))
    return priv


def _row(label: str, tiles: dict | None, lat: dict, seconds: float) -> dict[str, Any]:
    tile = None if tiles is None else tiles["analog"]
    dev = "digital" if tile is None else (tile.get("device") or {}).get("type", "default")
    alg = "digital" if tile is None else tiles.get("line_algorithm") or _algorithm_name(tile.get("algorithm"))
    return {"label": label, "device": dev, "algorithm": alg, "digital": tile is None,
            "latent_dim": lat["latent_dim"], "bits": lat["bits"], "accuracy": lat["accuracy"],
            "accuracy_min": lat["accuracy_spread"]["min"], "accuracy_max": lat["accuracy_spread"]["max"],
            "compression_pixels": lat["compression_pixels_per_latent"],
            "compression_wire": lat["compression_raw_over_wire"], "bytes_up": lat["bytes_up"],
            "bytes_per_sample": lat["bytes_per_sample"], "recon_mse": lat["recon_mse"],
            "classifier_held_out": lat["classifier"]["held_out_accuracy"], "seconds": seconds}


def _requantized_point(fleet: FleetConfig, src_root: Path, out: Path) -> dict[str, Any]:
    """One further bit width of a grid point: the trained encoders' latents re-quantized and
    uploaded to a fresh service, the classifier retrained, every client re-evaluated."""
    out.mkdir(parents=True, exist_ok=True)
    clf = fleet.classifier_config
    with ServiceHandle(out / "server", clf, "inprocess") as svc:
        ups = [requantize_upload(fleet, pid, src_root / client_name(pid), out / "clients" / client_name(pid),
                                 svc.address)
               for pid in tqdm(range(fleet.num_clients), desc=f"  re-quantize {fleet.edge_config.wire.bits}-bit",
                               unit="client", leave=False)]
        status = svc.status()
        classifier = svc.train_classifier(clf)
        evals = [latent_evaluate(fleet, pid, fleet.num_clients, svc.address, str(out / "clients"))
                 for pid in range(fleet.num_clients)]
        address = svc.address
    return summarize_latent(fleet, ups, evals, status, classifier, address)


def raw_pixel_reference(fleet: FleetConfig) -> dict[str, Any]:
    """The classifier (same hidden sizes, digital) trained centrally on the pooled raw training
    images of all clients, scored on the union of their local test splits: an upper reference."""
    parts = [LocalData(fleet, pid, fleet.num_clients) for pid in range(fleet.num_clients)]
    xtr = torch.cat([p.x_train for p in parts])
    ytr = torch.cat([p.y_train for p in parts])
    xte = torch.cat([p.x_test for p in parts])
    yte = torch.cat([p.y_test for p in parts])
    clf = fleet.classifier_config
    model = build_mlp(parts[0].pixels, list(clf.hidden), parts[0].num_classes, None, fleet.seed)
    train_local(model, xtr, ytr, clf.epochs, clf.batch_size, clf.lr, False, fleet.seed)
    correct, _ = evaluate(model, xte, yte)
    return {"accuracy": correct / len(yte), "n_test": len(yte), "raw_bytes": int(xtr.shape[0] * (xtr.shape[1] + 4))}


def run_sweep(fleet: FleetConfig, spec: SweepSpec, out_dir: str | Path) -> dict[str, Any]:
    """Run the grid, write sweep.csv / sweep.json / sweep.png / sweep_table.txt, return the results."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tiles = spec.tiles(fleet)
    if spec.references and not fleet.digital:
        tiles.append(("digital", None))
    rows: list[dict[str, Any]] = []
    total = len(tiles) * len(spec.latent_dims)
    t_start = time.perf_counter()
    with tqdm(total=total * len(spec.bits), desc="sweep", unit="point") as bar:
        for label, tile in tiles:
            for d in spec.latent_dims:
                first = _point_fleet(fleet, tile, d, spec.bits[0], spec.privacy)
                slug = f"{label.replace(' ', '_')}/d{d}"
                t0 = time.perf_counter()
                rep = execute(first, out / "points" / slug / f"b{spec.bits[0]}", LocalTransport(first.num_clients))
                rows.append({**_row(label, tile, rep["latent"], time.perf_counter() - t0),
                             **point_energy(first, rep["latent"])})
                if spec.privacy:
                    rows[-1].update(privacy_columns(rep.get("privacy")))
                bar.update(1)
                src = out / "points" / slug / f"b{spec.bits[0]}" / "clients"
                for b in spec.bits[1:]:
                    t0 = time.perf_counter()
                    fleet_b, dst = _point_fleet(fleet, tile, d, b, spec.privacy), out / "points" / slug / f"b{b}"
                    lat = _requantized_point(fleet_b, src, dst)
                    rows.append({**_row(label, tile, lat, time.perf_counter() - t0),
                                 **point_energy(fleet_b, lat, rep["latent"]["clients"])})
                    if spec.privacy:
                        rows[-1].update(privacy_columns(_point_privacy(fleet_b, src, dst)))
                    bar.update(1)
                _write(out, rows, {}, fleet, spec)      # partial results survive an interrupted sweep
    refs: dict[str, Any] = {}
    if spec.references:
        refs["raw_pixels"] = raw_pixel_reference(fleet)
    if spec.fedavg:
        fa_fleet = fleet.with_overrides(mode="fedavg", backend="ray")
        fa = run_fleet(fa_fleet, out / "fedavg")["fedavg"]
        raw = refs.get("raw_pixels", {}).get("raw_bytes") or raw_pixel_reference(fleet)["raw_bytes"]
        refs["fedavg"] = {"accuracy": fa["accuracy"], "bytes_up": fa["bytes_up"], "bytes_down": fa["bytes_down"],
                          "rounds": fa["rounds"], "compression_wire": raw / (fa["bytes_up"] + fa["bytes_down"])}
    refs["wall_s"] = time.perf_counter() - t_start
    return _write(out, rows, refs, fleet, spec)


def _write(out: Path, rows: list[dict], refs: dict, fleet: FleetConfig, spec: SweepSpec) -> dict[str, Any]:
    fields = CSV_FIELDS + (PRIVACY_FIELDS if spec.privacy else [])
    with (out / "sweep.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in fields})
    result = {"config": fleet.to_dict(), "grid": {"latent_dims": spec.latent_dims, "bits": spec.bits,
                                                  "devices": spec.devices, "algorithms": spec.algorithms},
              "rows": rows, "references": refs}
    (out / "sweep.json").write_text(json.dumps(json_safe(result), indent=2))
    energy = format_sweep_energy(rows, fleet.energy.radio, refs.get("fedavg", {}).get("rounds"))
    (out / "sweep_table.txt").write_text(format_sweep(rows, refs) + "\n" + (energy + "\n" if energy else ""))
    if rows:
        subtitle = (f"{fleet.dataset}, {fleet.num_clients} clients, {fleet.partitioner}, "
                    f"alignment {fleet.alignment.label}, 1 seed ({fleet.seed})")
        plot_sweep(rows, refs, out / "sweep.png", subtitle)
        plot_sweep_energy(rows, out / "sweep_energy.png", fleet.energy.radio, subtitle, refs.get("fedavg"))
    return result


def format_sweep(rows: list[dict], refs: dict) -> str:
    table = [["line", "d", "bits", "pixels/d", "raw/wire", "accuracy", "client min..max", "recon MSE",
              "server held-out"]]
    for r in rows:
        table.append([r["label"], str(r["latent_dim"]), str(r["bits"]), f"{r['compression_pixels']:.1f}",
                      f"{r['compression_wire']:.1f}x", f"{100 * r['accuracy']:.1f}%",
                      f"{100 * r['accuracy_min']:.0f}..{100 * r['accuracy_max']:.0f}%", f"{r['recon_mse']:.4f}",
                      f"{100 * r['classifier_held_out']:.1f}%"])
    if any("attack" in r for r in rows):          # --privacy: the strongest server-side attack per point
        table[0] += ["attack gain", "attack SSIM", "re-id"]
        for row, r in zip(table[1:], rows):
            ok = r.get("attack") not in (None, "")
            row += [f"{r['attack_gain_db']:+.1f} dB", f"{r['attack_ssim']:.3f}",
                    f"{100 * r['attack_reid']:.0f}%"] if ok else ["-", "-", "-"]
    lines = [grid(table)]
    if "raw_pixels" in refs:
        lines.append(f"raw-pixel MLP (central, pooled): {100 * refs['raw_pixels']['accuracy']:.1f}%")
    if "fedavg" in refs:
        fa = refs["fedavg"]
        lines.append(f"FedAvg ({fa['rounds']} rounds): {100 * fa['accuracy']:.1f}%, "
                     f"{(fa['bytes_up'] + fa['bytes_down']) / 1024:.0f} KiB both ways")
    return "\n".join(lines)


def plot_sweep(rows: list[dict], refs: dict, path: Path, subtitle: str) -> None:
    """Save ``sweep_figure(rows, refs, subtitle)`` as a PNG."""
    fig = sweep_figure(rows, refs, subtitle)
    import matplotlib.pyplot as plt  # on use, as in sweep_figure (which chose the file-only backend)

    fig.savefig(path, dpi=130)
    plt.close(fig)


def sweep_figure(rows: list[dict], refs: dict, subtitle: str):
    """Accuracy vs raw/wire compression: one line per (device, algorithm, bits), digital in grey.

    Points at the same x carry the same bytes per sample (d x bits), so their "d" labels are merged
    into one tick of a top axis instead of being printed over the lines; with rows averaged over
    seeds (``seed_min``/``seed_max``) each point gets a min..max bar. The legend sits below the axes,
    where it hides no data; x ticks are plain compression factors (2x, 5x, 10x ...)."""
    import matplotlib  # imported on use (slow to import), with the file-only backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    markers = {32: "o", 16: "D", 8: "s", 4: "^"}
    labels = [lab for lab in dict.fromkeys(r["label"] for r in rows) if lab != "digital"]
    colors = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(8.5, 6.2), layout="constrained")
    for (lab, bits) in dict.fromkeys((r["label"], r["bits"]) for r in rows):
        pts = sorted((r for r in rows if r["label"] == lab and r["bits"] == bits), key=lambda r: r["compression_wire"])
        xs = [r["compression_wire"] for r in pts]
        ys = [100 * r["accuracy"] for r in pts]
        digital = lab == "digital"
        color = "0.55" if digital else colors[lab]
        ax.plot(xs, ys, linestyle="--" if digital else "-", marker=markers.get(bits, "o"),
                color=color, label=f"{lab}, {bits}-bit", alpha=0.9)
        if all("seed_min" in r for r in pts):
            ax.errorbar(xs, ys, yerr=[[y - 100 * r["seed_min"] for r, y in zip(pts, ys)],
                                      [100 * r["seed_max"] - y for r, y in zip(pts, ys)]],
                        fmt="none", ecolor=color, elinewidth=1, capsize=2, alpha=0.8)
    # One tick per payload size on a top axis: the (d, bits) pairs with the same d x bits sit at the
    # same x (up to label/framing bytes), so their names go there once instead of over the lines.
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["latent_dim"] * r["bits"], []).append(r)
    top = ax.twiny()
    top.set_xscale("log")
    ticks = [sum(r["compression_wire"] for r in g) / len(g) for g in groups.values()]
    names = [", ".join(dict.fromkeys(f"d={r['latent_dim']}@{r['bits']}b" for r in
                                     sorted(g, key=lambda r: -r["bits"]))) for g in groups.values()]
    top.set_xticks(ticks, names, fontsize=6, rotation=90)   # vertical: close ticks do not collide
    top.xaxis.set_minor_formatter(NullFormatter())
    top.tick_params(axis="x", which="minor", top=False)
    top.set_xlabel("latent size d @ wire bits (pairs with the same bytes per sample share an x)", fontsize=7)
    if "raw_pixels" in refs:
        ax.axhline(100 * refs["raw_pixels"]["accuracy"], color="k", linestyle=":", linewidth=1,
                   label=f"MLP on raw pixels, central ({100 * refs['raw_pixels']['accuracy']:.1f}%)")
    if "fedavg" in refs:
        fa = refs["fedavg"]
        ax.plot([fa["compression_wire"]], [100 * fa["accuracy"]], "*", color="crimson", ms=14,
                label=f"FedAvg, {fa['rounds']} rounds: {100 * fa['accuracy']:.1f}% (x = raw data / bytes both ways)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("compression: raw image bytes / bytes on the wire (log scale)")
    ax.set_ylabel("fleet accuracy, per-client test splits (%)")
    top.set_xlim(ax.get_xlim())
    dims = sorted({r["latent_dim"] for r in rows})
    bits = sorted({r["bits"] for r in rows}, reverse=True)
    ax.set_title(f"Compression vs accuracy: d in {{{', '.join(map(str, dims))}}}, "
                 f"{'/'.join(map(str, bits))}-bit latents\n({subtitle})", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside lower center", fontsize=7, ncol=2)
    return fig
