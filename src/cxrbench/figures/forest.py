"""The per-class forest plot of stored runs (docs/analysis.md, "Forest plot"): one row per class and an Average
row set apart below a rule, on a shaded band, with a bold label; in each row one marker per method at its mean
with a horizontal bar over its stored interval (summary.json; docs/results.md, "Aggregation"), in the
leaderboard's scale (mIoU and AUC in percent). Drawn on an Agg canvas without pyplot state; PDF and SVG output is
vector, with TrueType (Type 42) fonts in the PDF.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark import store
from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.benchmark.compare import METRICS, check_comparable
from cxrbench.benchmark.summary import RunSummary
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.tables import METRIC_STYLE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = {".pdf": "pdf", ".png": "png", ".svg": "svg"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
SPREAD = 0.6  # the methods' markers of one row spread over this much of the row height
GAP = 0.5  # extra space between the last class and the Average row


def _chosen(runs: Sequence[RunSummary], methods: Sequence[str] | None) -> list[RunSummary]:
    """The runs to draw, in the order of `methods` (default: all, by name); all of one dataset."""
    if not runs:
        raise CxrbenchError("a forest plot needs at least one stored run")
    datasets = sorted({r.dataset for r in runs})
    if len(datasets) > 1:
        raise CxrbenchError(f"the runs cover several datasets ({', '.join(datasets)}); plot one dataset at a time")
    by_name = {r.name: r for r in runs}
    names = list(methods) if methods else sorted(by_name)
    missing = [n for n in names if n not in by_name]
    if missing or len(set(names)) != len(names):
        raise CxrbenchError(
            f"cannot plot {', '.join(missing or names)}: name each run once, from {', '.join(sorted(by_name))}"
        )
    chosen = [by_name[n] for n in names]
    check_comparable(chosen)
    return chosen


def _rows(runs: Sequence[RunSummary]) -> list[str]:
    """The classes of any run, in the published order (others by name), then the Average."""
    present = {c for r in runs for c in r.classes if c != AVERAGE}
    return [*[c for c in PATHOLOGIES if c in present], *sorted(present - set(PATHOLOGIES)), AVERAGE]


def _row_label(runs: Sequence[RunSummary], cls: str) -> str:
    ns = sorted({r.classes[cls]["n"] for r in runs if cls in r.classes})
    return f"{cls} (n={ns[0]})" if len(ns) == 1 else f"{cls} (n={ns[0]}-{ns[-1]})"


def row_positions(n_rows: int) -> list[float]:
    """y of each row's centre, top to bottom: classes at 0, 1, ..., the Average (last) a further GAP down."""
    return [float(i) + (GAP if i == n_rows - 1 else 0.0) for i in range(n_rows)]


def forest_plot(runs: Sequence[RunSummary], metric: str, methods: Sequence[str] | None = None) -> Figure:
    """The forest plot of `metric` for the stored runs (of one dataset, protocol and manifest; `methods` picks
    and orders them by name). A cell without a mean (no defined pair) has no marker."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if metric not in METRICS:
        raise CxrbenchError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    chosen = _chosen(runs, methods)
    rows = _rows(chosen)
    ys = row_positions(len(rows))
    label, scale, _ = METRIC_STYLE[metric]
    k = len(chosen)
    fig = Figure(figsize=(6.4, 1.4 + len(rows) * (0.22 + 0.09 * k)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = colormaps["tab10"]
    for j, run in enumerate(chosen):
        offset = (j - (k - 1) / 2) * SPREAD / max(k - 1, 1) if k > 1 else 0.0
        points = [
            (cell["mean"] * scale, y + offset, cell["low"] * scale, cell["high"] * scale)
            for cls, y in zip(rows, ys, strict=True)
            if (cell := run.classes.get(cls, {}).get(metric)) and cell.get("mean") is not None
        ]
        if not points:
            continue
        x, y, low, high = (list(v) for v in zip(*points, strict=True))
        ax.errorbar(
            x,
            y,
            xerr=[[m - lo for m, lo in zip(x, low, strict=True)], [hi - m for m, hi in zip(x, high, strict=True)]],
            fmt=MARKERS[j % len(MARKERS)],
            color=colours(j % 10),
            markersize=4.5,
            capsize=2.5,
            elinewidth=1.2,
            label=run.name,
        )
    ax.axhline(ys[-2] + (1 + GAP) / 2 if len(ys) > 1 else -0.5, color="0.3", linewidth=0.8)
    ax.axhspan(ys[-1] - 0.45, ys[-1] + 0.45, color="0.92", zorder=0)
    ax.set_yticks(ys, [_row_label(chosen, c) for c in rows])
    ax.get_yticklabels()[-1].set_fontweight("bold")
    ax.set_ylim(ys[-1] + 0.6, -0.6)
    ax.grid(axis="x", color="0.85", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel(label)
    confidences = {r.settings.get("confidence", 0.95) for r in chosen}
    interval = f"{confidences.pop():.0%} bootstrap interval" if len(confidences) == 1 else "stored interval"
    ax.set_title(f"{chosen[0].dataset} ({chosen[0].protocol} protocol): {label}, mean and {interval}", fontsize=9)
    fig.legend(loc="outside lower center", ncols=min(k, 4), frameon=False, fontsize=8)
    return fig


def output_format(output: str | os.PathLike[str]) -> str:
    """The format, "pdf", "png" or "svg", from the file name; anything else is an error naming it."""
    fmt = FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        raise CxrbenchError(f"--output {output}: give a .pdf (papers), .svg or .png (slides) file name")
    return fmt


def save_figure(fig: Figure, output: str | os.PathLike[str], dpi: int = 200) -> Path:
    """Write the figure atomically to a .pdf, .svg or .png file (its folder created). No creation date is
    written, so the same figure gives the same bytes."""
    import matplotlib

    fmt = output_format(output)
    metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}[fmt]
    buffer = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    store.write_atomic(output, buffer.getvalue())
    return output
