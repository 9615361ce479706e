"""Accuracy vs privacy, drawn: one curve per defense, one point per value, seeds averaged.

A defense is any dotted config key with the values to try (``edge.defense.noise_multiplier=0,0.5,1``,
``edge.wire.bits=8,4``, ``alignment=pretrained+anchors,shared_init``): each value is one fleet run per
seed (in-process, `local` backend) with the privacy phase on, and the point is (the strongest
server-side attack's PSNR gain over the class-mean guess, fleet accuracy), mean with min..max over
the seeds. `marks` are whole configs drawn as labelled stars (the config as given is always one).
Identical resolved configs run once. Outputs: front.csv, front.json, front_table.txt, front.png.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from common.validation import ConfigError
from fleet.config import FleetConfig
from fleet.run import LocalTransport, execute
from fleet.tables import grid, json_safe

METRICS = ("accuracy", "gain_db", "psnr", "ssim", "reid")
CSV_FIELDS = ["curve", "value", "seeds", "attack", *[f"{m}{s}" for m in METRICS for s in ("", "_min", "_max")]]


def parse_value(text: str) -> Any:
    """A TOML value (number, bool, quoted string); anything else is taken as a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


@dataclass(frozen=True)
class Defense:
    """One curve: a dotted key into the fleet TOML and its values."""

    key: str
    values: tuple[Any, ...]

    @classmethod
    def parse(cls, text: str) -> "Defense":
        key, sep, vals = text.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or (len(parts) < 2 and key != "alignment") or not all(parts) or not vals.strip():
            raise ConfigError(f"--defense: got {text!r}, must be SECTION.KEY=V1,V2,... "
                              "(e.g. edge.defense.noise_multiplier=0,0.5,1) or alignment=A1,A2,... "
                              "(the compact form, e.g. pretrained+anchors)")
        if parts[0] == "fleet" and parts[1] == "seed" or parts[0] == "privacy" and parts[1] == "enabled":
            raise ConfigError(f"--defense: got {key!r}; seeds are --seeds, and the privacy phase is always on")
        return cls(key, tuple(parse_value(v) for v in vals.split(",") if v.strip()))


def with_key(fleet: FleetConfig, key: str, value: Any) -> FleetConfig:
    """`fleet` with one dotted key set (validated like the TOML file: errors name the key). The key
    `alignment` alone takes the compact form (`alignment=pretrained+anchors`; AlignmentConfig.parse)."""
    if key == "alignment":
        try:
            return fleet.with_overrides(alignment=value if isinstance(value, str) else repr(value))
        except ConfigError as exc:
            raise ConfigError(f"--defense {key}={value!r}: {exc}") from None
    data = fleet.to_dict()
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--defense: {key!r}: {p} is a value, not a table")
        node = nxt
    node[parts[-1]] = value
    try:
        return FleetConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"--defense {key}={value!r}: {exc}") from None


def _run_config(fleet: FleetConfig, seed: int) -> FleetConfig:
    return fleet.with_overrides(seed=seed, backend="local", server="inprocess", mode="latent",
                                privacy=dataclasses.replace(fleet.privacy, enabled=True))


def _identity(fleet: FleetConfig) -> str:
    """What a run depends on, resolved (an [edge] key set to its default is the same run), minus the name."""
    d = fleet.to_dict()
    d["fleet"].pop("name", None)
    d["edge"], d["classifier"] = fleet.edge_config.to_dict(), fleet.classifier_config.to_dict()
    return json.dumps(json_safe(d), sort_keys=True, default=str)


@dataclass
class Point:
    curve: str               # the defense key, or "mark"
    value: Any               # the key's value, or the mark's label
    fleet: FleetConfig


def plan(fleet: FleetConfig, defenses: list[Defense], marks: dict[str, FleetConfig]) -> list[Point]:
    """Every point, validated before anything runs."""
    pts = [Point("mark", label, cfg) for label, cfg in marks.items()]
    for d in defenses:
        pts += [Point(d.key, v, with_key(fleet, d.key, v)) for v in d.values]
    return pts


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": len(runs)}
    for m in METRICS:
        vals = np.array([r[m] for r in runs if r.get(m) is not None], dtype=float)
        out[m] = float(vals.mean()) if vals.size else float("nan")
        out[f"{m}_min"] = float(vals.min()) if vals.size else float("nan")
        out[f"{m}_max"] = float(vals.max()) if vals.size else float("nan")
    names = [r["attack"] for r in runs if r.get("attack")]
    out["attack"] = max(set(names), key=names.count) if names else ""
    return out


def _one_run(fleet: FleetConfig, out: Path) -> dict[str, Any]:
    rep = execute(fleet, out, LocalTransport(fleet.num_clients))
    sa = (rep.get("privacy") or {}).get("server_attack") or {}
    return {"accuracy": rep["latent"]["accuracy"], "attack": sa.get("attack"), "gain_db": sa.get("gain_db"),
            "psnr": sa.get("psnr"), "ssim": sa.get("ssim"), "reid": sa.get("reid"), "dir": str(out)}


def run_front(fleet: FleetConfig, defenses: list[Defense], seeds: list[int], out_dir: str | Path,
              marks: dict[str, FleetConfig] | None = None) -> dict[str, Any]:
    """Run every (point, seed), write the outputs, return the results."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    marks = {f"{fleet.name} (as given)": fleet, **(marks or {})}
    points = plan(fleet, defenses, marks)
    done: dict[str, dict[str, Any]] = {}       # resolved config + seed -> run, so a shared point runs once
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tqdm(total=len(points) * len(seeds), desc="privacy front", unit="run") as bar:
        for k, pt in enumerate(points):
            runs = []
            for seed in seeds:
                cfg = _run_config(pt.fleet, seed)
                key = _identity(cfg)
                if key not in done:
                    done[key] = _one_run(cfg, out / "runs" / f"p{k:02d}-s{seed}")
                runs.append(done[key])
                bar.update(1)
            rows.append({"curve": pt.curve, "value": pt.value, **_summary(runs), "runs": runs})
            write(out, rows, fleet, seeds, time.perf_counter() - t0)       # partial results survive
    return write(out, rows, fleet, seeds, time.perf_counter() - t0)


def title(fleet: FleetConfig, seeds: list[int]) -> str:
    return (f"Accuracy vs privacy: {fleet.name} ({fleet.dataset}, {fleet.num_clients} clients, alignment "
            f"{fleet.alignment.label}, {'digital' if fleet.digital else 'analog'} tiles), seeds "
            f"{', '.join(map(str, seeds))}\nprivacy = the strongest server-side attack (no leaked pair): PSNR gain "
            f"over the class-mean guess; mean and min..max over seeds")


def write(out: Path, rows: list[dict[str, Any]], fleet: FleetConfig, seeds: list[int], wall_s: float
          ) -> dict[str, Any]:
    with (out / "front.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in CSV_FIELDS})
    result = {"config": fleet.to_dict(), "seeds": seeds, "rows": rows, "wall_s": wall_s, "title": title(fleet, seeds)}
    (out / "front.json").write_text(json.dumps(json_safe(result), indent=2))
    (out / "front_table.txt").write_text(format_front(rows) + "\n")
    if rows:
        fig = front_figure(rows, title(fleet, seeds))
        import matplotlib.pyplot as plt  # on use; front_figure chose the file-only backend

        fig.savefig(out / "front.png", dpi=130)
        plt.close(fig)
    return result


def format_front(rows: list[dict[str, Any]]) -> str:
    table = [["curve", "value", "seeds", "accuracy (min..max)", "attack gain (min..max)", "SSIM", "re-id",
              "strongest attack"]]
    for r in rows:
        table.append([r["curve"], str(r["value"]), str(r["seeds"]),
                      f"{100 * r['accuracy']:.1f}% ({100 * r['accuracy_min']:.1f}..{100 * r['accuracy_max']:.1f})",
                      f"{r['gain_db']:+.2f} dB ({r['gain_db_min']:+.2f}..{r['gain_db_max']:+.2f})",
                      f"{r['ssim']:.3f}", f"{100 * r['reid']:.1f}%", r["attack"]])
    return grid(table) + "\nattack gain: the strongest server-side attack's PSNR over the class-mean guess " \
                         "(0 dB = the labels alone; docs/privacy.md)"


def front_figure(rows: list[dict[str, Any]], text: str):
    """x: attack gain over the class-mean guess (dB, left = more private), y: fleet accuracy."""
    import matplotlib  # imported on use (slow to import), with the file-only backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 6.0), layout="constrained")
    curves = [c for c in dict.fromkeys(r["curve"] for r in rows) if c != "mark"]
    for i, c in enumerate(curves):
        pts = [r for r in rows if r["curve"] == c]
        color = plt.cm.tab10(i % 10)
        xs, ys = [r["gain_db"] for r in pts], [100 * r["accuracy"] for r in pts]
        ax.errorbar(xs, ys, xerr=[[x - r["gain_db_min"] for x, r in zip(xs, pts)],
                                  [r["gain_db_max"] - x for x, r in zip(xs, pts)]],
                    yerr=[[y - 100 * r["accuracy_min"] for y, r in zip(ys, pts)],
                          [100 * r["accuracy_max"] - y for y, r in zip(ys, pts)]],
                    fmt="o-", color=color, capsize=2, elinewidth=0.8, label=c)
        for x, y, r in zip(xs, ys, pts):
            # one label row per curve, so values of curves that share a point do not print over each other
            ax.annotate(f"{r['value']}", (x, y), textcoords="offset points", xytext=(5, 4 + 9 * i), fontsize=7,
                        color=color)
    for r in (r for r in rows if r["curve"] == "mark"):
        ax.plot([r["gain_db"]], [100 * r["accuracy"]], "*", ms=15, color="k", zorder=5)
        ax.annotate(str(r["value"]), (r["gain_db"], 100 * r["accuracy"]), textcoords="offset points",
                    xytext=(6, -10), fontsize=8)
    ax.axvline(0.0, color="0.5", linestyle=":", linewidth=1)
    ax.set_xlabel("strongest server-side attack: PSNR gain over the class-mean guess (dB; left = more private)")
    ax.set_ylabel("fleet accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(text, fontsize=8)
    if curves:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def load_marks(paths: list[str]) -> dict[str, FleetConfig]:
    """--mark CONFIG: whole configs drawn as labelled stars."""
    from fleet.config import resolve_config_path

    out = {}
    for p in paths:
        cfg = FleetConfig.from_toml(resolve_config_path(p))
        out[Path(p).stem] = copy.deepcopy(cfg)
    return out
