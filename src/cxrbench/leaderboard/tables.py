"""Paper-layout leaderboards from stored runs: one row per class with its N, an "Average" row, a column pair per
method, cells "mean [low, high]" as in the papers' tables; mIoU and AUC in percent. Markdown, LaTeX (booktabs,
through pandas' Styler) and CSV (numbers, for further analysis)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.benchmark.summary import RunSummary
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
    """Rows (classes), method columns and, per (class, method, metric), the stored {"mean", "low", "high"}.

    `protocol` is the scoring protocol of every run in the table; `manifests` is set (column -> dataset manifest
    sha256) only when runs on different versions of the dataset were put side by side on request.
    """

    dataset: str
    classes: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    counts: dict[str, str]
    cells: dict[tuple[str, str, str], dict[str, Any] | None]
    protocol: str = "cxrbench"
    manifests: dict[str, str] = field(default_factory=dict)

    def header(self, method: str) -> str:
        """A column's name, marked with its dataset manifest when the table mixes manifests."""
        return f"{method} [data {self.manifests[method][:8]}]" if self.manifests else method

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

    def footnote(self) -> str:
        """One line saying how the table was scored (printed under it)."""
        line = f"Scored with the {self.protocol} protocol (docs/protocol.md)."
        if self.manifests:
            line += " Columns marked [data ...] were scored on different versions of the dataset."
        return line


def _check_comparable(runs: Sequence[RunSummary], dataset: str, allow_mixed: bool) -> dict[str, str]:
    """Refuse runs that cannot share a table: other protocols always, other dataset manifests unless
    `allow_mixed` (then their manifests are returned, to mark the columns)."""
    protocols = sorted({r.protocol for r in runs})
    if len(protocols) > 1:
        by = "; ".join(f"{p}: {', '.join(r.name for r in runs if r.protocol == p)}" for p in protocols)
        raise CxrbenchError(
            f"the runs on '{dataset}' were scored with different protocols ({by}); tabulate one at a time with "
            f"--protocol"
        )
    versions = sorted({r.identity.scorer_version for r in runs})
    if len(versions) > 1:
        old = [r.name for r in runs if r.identity.scorer_version != versions[-1]]
        raise CxrbenchError(
            f"the runs on '{dataset}' were scored by different scorer versions ({', '.join(map(str, versions))}); "
            f"rerun {', '.join(old)} (cached heatmaps are reused)"
        )
    manifests = {r.name: r.identity.manifest_sha256 for r in runs}
    if len(set(manifests.values())) > 1:
        if not allow_mixed:
            groups = sorted({m[:8] for m in manifests.values()})
            raise CxrbenchError(
                f"the runs on '{dataset}' used different versions of the dataset (manifests {', '.join(groups)}: "
                f"other annotations, split, limit or images); rerun them on the same data, pick comparable runs "
                f"with --methods, or pass --allow-mixed to show them apart"
            )
        return manifests
    return {}


def build_leaderboard(
    runs: Sequence[RunSummary],
    dataset: str | None = None,
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    allow_mixed: bool = False,
    protocol: str | None = None,
) -> Leaderboard:
    """Select the stored runs of one dataset (and runs by name, in the given order; of one scoring protocol)
    into a table."""
    unknown = [m for m in metrics if m not in METRIC_STYLE]
    if unknown:
        raise CxrbenchError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_STYLE)}")
    if protocol is not None:
        runs = [r for r in runs if r.protocol == protocol]
        if not runs:
            raise CxrbenchError(f"no stored run was scored with the {protocol} protocol")
    datasets = sorted({r.dataset for r in runs})
    if dataset is None:
        if len(datasets) > 1:
            raise CxrbenchError(f"the runs cover several datasets ({', '.join(datasets)}); pick one with --dataset")
        dataset = datasets[0]
    by_method = {r.name: r for r in runs if r.dataset == dataset}
    if not by_method:
        raise CxrbenchError(f"no stored run for dataset '{dataset}'; datasets with runs: {', '.join(datasets)}")
    if methods:
        missing = [m for m in methods if m not in by_method]
        if missing:
            raise CxrbenchError(
                f"no stored run of {', '.join(missing)} on '{dataset}'; runs exist for {', '.join(sorted(by_method))}"
            )
    order = tuple(methods) if methods else tuple(sorted(by_method))
    chosen = [by_method[m] for m in order]
    manifests = _check_comparable(chosen, dataset, allow_mixed)
    if "misses" not in metrics and any(r.output == "boxes" for r in chosen):
        metrics = (*metrics, "misses")
    present = {c for r in chosen for c in r.classes if c != AVERAGE}
    classes = (*[c for c in PATHOLOGIES if c in present], *sorted(present - set(PATHOLOGIES)), AVERAGE)
    counts: dict[str, str] = {}
    cells: dict[tuple[str, str, str], dict[str, Any] | None] = {}
    for cls in classes:
        ns = sorted({by_method[m].classes.get(cls, {}).get("n", 0) for m in order})
        counts[cls] = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
        if len(ns) > 1:
            warnings.warn(f"{cls}: methods were scored on different numbers of pairs ({counts[cls]})", stacklevel=2)
        for m in order:
            row = by_method[m].classes.get(cls, {})
            for metric in metrics:
                cells[(cls, m, metric)] = row.get(metric)
    return Leaderboard(dataset, classes, order, tuple(metrics), counts, cells, chosen[0].protocol, manifests)


def to_markdown(board: Leaderboard, bold_best: bool = False) -> str:
    header = ["Class", "N", *(f"{board.header(m)} {METRIC_STYLE[k][0]}" for m in board.methods for k in board.metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":--", "--:"] + [":-:"] * (len(header) - 2)) + "|"]
    for cls in board.classes:
        cells = []
        for m in board.methods:
            for k in board.metrics:
                text = board.text(cls, m, k)
                cells.append(f"**{text}**" if bold_best and m in board.best(cls, k) else text)
        name = f"**{cls}**" if cls == AVERAGE else cls
        lines.append("| " + " | ".join([name, board.counts[cls], *cells]) + " |")
    return "\n".join([*lines, "", board.footnote()]) + "\n"


def to_latex(board: Leaderboard, bold_best: bool = False) -> str:
    """A booktabs tabular to paste inside a table float; needs \\usepackage{booktabs}."""
    columns = pd.MultiIndex.from_tuples(
        [
            ("Class", ""),
            ("N", ""),
            *((board.header(m), METRIC_STYLE[k][0]) for m in board.methods for k in board.metrics),
        ]
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
                styler = styler.apply(lambda _col, f=flags: f, subset=[(board.header(m), METRIC_STYLE[k][0])])
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
    return "\n".join([f"% {board.footnote()}", *lines]) + "\n"


def to_csv(board: Leaderboard) -> str:
    """Numbers, not text: class, n, then <method>_<metric>[_low|_high] in the table's scale (percent for mIoU)."""
    rows = []
    for cls in board.classes:
        row: dict[str, Any] = {"class": cls, "n": board.counts[cls], "protocol": board.protocol}
        for m in board.methods:
            for k in board.metrics:
                if k == "misses":
                    row[f"{m}_misses"] = board.cells.get((cls, m, k))
                    continue
                value = board.value(cls, m, k) or (math.nan,) * 3
                row.update({f"{m}_{k}": value[0], f"{m}_{k}_low": value[1], f"{m}_{k}_high": value[2]})
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False, float_format="%.6g")


def format_table(board: Leaderboard, fmt: Format = "markdown", bold_best: bool = False) -> str:
    if fmt == "markdown":
        return to_markdown(board, bold_best)
    if fmt == "latex":
        return to_latex(board, bold_best)
    if fmt == "csv":
        return to_csv(board)
    raise CxrbenchError(f"unknown table format {fmt!r}; choose markdown, latex or csv")
