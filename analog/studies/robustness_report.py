"""Tables, checks and plots of the robustness study (from its results dict, so a saved results.json
can be re-rendered)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from analog.studies.report import format_table, line_plot

DAY = 86400.0
TIME_LABELS = {1.0: "1 s", 3600.0: "1 h", DAY: "1 day", 30 * DAY: "1 month", 365 * DAY: "1 year"}
#: what the issue calls a clear margin: HWA ahead of digital training by this much accuracy
CLEAR_MARGIN = 0.02
#: a drift loss below this is within the chip-to-chip spread: nothing for compensation to recover
DRIFT_LOSS = 0.02


def _t(t: float) -> str:
    return TIME_LABELS.get(float(t), f"{t:g} s")


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def _at(series: dict[str, Any], axis: str, x: float) -> tuple[float, float] | None:
    xs = [float(v) for v in series[axis]]
    if float(x) not in xs:
        return None
    i = xs.index(float(x))
    return series["mean"][i], series["std"][i]


def tables(results: dict[str, Any]) -> str:
    models = results["models"]
    any_entry = next(iter(models.values()))
    etas = any_entry["digital"]["eta"]["eta"]
    times = any_entry["digital"]["time"]["compensated"]["t_seconds"]
    parts = []
    rows = [[name, e["description"], f"{e['digital']['test_accuracy']:.3f}", f"{e['hwa']['test_accuracy']:.3f}"]
            for name, e in models.items()]
    parts.append(format_table(["model", "what", "digital", "HWA"], rows,
                              "Test accuracy after training (digital evaluation)"))
    rows = []
    for name, e in models.items():
        for training in ("digital", "hwa"):
            s = e[training]["eta"]
            rows.append([name, training] + [_pm(m, sd) for m, sd in zip(s["mean"], s["std"])])
    seeds = len(any_entry["digital"]["eta"]["runs"][0])
    parts.append(format_table(["model", "training"] + [f"eta={x:g}" for x in etas], rows,
                              f"Accuracy vs weight noise eta (std = eta * std(W) per layer; mean ± std over {seeds} chips)"))
    rows = []
    for name, e in models.items():
        for training in ("digital", "hwa"):
            for key in ("uncompensated", "compensated"):
                s = e[training]["time"][key]
                rows.append([name, training, key] + [_pm(m, sd) for m, sd in zip(s["mean"], s["std"])])
    seeds = len(any_entry["digital"]["time"]["compensated"]["runs"][0])
    parts.append(format_table(["model", "training", "drift comp."] + [_t(t) for t in times], rows,
                              f"Accuracy vs time after programming, PCMLike + reference periphery ({seeds} chips)"))
    rows = []
    strengths = any_entry["digital"]["noise_kind"]["weight"]["strength"]
    for name, e in models.items():
        for training in ("digital", "hwa"):
            nk = e[training]["noise_kind"]
            for i, st in enumerate(strengths):
                rows.append([name, training, f"{st:g}"] + [_pm(nk[k]["mean"][i], nk[k]["std"][i])
                                                           for k in ("input", "output", "weight")])
    parts.append(format_table(["model", "training", "strength", "input only", "output only", "weight only"], rows,
                              "Noise on inputs vs outputs vs weights (std = strength * std of the tensor, per layer)"))
    found = results.get("checks")
    if found:
        parts.append(format_table(["check", "model", "holds", "measured"],
                                  [[c["check"], c["model"], "yes" if c["holds"] else "NO", c["measured"]] for c in found],
                                  "Checks"))
    return "\n\n".join(parts)


def _eta_checks(name: str, e: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    digital = e["digital"]["eta"]
    top = max(float(x) for x in digital["eta"])
    for eta in dict.fromkeys((0.1, top)):
        d, h = _at(digital, "eta", eta), _at(e["hwa"]["eta"], "eta", eta)
        if d and h:
            gap, lost = h[0] - d[0], digital["mean"][0] - d[0]
            out.append({"check": f"HWA beats digital at eta={eta:g} by >= {CLEAR_MARGIN}", "model": name,
                        "eta": eta, "holds": gap >= CLEAR_MARGIN, "value": gap, "digital_loss": lost,
                        "measured": f"HWA - digital = {gap:+.3f} (digital loses {lost:.3f} vs eta 0)"})
    for training in ("digital", "hwa"):
        s = e[training]["eta"]
        falls = all(b <= a + 2 * max(sa, sb) + 0.01
                    for a, b, sa, sb in zip(s["mean"], s["mean"][1:], s["std"], s["std"][1:]))
        drop = s["mean"][0] - s["mean"][-1]
        out.append({"check": "accuracy falls as eta grows (within noise)", "model": f"{name} {training}",
                    "holds": falls and drop > 0.02, "value": drop,
                    "measured": f"eta {s['eta'][0]:g} -> {s['eta'][-1]:g}: {s['mean'][0]:.3f} -> {s['mean'][-1]:.3f}"})
    return out


def _time_checks(name: str, training: str, t: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    last = max(float(x) for x in t["uncompensated"]["t_seconds"])
    for at in dict.fromkeys((DAY, last)):
        c, u = _at(t["compensated"], "t_seconds", at), _at(t["uncompensated"], "t_seconds", at)
        if not (c and u) or at == float(t["uncompensated"]["t_seconds"][0]):
            continue
        first = t["uncompensated"]["mean"][0]
        lost, recovered = first - u[0], c[0] - u[0]
        out.append({"check": f"compensation recovers >= half the drift loss at {_t(at)} (where loss >= {DRIFT_LOSS})",
                    "model": f"{name} {training}", "holds": lost < DRIFT_LOSS or recovered >= 0.5 * lost,
                    "value": recovered, "lost": lost,
                    "measured": f"{_t(t['uncompensated']['t_seconds'][0])} {first:.3f}; {_t(at)} {u[0]:.3f} -> {c[0]:.3f}"})
    return out


def _kind_checks(name: str, training: str, nk: dict[str, Any]) -> list[dict[str, Any]]:
    """Rasch et al.'s finding, per noise site: does it cost more than weight noise of the same
    relative strength, beyond twice the chip-to-chip spread?"""
    w, sw = nk["weight"]["mean"][-1], nk["weight"]["std"][-1]
    out = []
    for kind in ("input", "output"):
        m, sd = nk[kind]["mean"][-1], nk[kind]["std"][-1]
        out.append({"check": f"Rasch et al.: {kind}-only noise hurts more than weight-only (> 2 std)",
                    "model": f"{name} {training}", "holds": w - m > 2 * max(sw, sd), "value": w - m,
                    "measured": f"strength {nk['weight']['strength'][-1]:g}: {kind} {m:.3f}, weight {w:.3f}"})
    return out


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The study's claims, each measured per model (``holds`` False is reported, not hidden)."""
    out = []
    for name, e in results["models"].items():
        out += _eta_checks(name, e)
        for training in ("digital", "hwa"):
            out += _time_checks(name, training, e[training]["time"])
            out += _kind_checks(name, training, e[training]["noise_kind"])
    return out


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    models = results["models"]
    cfg = results.get("config", {})
    what = (f"train seed {cfg.get('train_seed')}, {len(cfg.get('eta_seeds', []))} / {len(cfg.get('time_seeds', []))} "
            f"chips per point, HWA eta {cfg.get('hwa_eta')}") if cfg else ""
    eta_panels, time_panels = [], []
    for name, e in models.items():
        eta_panels.append({"title": name, "xlabel": "eta (weight noise std / std(W))", "ylabel": "test accuracy",
                           "series": [{"label": training, "x": e[training]["eta"]["eta"],
                                       "y": e[training]["eta"]["mean"], "std": e[training]["eta"]["std"]}
                                      for training in ("digital", "hwa")]})
        series = []
        for training in ("digital", "hwa"):
            for key, ls in (("compensated", "-"), ("uncompensated", "--")):
                s = e[training]["time"][key]
                series.append({"label": f"{training}, {key}", "x": [math.log10(max(t, 1.0)) for t in s["t_seconds"]],
                               "y": s["mean"], "std": s["std"], "ls": ls})
        time_panels.append({"title": name, "xlabel": "log10(seconds after programming)", "ylabel": "test accuracy",
                            "series": series})
    return [line_plot(out / "accuracy_vs_eta.png", eta_panels,
                      f"Robustness study: accuracy vs Gaussian weight noise eta ({what})", ncols=len(eta_panels)),
            line_plot(out / "accuracy_vs_time.png", time_panels,
                      f"Robustness study: accuracy vs time after programming, PCMLike chip ({what})", ncols=len(time_panels))]
