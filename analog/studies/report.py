"""Terminal tables, results.json and PNG plots for the studies (one place, so every study looks alike)."""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Sample mean and (n-1) standard deviation; std is 0 for a single value."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values: got an empty sequence, must hold at least one number")
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1)
    return m, math.sqrt(var)


def fmt_mean_std(values: Sequence[float], digits: int = 3, scale: float = 1.0) -> str:
    m, s = mean_std([v * scale for v in values])
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> str:
    """A plain fixed-width table (no dependency), right-aligned numbers, left-aligned text."""
    str_rows = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in str_rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str]) -> str:
        out = []
        for c, w in zip(cells, widths):
            numeric = c[:1].isdigit() or c[:1] in "-+." and c[1:2].isdigit()
            out.append(" " + (c.rjust(w) if numeric else c.ljust(w)) + " ")
        return "|" + "|".join(out) + "|"

    parts = []
    if title:
        parts.append(title)
    parts += [sep, line(list(headers)), sep] + [line(r) for r in str_rows] + [sep]
    return "\n".join(parts)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None  # JSON has no NaN/inf
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)  # never leave a half-written results.json behind
    return path


MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*")
FEW_POINTS = 30   # series with at most this many points get markers: each measurement is visible


def build_figure(panels: Sequence[Mapping[str, Any]], suptitle: str = "", ncols: int = 3):
    """The matplotlib Figure of ``line_plot`` (not saved), so tests can inspect what a reader sees.

    Panels: {"title", "xlabel", "ylabel", "logy"?, "integer_x"?, "series": [{"label", "x", "y", "std"?,
    "ls"?}]}. A shaded band shows ``std`` where given; series with few points get markers (one shape
    per label, hollow and of decreasing size so that coinciding curves stay visible); one legend for
    the whole figure, outside the panels, so it hides no data."""
    # matplotlib on use (start-up time); the Agg backend must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = max(1, len(panels))
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    labels = list(dict.fromkeys(s["label"] for p in panels for s in p.get("series", [])))
    style = {lab: (MARKERS[i % len(MARKERS)], f"C{i % 10}", 8.0 - 4.0 * i / max(1, len(labels) - 1))
             for i, lab in enumerate(labels)}
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows + 0.6 + 0.12 * len(labels)),
                             squeeze=False, layout="constrained")
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes.flat, panels):
        for s in panel.get("series", []):
            x, y = list(s["x"]), list(s["y"])
            marker, colour, size = style[s["label"]]
            few = len(x) <= FEW_POINTS
            (line,) = ax.plot(x, y, label=s["label"], lw=1.4, ls=s.get("ls", "-"), color=colour,
                              marker=marker if few else None, ms=size, mfc="none", mew=1.3)
            handles.setdefault(s["label"], line)
            if s.get("std") is not None:
                lo = [a - b for a, b in zip(y, s["std"])]
                hi = [a + b for a, b in zip(y, s["std"])]
                ax.fill_between(x, lo, hi, alpha=0.2, color=colour)
        if panel.get("logy"):
            ax.set_yscale("log")
        if panel.get("integer_x"):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel.get("title", ""), fontsize=10)
        ax.set_xlabel(panel.get("xlabel", ""))
        ax.set_ylabel(panel.get("ylabel", ""))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    width_pt = fig.get_figwidth() * 72
    if handles:
        entry_pt = 40 + 5.0 * max(len(lab) for lab in handles)       # marker + text at 8 pt
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=8,
                   ncol=max(1, min(len(handles), int(0.95 * width_pt // entry_pt))))
    if suptitle:
        fig.suptitle(textwrap.fill(suptitle, width=int(width_pt / 5.8)), fontsize=10)
    return fig


def line_plot(path: Path, panels: Sequence[Mapping[str, Any]], suptitle: str = "",
              ncols: int = 3) -> Path:
    """Save ``build_figure(panels, suptitle, ncols)`` as a PNG."""
    import matplotlib.pyplot as plt  # on use (start-up time); build_figure has chosen the backend

    fig = build_figure(panels, suptitle, ncols)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
