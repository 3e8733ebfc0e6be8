"""Paper-layout leaderboards from stored runs: one row per class with its N, an "Average" row, a column pair
per method, cells "mean [low, high]" (SPEC 6); mIoU and AUC in percent. Markdown, LaTeX (booktabs, through
pandas' Styler) and CSV (numbers, for further analysis)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.errors import CxrbenchError

Format = Literal["markdown", "latex", "csv"]
# metric -> (header label, scale, decimals)
METRIC_STYLE: dict[str, tuple[str, float, int]] = {
    "cnr": ("CNR", 1.0, 2),
    "cnr_signed": ("signed CNR", 1.0, 2),
    "miou": ("mIoU (%)", 100.0, 1),
    "auc": ("AUC (%)", 100.0, 1),
    "auc_binned": ("AUC-5 (%)", 100.0, 1),
    "misses": ("no box", 1.0, 0),  # box methods: pairs without a predicted box (a count, no interval)
}
DEFAULT_METRICS = ("cnr", "miou")


@dataclass(frozen=True)
class Leaderboard:
    """Rows (classes), method columns and, per (class, method, metric), the stored {"mean", "low", "high"}."""

    dataset: str
    classes: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    counts: dict[str, str]
    cells: dict[tuple[str, str, str], dict[str, Any] | None]

    def value(self, cls: str, method: str, metric: str) -> tuple[float, float, float] | None:
        cell = self.cells.get((cls, method, metric))
        if not isinstance(cell, dict) or cell.get("mean") is None:
            return None
        scale = METRIC_STYLE[metric][1]
        return cell["mean"] * scale, cell["low"] * scale, cell["high"] * scale

    def text(self, cls: str, method: str, metric: str) -> str:
        if metric == "misses":
            count = self.cells.get((cls, method, metric))
            return "--" if count is None else str(count)
        value = self.value(cls, method, metric)
        if value is None:
            return "--"
        decimals = METRIC_STYLE[metric][2]
        mean, low, high = (f"{v:.{decimals}f}" for v in value)
        return f"{mean} [{low}, {high}]"

    def best(self, cls: str, metric: str) -> set[str]:
        """Methods with the highest mean (as printed) for this class and metric; empty with one method."""
        decimals = METRIC_STYLE[metric][2]
        if metric == "misses":
            return set()
        means = {m: round(v[0], decimals) for m in self.methods if (v := self.value(cls, m, metric)) is not None}
        if len(means) < 2:
            return set()
        top = max(means.values())
        return {m for m, v in means.items() if v == top}


def build_leaderboard(
    runs: Sequence[dict[str, Any]],
    dataset: str | None = None,
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> Leaderboard:
    """Select the stored run summaries of one dataset (and methods, in the given order) into a table."""
    unknown = [m for m in metrics if m not in METRIC_STYLE]
    if unknown:
        raise CxrbenchError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_STYLE)}")
    datasets = sorted({r["dataset"] for r in runs})
    if dataset is None:
        if len(datasets) > 1:
            raise CxrbenchError(f"the runs cover several datasets ({', '.join(datasets)}); pick one with --dataset")
        dataset = datasets[0]
    by_method = {r["method"]: r for r in runs if r["dataset"] == dataset}
    if not by_method:
        raise CxrbenchError(f"no stored run for dataset '{dataset}'; datasets with runs: {', '.join(datasets)}")
    if methods:
        missing = [m for m in methods if m not in by_method]
        if missing:
            raise CxrbenchError(
                f"no stored run of {', '.join(missing)} on '{dataset}'; runs exist for {', '.join(sorted(by_method))}"
            )
    order = tuple(methods) if methods else tuple(sorted(by_method))
    if "misses" not in metrics and any(by_method[m].get("config", {}).get("output") == "boxes" for m in order):
        metrics = (*metrics, "misses")
    present = {c for m in order for c in by_method[m]["classes"] if c != AVERAGE}
    classes = (*[c for c in PATHOLOGIES if c in present], *sorted(present - set(PATHOLOGIES)), AVERAGE)
    counts: dict[str, str] = {}
    cells: dict[tuple[str, str, str], dict[str, Any] | None] = {}
    for cls in classes:
        ns = sorted({by_method[m]["classes"].get(cls, {}).get("n", 0) for m in order})
        counts[cls] = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
        if len(ns) > 1:
            warnings.warn(f"{cls}: methods were scored on different numbers of pairs ({counts[cls]})", stacklevel=2)
        for m in order:
            row = by_method[m]["classes"].get(cls, {})
            for metric in metrics:
                cells[(cls, m, metric)] = row.get(metric)
    return Leaderboard(dataset, classes, order, tuple(metrics), counts, cells)


def to_markdown(board: Leaderboard, bold_best: bool = False) -> str:
    header = ["Class", "N", *(f"{m} {METRIC_STYLE[k][0]}" for m in board.methods for k in board.metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":--", "--:"] + [":-:"] * (len(header) - 2)) + "|"]
    for cls in board.classes:
        cells = []
        for m in board.methods:
            for k in board.metrics:
                text = board.text(cls, m, k)
                cells.append(f"**{text}**" if bold_best and m in board.best(cls, k) else text)
        name = f"**{cls}**" if cls == AVERAGE else cls
        lines.append("| " + " | ".join([name, board.counts[cls], *cells]) + " |")
    return "\n".join(lines) + "\n"


def to_latex(board: Leaderboard, bold_best: bool = False) -> str:
    """A booktabs tabular to paste inside a table float; needs \\usepackage{booktabs}."""
    columns = pd.MultiIndex.from_tuples(
        [("Class", ""), ("N", ""), *((m, METRIC_STYLE[k][0]) for m in board.methods for k in board.metrics)]
    )
    rows = [
        [cls, board.counts[cls], *(board.text(cls, m, k) for m in board.methods for k in board.metrics)]
        for cls in board.classes
    ]
    frame = pd.DataFrame(rows, columns=columns)
    styler = frame.style.hide(axis="index").format_index(escape="latex", axis=1).format(escape="latex")
    if bold_best:
        for m in board.methods:
            for k in board.metrics:
                flags = ["font-weight: bold" if m in board.best(cls, k) else "" for cls in board.classes]
                styler = styler.apply(lambda _col, f=flags: f, subset=[(m, METRIC_STYLE[k][0])])
    width = len(board.metrics)
    body = styler.to_latex(
        hrules=True, multicol_align="c", column_format="lr" + "c" * (width * len(board.methods)), convert_css=True
    )
    lines = body.splitlines()
    # booktabs finishing: rules under each method's header group, and a rule above the Average row.
    rules = " ".join(f"\\cmidrule(lr){{{3 + i * width}-{2 + (i + 1) * width}}}" for i in range(len(board.methods)))
    top = lines.index("\\toprule")
    lines.insert(top + 2, rules)
    average = next(i for i, line in enumerate(lines) if line.startswith(AVERAGE + " &"))
    lines.insert(average, "\\midrule")
    return "\n".join(lines) + "\n"


def to_csv(board: Leaderboard) -> str:
    """Numbers, not text: class, n, then <method>_<metric>[_low|_high] in the table's scale (percent for mIoU)."""
    rows = []
    for cls in board.classes:
        row: dict[str, Any] = {"class": cls, "n": board.counts[cls]}
        for m in board.methods:
            for k in board.metrics:
                if k == "misses":
                    row[f"{m}_misses"] = board.cells.get((cls, m, k))
                    continue
                value = board.value(cls, m, k) or (math.nan,) * 3
                row.update({f"{m}_{k}": value[0], f"{m}_{k}_low": value[1], f"{m}_{k}_high": value[2]})
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False, float_format="%.6g")


def render(board: Leaderboard, fmt: Format = "markdown", bold_best: bool = False) -> str:
    if fmt == "markdown":
        return to_markdown(board, bold_best)
    if fmt == "latex":
        return to_latex(board, bold_best)
    if fmt == "csv":
        return to_csv(board)
    raise CxrbenchError(f"unknown table format {fmt!r}; choose markdown, latex or csv")
