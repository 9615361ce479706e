"""Regenerate the measured figures of README.md and docs/ from one scripted run, over several seeds.

    make figures                                   # seeds 0 1 2 -> runs/figures/figures-<time>/, then docs/
    python scripts/figures.py --seeds 0 1 2 --out runs/figures/x [--only quickstart,sweep] [--no-docs]
    python scripts/figures.py --plan               # print the commands, run nothing
    python scripts/figures.py --aggregate-only --out runs/figures/x [--seeds 0 1 2]   # re-read its runs

Every figure is one `analog-edge` command (the same one README/docs show next to it), run once per
seed as a subprocess; the script reads the run's own report.json / sweep.json and writes
``figures.md`` (per-seed values, mean and min..max across seeds, the command), ``figures.json``, and
the sweep figure aggregated over seeds (``sweep.png`` with min..max bars, ``sweep.csv``,
``sweep_table.txt``). Without ``--no-docs`` those files are copied into docs/. ``--quick`` swaps in a
tiny digits fleet so the plumbing can be checked in seconds (the test does this).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

QUICK_TOML = """[fleet]
name = "figures-quick"
dataset = "digits"
num_clients = 2
backend = "local"
digital = true
[edge.training]
epochs = 1
batch_size = 16
lr = 0.03
[edge.model]
latent_dim = 8
[classifier]
hidden = [16]
epochs = 5
"""


@dataclass
class Job:
    """One figure: a CLI command run per seed, and the numbers read back from its output folder."""

    name: str
    what: str                                       # the figure, as README/docs state it
    argv: list[str]                                 # `analog-edge` arguments, without --seed/--out
    metrics: Callable[[Path], dict[str, float]]
    per_seed: bool = True                           # False: the command takes its seeds itself
    kind: str = "fleet"                             # fleet | sweep | study | front
    docs_files: tuple[tuple[str, str], ...] = ()    # (file of the run folder, its name in docs/)

    def command(self, seed: int | None, out: Path) -> list[str]:
        extra = ["--seed", str(seed)] if self.per_seed and seed is not None else []
        return [sys.executable, "-m", "fleet.cli", *self.argv, *extra, "--out", str(out)]

    def shown(self, seed: int | None, out: Path) -> str:
        """The command as README/docs show it: `analog-edge ...`, an output folder inside the checkout relative."""
        shown_out = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
        return " ".join(["analog-edge", *self.command(seed, shown_out)[3:]])


def _fleet_metrics(out: Path) -> dict[str, float]:
    r = json.loads((out / "report.json").read_text())
    m: dict[str, float] = {"wall_s": r["timings_s"]["total"]}
    lat = r.get("latent")
    if lat:
        m.update(accuracy_pct=100 * lat["accuracy"], client_min_pct=100 * lat["accuracy_spread"]["min"],
                 client_max_pct=100 * lat["accuracy_spread"]["max"], uploaded_kib=lat["bytes_up"] / 1024,
                 raw_over_wire=lat["compression_raw_over_wire"])
    fa = r.get("fedavg")
    if fa:
        m.update(fedavg_accuracy_pct=100 * fa["accuracy"])
    dep = r.get("deploy") or {}
    if "rows" in dep:
        m["deploy as trained_pct"] = 100 * dep["trained_accuracy"]
        for row in dep["rows"]:
            m[f"deploy {row['time']} compensation {'on' if row['compensation'] else 'off'}_pct"] = 100 * row["accuracy"]
    pv = r.get("privacy") or {}
    if "dcor" in pv:
        m["dcor"] = pv["dcor"]
        m["privacy leaked_pairs"] = pv["leaked_pairs"]
    for side in ("attack", "attack_anchor_aligned", "leaked_client_held_out", "mean_image", "own_decoder"):
        for key, value in (pv.get(side) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                m[f"privacy {side} {key}"] = value
    suite = pv.get("server_attack") or {}
    for key in ("psnr", "ssim", "reid", "gain_db", "ssim_gain"):     # the strongest server-side attack
        if key in suite:
            m[f"privacy server_attack {key}"] = suite[key]
    for row in suite.get("rows", []):                                # every attack and baseline of the suite
        for key in ("psnr", "ssim", "reid"):
            m[f"privacy suite {row['attack']} {key}"] = row[key]
    defense = (lat or {}).get("defense") or {}
    if isinstance(defense.get("epsilon"), (int, float)):
        m["privacy epsilon per row"] = defense["epsilon"]
    return m


def _front_metrics(out: Path) -> dict[str, float]:
    """Each point of an accuracy-vs-privacy front: its seed mean (the command takes the seeds itself)."""
    r = json.loads((out / "front.json").read_text())
    return {f"{row['curve']}={row['value']} {key}": row[key] for row in r["rows"]
            for key in ("accuracy", "gain_db", "ssim", "reid") if isinstance(row.get(key), (int, float))}


def _sweep_metrics(out: Path) -> dict[str, float]:
    r = json.loads((out / "sweep.json").read_text())
    m = {f"{row['label']} d={row['latent_dim']} {row['bits']}-bit": 100 * row["accuracy"] for row in r["rows"]}
    raw = (r.get("references") or {}).get("raw_pixels")
    if raw:
        m["raw-pixel MLP"] = 100 * raw["accuracy"]
    fa = (r.get("references") or {}).get("fedavg")
    if fa:
        m["FedAvg"] = 100 * fa["accuracy"]
    return m


def _alignment_metrics(out: Path) -> dict[str, float]:
    rows = json.loads((out / "alignment.json").read_text())["rows"]
    return {f"{name} accuracy_pct": 100 * r["accuracy"] for name, r in rows.items()}


def _robustness_metrics(out: Path) -> dict[str, float]:
    """Per model: what digital training loses at eta = 0.1 and 1, and HWA - digital there."""
    r = json.loads((out / "results.json").read_text())
    m: dict[str, float] = {"study_s": r["seconds"]}
    for c in r["checks"]:
        if "eta" in c:                               # the HWA-vs-digital checks, one per model and eta
            m[f"{c['model']} digital loss, eta={c['eta']:g}"] = c["digital_loss"]
            m[f"{c['model']} HWA - digital, eta={c['eta']:g}"] = c["value"]
    return m


def _study_metrics(out: Path) -> dict[str, float]:
    r = json.loads((out / "results.json").read_text())
    m: dict[str, float] = {f"{part} s": sec for part, sec in r["seconds"].items()}
    for row in (r.get("mnist") or {}).get("summary", []):
        m[f"MNIST gamma_res={row['gamma_res']:g} {row['algorithm']}"] = 100 * row["accuracy_mean"]
    for row in (r.get("fixed_point") or {}).get("summary", []):
        m[f"fixed point {row['label']}"] = 100 * row["accuracy_mean"]
    return m


def jobs(quick: bool, config_dir: Path) -> list[Job]:
    """Every figure of README.md and docs/ this script regenerates (quick: a tiny stand-in of each kind)."""
    if quick:
        cfg = str(config_dir / "quick.toml")
        return [Job("fleet", "a tiny digits fleet (plumbing check)", ["fleet", "--config", cfg], _fleet_metrics),
                Job("sweep", "a one-point sweep (plumbing check)",
                    ["sweep", "--config", cfg, "--latent-dims", "4", "--bits", "8", "--no-references"],
                    _sweep_metrics, kind="sweep")]
    q = "configs/quickstart.toml"
    return [
        Job("quickstart", "docs/accuracy: the quickstart (make demo), analog", ["fleet", "--config", q], _fleet_metrics),
        Job("quickstart-digital", "docs/accuracy: the quickstart with --digital", ["fleet", "--config", q, "--digital"],
            _fleet_metrics),
        Job("privacy", "docs/fleet Privacy: analog", ["fleet", "--config", q, "--backend", "local", "--privacy"],
            _fleet_metrics),
        Job("privacy-digital", "docs/fleet Privacy: digital",
            ["fleet", "--config", q, "--backend", "local", "--privacy", "--digital"], _fleet_metrics),
        Job("private", "docs/privacy: the private preset (configs/private.toml) and its strongest attack",
            ["fleet", "--config", "configs/private.toml", "--backend", "local", "--privacy"], _fleet_metrics),
        Job("privacy-front", "docs/privacy, README: accuracy vs privacy, bits and latent size, the preset marked",
            ["privacy-front", "--config", q, "--seeds", "0", "1", "2", "--defense", "edge.wire.bits=8,4",
             "--defense", "edge.model.latent_dim=32,8", "--mark", "configs/private.toml"], _front_metrics,
            per_seed=False, kind="front", docs_files=(("front.png", "privacy_front_quickstart.png"),)),
        Job("dirichlet", "docs/accuracy: the quickstart under Dirichlet(0.5) label skew, analog",
            ["fleet", "--config", q, "--backend", "local", "--partitioner", "dirichlet"], _fleet_metrics),
        Job("dirichlet-digital", "docs/accuracy: the quickstart under Dirichlet(0.5) label skew, digital",
            ["fleet", "--config", q, "--backend", "local", "--partitioner", "dirichlet", "--digital"], _fleet_metrics),
        Job("alignment", "docs: every alignment option with MixedPrecision (--compare-alignment)",
            ["fleet", "--config", q, "--compare-alignment"], _alignment_metrics),
        Job("sweep", "docs/accuracy: compression vs accuracy (docs/sweep.png)",
            ["sweep", "--config", "configs/sweep_mnist.toml", "--latent-dims", "4,8,16,32,64", "--bits", "32,8,4",
             "--fedavg"], _sweep_metrics, kind="sweep"),
        Job("study", "docs/accuracy, docs/studies: response functions (its own seeds 0 1 2)",
            ["study", "response-functions", "--seeds", "0", "1", "2", "--epochs", "5"], _study_metrics,
            per_seed=False, kind="study"),
        Job("robustness", "docs/robustness: inference robustness (its own chips, seeds 0-4; docs/robustness_*.png)",
            ["study", "robustness"], _robustness_metrics, per_seed=False, kind="study",
            docs_files=(("accuracy_vs_eta.png", "robustness_accuracy_vs_eta.png"),
                        ("accuracy_vs_time.png", "robustness_accuracy_vs_time.png"))),
        Job("robustness-quick", "docs/robustness: hardware-aware training, --quick, per train seed (its own chips)",
            ["study", "robustness", "--quick"], _robustness_metrics, kind="study"),
        Job("deploy", "docs/robustness: the quickstart fleet on inference chips, 1 h / 1 day / 1 year (2 clients)",
            ["fleet", "--config", q, "--clients", "2", "--backend", "local", "--inference-times", "1h,1d,1y"],
            _fleet_metrics, docs_files=(("deploy_accuracy_vs_time.png", "fleet_deploy_quickstart.png"),)),
        Job("deploy-hwa", "docs/robustness: the fleet trained hardware-aware on inference chips (2 clients)",
            ["fleet", "--config", "configs/inference_hwa.toml", "--clients", "2", "--backend", "local"],
            _fleet_metrics, docs_files=(("deploy_accuracy_vs_time.png", "fleet_deploy_hwa.png"),)),
    ]


@dataclass
class Outcome:
    job: Job
    runs: dict[str, dict[str, float]] = field(default_factory=dict)     # seed label -> metrics
    commands: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def spread(values: list[float]) -> dict[str, float]:
    """Mean, min and max across seeds (the spread README and docs quote)."""
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}


def run(job: Job, seeds: list[int], out: Path, env: dict[str, str]) -> Outcome:
    outcome = Outcome(job)
    for seed in (seeds if job.per_seed else [None]):
        label = "all" if seed is None else f"seed{seed}"
        run_dir = out / job.name / label
        cmd = job.command(seed, run_dir)
        outcome.commands.append(job.shown(seed, run_dir))
        print(f"[figures] {job.name} {label}: {outcome.commands[-1]}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        (run_dir.parent / f"{label}.stderr.txt").write_text(proc.stderr)
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
            outcome.errors.append(f"{label}: exit {proc.returncode}: {last[0]}")
            continue
        _read(outcome, label, run_dir, {"command_wall_s": wall})
    return outcome


def _read(outcome: Outcome, label: str, run_dir: Path, extra: dict[str, float]) -> None:
    try:
        outcome.runs[label] = {**extra, **outcome.job.metrics(run_dir)}
    except (OSError, KeyError, ValueError) as exc:      # the run's own outputs are not as expected
        outcome.errors.append(f"{label}: reading {run_dir}: {type(exc).__name__}: {exc}")


def collect(job: Job, seeds: list[int], out: Path) -> Outcome:
    """The figure's runs already under ``out`` (from this script, possibly several invocations of it
    with ``--only``): a seed folder that is absent was not run; one without its outputs did not finish."""
    outcome = Outcome(job)
    for seed in (seeds if job.per_seed else [None]):
        label = "all" if seed is None else f"seed{seed}"
        run_dir = out / job.name / label
        if run_dir.is_dir():
            outcome.commands.append(job.shown(seed, run_dir))
            _read(outcome, label, run_dir, {})
    return outcome


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for o in outcomes:
        keys = list(dict.fromkeys(k for m in o.runs.values() for k in m))
        summary[o.job.name] = {
            "what": o.job.what, "commands": o.commands, "errors": o.errors,
            "per_seed": o.runs,
            "spread": {k: spread([m[k] for m in o.runs.values() if k in m]) for k in keys},
        }
    return summary


#: what the figures depend on: a change here (committed or not) is a change of the code that ran
CODE_PATHS = ("analog", "common", "protos", "edge_client", "server", "fleet", "configs", "scripts", "pyproject.toml")


def code_version() -> str:
    """The checkout's commit, and whether the code the figures depend on differs from it, so that
    figures.md says which code made it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS, ":(exclude,glob)**/*.md")
    except (OSError, subprocess.CalledProcessError):
        return "code version unknown (not a git checkout)"
    return f"commit {commit}" + (" with uncommitted code changes" if dirty else "")


def _fmt(value: float) -> str:
    """Two decimals, three for fractions (accuracies in [0, 1], PSNR/SSIM differences)."""
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def format_markdown(summary: dict[str, Any], seeds: list[int]) -> str:
    lines = ["# Measured figures, regenerated", "",
             f"`python scripts/figures.py --seeds {' '.join(map(str, seeds))}` ({time.strftime('%Y-%m-%d')}, "
             f"{code_version()}, {os.cpu_count()} CPUs). Each row: mean over the seeds, min..max across them, "
             "and every seed's value.", ""]
    for name, s in summary.items():
        lines += [f"## {name}: {s['what']}", ""]
        lines += [f"    {c}" for c in s["commands"]] + [""]
        for e in s["errors"]:
            lines.append(f"- FAILED {e}")
        seed_labels = list(s["per_seed"])
        lines.append("| figure | mean | min..max | " + " | ".join(seed_labels) + " |")
        lines.append("|---|---:|---:|" + "---:|" * len(seed_labels))
        for key, sp in s["spread"].items():
            vals = " | ".join(_fmt(s["per_seed"][lab][key]) if key in s["per_seed"][lab] else "-"
                              for lab in seed_labels)
            lines.append(f"| {key} | {_fmt(sp['mean'])} | {_fmt(sp['min'])}..{_fmt(sp['max'])} | {vals} |")
        lines.append("")
    return "\n".join(lines)


def _seed_of(path: Path) -> int:
    return int(path.parent.name.removeprefix("seed"))


def _seeds_phrase(rows: list[dict[str, Any]]) -> str:
    """Which seeds each point's mean is over: one phrase for the figure's title."""
    groups: dict[tuple[int, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r["seed_list"]), []).append(r)
    if len(groups) == 1:
        (seeds,) = groups
        if len(seeds) == 1:
            return f"seed {seeds[0]}"
        return f"mean of {len(seeds)} seed{'s' * (len(seeds) > 1)} ({', '.join(map(str, seeds))}), bars min..max"
    parts = []
    for seeds, rs in sorted(groups.items(), key=lambda kv: -len(kv[0])):
        dims = ", ".join(map(str, sorted({r["latent_dim"] for r in rs})))
        bits = "/".join(map(str, sorted({r["bits"] for r in rs}, reverse=True)))
        parts.append(f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} at d={dims} {bits}-bit")
    return "mean of " + "; ".join(parts) + "; bars min..max"


def aggregate_sweep(out: Path, seeds: list[int] | None = None) -> list[Path]:
    """One sweep figure over seeds: mean accuracy per (line, d, bits) with min..max bars.

    Every seed folder under ``out/sweep`` counts (``seeds`` None) or only the named ones; a seed
    may have run fewer points than another (the CSV's ``seeds`` column and the title say how many
    each point has). ``vs digital``: the mean over seeds of the point's accuracy minus the digital
    pipeline's at the same (seed, d, bits)."""
    sys.path.insert(0, str(ROOT))
    from fleet.experiments.sweep import plot_sweep  # the project's own plot, fed the seed means

    paths = sorted((out / "sweep").glob("seed*/sweep.json"), key=_seed_of)
    per_seed = {_seed_of(p): json.loads(p.read_text()) for p in paths if seeds is None or _seed_of(p) in seeds}
    if not per_seed:
        return []

    def key(r: dict[str, Any]) -> tuple[str, int, int]:
        return r["label"], r["latent_dim"], r["bits"]

    by_seed = {s: {key(r): r for r in res["rows"]} for s, res in per_seed.items()}
    rows: list[dict[str, Any]] = []
    for k in dict.fromkeys(k for table in by_seed.values() for k in table):
        have = [s for s in per_seed if k in by_seed[s]]
        accs = [by_seed[s][k]["accuracy"] for s in have]
        gaps = [by_seed[s][k]["accuracy"] - by_seed[s][("digital", k[1], k[2])]["accuracy"]
                for s in have if k[0] != "digital" and ("digital", k[1], k[2]) in by_seed[s]]
        rows.append({**by_seed[have[0]][k], "accuracy": statistics.fmean(accs), "seed_min": min(accs),
                     "seed_max": max(accs), "seeds": len(accs), "seed_list": have,
                     "vs_digital": statistics.fmean(gaps) if gaps else None,
                     "recon_mse": statistics.fmean(by_seed[s][k]["recon_mse"] for s in have)})
    refs: dict[str, Any] = {}
    for name in ("raw_pixels", "fedavg"):
        vals = [(s, res["references"][name]) for s, res in per_seed.items() if name in (res.get("references") or {})]
        if vals:
            refs[name] = {**vals[0][1], "accuracy": statistics.fmean(v["accuracy"] for _, v in vals),
                          "seed_list": [s for s, _ in vals]}
    fields = ["label", "device", "algorithm", "latent_dim", "bits", "accuracy", "seed_min", "seed_max", "seeds",
              "vs_digital", "recon_mse", "compression_pixels", "compression_wire", "bytes_per_sample"]
    with (out / "sweep.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in fields})
    table = ["line | d | bits | raw/wire | accuracy mean | min..max over seeds | seeds | vs digital | recon MSE"]

    def gap(r: dict[str, Any]) -> str:
        return "-" if r["vs_digital"] is None else f"{100 * r['vs_digital']:+.1f}"

    table += [f"{r['label']} | {r['latent_dim']} | {r['bits']} | {r['compression_wire']:.1f}x | "
              f"{100 * r['accuracy']:.1f}% | {100 * r['seed_min']:.1f}..{100 * r['seed_max']:.1f}% | "
              f"{','.join(map(str, r['seed_list']))} | {gap(r)} | {r['recon_mse']:.4f}" for r in rows]
    for name, what in (("raw_pixels", "raw-pixel MLP (central, pooled)"), ("fedavg", "FedAvg")):
        if name in refs:
            ref = refs[name]
            extra = (f", {ref['rounds']} rounds, {(ref['bytes_up'] + ref['bytes_down']) / 1024:.0f} KiB both ways"
                     if name == "fedavg" else "")
            seeds = ref["seed_list"]
            table.append(f"{what}: {100 * ref['accuracy']:.1f}% "
                         f"(seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}{extra})")
    (out / "sweep_table.txt").write_text("\n".join(table) + "\n")
    first = next(iter(per_seed.values()))["config"]
    cfg = first.get("fleet", first)
    plot_sweep(rows, refs, out / "sweep.png",
               f"{cfg.get('dataset')}, {cfg.get('num_clients')} clients, {cfg.get('partitioner', 'iid')}, "
               f"alignment {_alignment_label(first.get('alignment', cfg.get('alignment')))};\n{_seeds_phrase(rows)}")
    return [out / "sweep.png", out / "sweep.csv", out / "sweep_table.txt"]


def _alignment_label(table: Any) -> Any:
    """A run's alignment in the compact form: the [alignment] table of its config, or the "+"-joined
    string that configs held before the table (sweep.json files of earlier runs)."""
    if not isinstance(table, dict):
        return table
    parts = [table.get("init", "shared_init"), "anchors" if table.get("anchors") else "none",
             table.get("conditioning", "none")]
    return "+".join(p for p in parts if p != "none") or "none"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/figures.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", help="output folder (default runs/figures/figures-<time>)")
    p.add_argument("--only", default="", help="comma list of figure names (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny digits stand-ins: checks the plumbing in seconds")
    p.add_argument("--no-docs", action="store_true", help="do not copy the figures into docs/")
    p.add_argument("--plan", action="store_true", help="print the commands and exit")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run nothing: re-read the runs already under --out (of one or several earlier "
                        "invocations, e.g. with --only) over --seeds, write figures.md and the sweep figure "
                        "and copy them into docs/ (unless --no-docs)")
    args = p.parse_args(argv)
    if any(s < 0 for s in args.seeds):
        print(f"scripts/figures.py: --seeds: got {args.seeds}, must be integers >= 0", file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "runs" / "figures" / f"figures-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    all_jobs = jobs(args.quick, out / "configs")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in {j.name for j in all_jobs}]
    if unknown:
        print(f"scripts/figures.py: --only: got {unknown[0]!r}, must be one of "
              f"{', '.join(j.name for j in all_jobs)}", file=sys.stderr)
        return 2
    selected = [j for j in all_jobs if not names or j.name in names]
    if args.plan:
        for j in selected:
            for seed in (args.seeds if j.per_seed else [None]):
                label = "all" if seed is None else f"seed{seed}"
                print(j.shown(seed, out / j.name / label))
        return 0
    if args.aggregate_only:
        if not args.out or not out.is_dir():
            print(f"scripts/figures.py: --out: got {args.out!r}, --aggregate-only needs the folder of earlier "
                  "runs of this script", file=sys.stderr)
            return 2
        outcomes = [o for o in (collect(j, args.seeds, out) for j in selected) if o.runs or o.errors]
        if not outcomes:
            print(f"scripts/figures.py: --out: got {args.out!r}, it holds no run of "
                  f"{', '.join(j.name for j in selected)} for --seeds {' '.join(map(str, args.seeds))} "
                  "(<figure>/seed<N>/ or <figure>/all/)", file=sys.stderr)
            return 2
    else:
        out.mkdir(parents=True, exist_ok=True)
        if args.quick:
            (out / "configs").mkdir(exist_ok=True)
            (out / "configs" / "quick.toml").write_text(QUICK_TOML)
        env = dict(os.environ, PYTHONPATH=str(ROOT), FLWR_TELEMETRY_ENABLED="0")
        outcomes = [run(j, args.seeds, out, env) for j in selected]
    write_figures(outcomes, args.seeds, out, copy_to_docs=not args.no_docs and not args.quick)
    return 1 if any(o.errors for o in outcomes) else 0


def write_figures(outcomes: list[Outcome], seeds: list[int], out: Path, copy_to_docs: bool) -> None:
    """figures.md / figures.json, the sweep figure over seeds, and the docs copies of each figure."""
    summary = summarize(outcomes)
    (out / "figures.json").write_text(json.dumps({"seeds": seeds, "figures": summary}, indent=2))
    (out / "figures.md").write_text(format_markdown(summary, seeds))
    written = [(p, p.name) for p in [out / "figures.md"]]
    if any(o.job.kind == "sweep" and o.runs for o in outcomes):
        written += [(p, p.name) for p in aggregate_sweep(out, seeds)]
    for o in outcomes:
        for name, docs_name in o.job.docs_files:
            found = sorted((out / o.job.name).glob(f"*/{name}"))     # seed0, seed1, ...: the first seed's
            if found:
                written.append((found[0], docs_name))
    if copy_to_docs:
        for path, docs_name in written:
            shutil.copy2(path, DOCS / docs_name)
        print(f"[figures] copied {', '.join(name for _, name in written)} into {DOCS}")
    print(f"[figures] {out / 'figures.md'}")

if __name__ == "__main__":
    sys.exit(main())
