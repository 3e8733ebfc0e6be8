"""Paper-layout leaderboards from stored runs (docs/results.md, "Tables"): classes as rows and a column group per
method, or methods as rows and a column group per class; cells "mean [low, high]", "mean ± half-width" or the
mean; mIoU and AUC in percent. Markdown, LaTeX (a complete booktabs + siunitx float) and CSV (numbers).

Bounds (the oracle, the centre Gaussian, the location prior and any method declaring `bound = True`) are
reference rows: set apart, in italics, never ranked. `marks` bolds the best and underlines the second best mean
per (class, metric) among the other methods, with a dagger where the best is significantly better
(cxrbench/leaderboard/marks.py).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.benchmark.summary import RunSummary
from cxrbench.errors import CxrbenchError

Format = Literal["markdown", "latex", "csv"]
CellStyle = Literal["ci", "pm", "mean"]
Layout = Literal["classes", "methods"]
Fit = Literal["textwidth", "none"]
Float = Literal["table", "table*"]
# metric -> (header label, scale, decimals); every metric but `misses` is better when higher.
METRIC_STYLE: dict[str, tuple[str, float, int]] = {
    "cnr": ("CNR", 1.0, 2),
    "cnr_signed": ("signed CNR", 1.0, 2),
    "miou": ("mIoU (%)", 100.0, 1),
    "auc": ("AUC (%)", 100.0, 1),
    "auc_binned": ("AUC-5 (%)", 100.0, 1),
    "misses": ("no box", 1.0, 0),  # box methods: pairs without a predicted box (a count, no interval, not ranked)
}
# What `cxrbench run` prints and `cxrbench table` shows by default (see default_metrics).
DEFAULT_METRICS = ("cnr", "miou", "auc")
# Built-in reference methods, bounds for runs stored before summaries recorded `settings["bound"]`.
BUILT_IN_BOUNDS = frozenset({"oracle-gaussian", "center-gaussian", "lut-prior"})
LATEX_PACKAGES = ("booktabs", "siunitx", "graphicx")


def default_metrics(protocol: str) -> tuple[str, ...]:
    """CNR, mIoU and AUC; under the published protocol the binned AUC, the one the published tables report."""
    return tuple("auc_binned" if m == "auc" and protocol == "published" else m for m in DEFAULT_METRICS)


def is_bound(run: RunSummary) -> bool:
    """Whether a run is a reference bound: as its method declared (summary settings "bound"), else for runs
    stored before that was recorded, whether its method is one of the built-in bounds."""
    declared = run.settings.get("bound")
    return declared if isinstance(declared, bool) else run.identity.method in BUILT_IN_BOUNDS


@dataclass(frozen=True)
class Marks:
    """Marks to draw: bold best, underlined second best; `daggers` holds the (class, metric) cells whose best is
    significantly better than the second best, and `test` says how that was tested (None: not tested)."""

    daggers: frozenset[tuple[str, str]] = frozenset()
    test: str | None = None


@dataclass(frozen=True)
class Leaderboard:
    """Rows (classes), method columns and, per (class, method, metric), the stored {"mean", "low", "high"}.

    `protocol` is the scoring protocol of every run in the table; `manifests` is set (column -> dataset manifest
    sha256) only when runs on different versions of the dataset were put side by side on request. `methods` lists
    the ranked methods first, then the `bounds`; `n_resamples` and `confidence` are the runs' bootstrap settings
    (None when they differ).
    """

    dataset: str
    classes: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    counts: dict[str, str]
    cells: dict[tuple[str, str, str], dict[str, Any] | None]
    protocol: str = "cxrbench"
    manifests: dict[str, str] = field(default_factory=dict)
    bounds: frozenset[str] = frozenset()
    n_resamples: int | None = None
    confidence: float | None = None

    @property
    def ranked(self) -> tuple[str, ...]:
        """The methods that compete for the marks (every method but the bounds)."""
        return tuple(m for m in self.methods if m not in self.bounds)

    def header(self, method: str) -> str:
        """A column's name, marked with its dataset manifest when the table mixes manifests."""
        return f"{method} [data {self.manifests[method][:8]}]" if self.manifests else method

    def value(self, cls: str, method: str, metric: str) -> tuple[float, float, float] | None:
        """(mean, low, high) in the table's scale; NaN for a missing bound, None without a mean."""
        cell = self.cells.get((cls, method, metric))
        if not isinstance(cell, dict) or cell.get("mean") is None:
            return None
        scale = METRIC_STYLE[metric][1]
        low, high = (math.nan if cell.get(k) is None else cell[k] * scale for k in ("low", "high"))
        return cell["mean"] * scale, low, high

    def parts(self, cls: str, method: str, metric: str, cell: CellStyle = "ci") -> list[str] | None:
        """The numbers a cell prints, as text: [mean, low, high], [mean, half-width] or [mean]; None: no value."""
        if metric == "misses":
            count = self.cells.get((cls, method, metric))
            return None if count is None else [str(count)]
        value = self.value(cls, method, metric)
        if value is None:
            return None
        mean, low, high = value
        numbers = {"ci": [mean, low, high], "pm": [mean, (high - low) / 2], "mean": [mean]}[cell]
        decimals = METRIC_STYLE[metric][2]
        return [f"{v:.{decimals}f}" if math.isfinite(v) else "--" for v in numbers]

    def text(self, cls: str, method: str, metric: str, cell: CellStyle = "ci") -> str:
        parts = self.parts(cls, method, metric, cell)
        return "--" if parts is None else _join(parts, cell if metric != "misses" else "mean")

    def rank(self, cls: str, metric: str) -> tuple[frozenset[str], frozenset[str]]:
        """(best, second best): the ranked methods whose mean, as printed, is the highest and the next lower one
        (ties share a mark). Nothing is marked for `misses`, nor with fewer than 2 ranked values."""
        if metric == "misses":
            return frozenset(), frozenset()
        means = {m: float(p[0]) for m in self.ranked if (p := self.parts(cls, m, metric, "mean")) is not None}
        if len(means) < 2:
            return frozenset(), frozenset()
        levels = sorted(set(means.values()), reverse=True)
        best = frozenset(m for m, v in means.items() if v == levels[0])
        second = frozenset(m for m, v in means.items() if len(levels) > 1 and v == levels[1])
        return best, second

    def sentences(self, cell: CellStyle = "ci", marks: Marks | None = None, paper: bool = False) -> list[str]:
        """What the table shows and how it was made, one sentence each (the footnote, the LaTeX caption)."""
        where = "" if paper else " (docs/protocol.md)"
        out = [f"Scored with the {self.protocol} protocol{where}."]
        if self.manifests:
            out.append("Columns marked [data ...] were scored on different versions of the dataset.")
        confidence = "" if self.confidence is None else f"{self.confidence:.0%} "
        resamples = "" if self.n_resamples is None else f", {self.n_resamples} resamples"
        interval = f"{confidence}percentile bootstrap interval over the pairs{resamples}"
        out.append(
            {
                "ci": f"Cells: mean [{interval}];",
                "pm": f"Cells: mean ± half the width of the {interval};",
                "mean": "Cells: mean over the pairs;",
            }[cell]
            + " the Average is the unweighted mean of the class means"
            + (" (stratified bootstrap)." if cell != "mean" else ".")
        )
        if any(METRIC_STYLE[k][1] == 100.0 for k in self.metrics):
            out.append("mIoU and AUC in percent.")
        if self.bounds:
            out.append(f"In italics: reference bounds ({', '.join(sorted(self.bounds))}), not ranked.")
        if marks is not None:
            out += self._mark_sentences(marks)
        return out

    def _mark_sentences(self, marks: Marks) -> list[str]:
        """The marks the table shows, and only those: bold and underline where some cell has them, the dagger
        where some cell has it (else, when some best was tested, that none is significant); nothing when no
        cell is marked (all bounds, or a single ranked method)."""
        ranks = [self.rank(cls, metric) for cls in self.classes for metric in self.metrics]
        shown = [
            text
            for text, found in (
                ("Bold: best mean", any(best for best, _ in ranks)),
                ("underlined: second best", any(second for _, second in ranks)),
            )
            if found
        ]
        if not shown:
            return []
        excepted = "; bounds excepted" if self.bounds else ""
        out = [f"{', '.join(shown)} (as printed{excepted})."]
        tested = any(len(best) == 1 and second for best, second in ranks)  # cells whose best the test compares
        if marks.test is not None and marks.daggers:
            out.append(f"Dagger: the best is significantly better than the second best ({marks.test}).")
        elif marks.test is not None and tested:
            out.append(f"No best is significantly better than the second best ({marks.test}).")
        return out

    def footnote(self, cell: CellStyle = "ci", marks: Marks | None = None) -> str:
        """One line saying how the table was scored and what it shows (printed under it)."""
        return " ".join(self.sentences(cell, marks))


def _join(parts: Sequence[str], cell: CellStyle) -> str:
    if cell == "ci" and len(parts) == 3:
        return f"{parts[0]} [{parts[1]}, {parts[2]}]"
    if cell == "pm" and len(parts) == 2:
        return f"{parts[0]} ± {parts[1]}"
    return parts[0]


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


def _unique(names: Sequence[str] | None, option: str) -> tuple[str, ...] | None:
    """Names in order, each once (a repeated one is dropped with a note); an explicitly empty list is refused."""
    if names is None:
        return None
    if not names:
        raise CxrbenchError(f"{option} names nothing; give comma-separated names or leave the option out")
    unique = tuple(dict.fromkeys(names))
    if len(unique) < len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        warnings.warn(f"{option} names {', '.join(repeated)} more than once; shown once", stacklevel=3)
    return unique


def _setting(runs: Sequence[RunSummary], key: str) -> Any:
    """A bootstrap setting shared by every run, else None."""
    values = {r.settings.get(key) for r in runs}
    return values.pop() if len(values) == 1 else None


def build_leaderboard(
    runs: Sequence[RunSummary],
    dataset: str | None = None,
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    allow_mixed: bool = False,
    protocol: str | None = None,
) -> Leaderboard:
    """Select the stored runs of one dataset (and runs by name, in the given order, bounds last; of one scoring
    protocol) into a table. `metrics` defaults to default_metrics(protocol of the runs)."""
    methods = _unique(methods, "--methods")
    metrics = _unique(metrics, "--metrics")
    unknown = [m for m in metrics or () if m not in METRIC_STYLE]
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
    named = methods or tuple(sorted(by_method))
    bounds = frozenset(m for m in named if is_bound(by_method[m]))
    order = (*[m for m in named if m not in bounds], *[m for m in named if m in bounds])
    chosen = [by_method[m] for m in order]
    manifests = _check_comparable(chosen, dataset, allow_mixed)
    metrics = metrics or default_metrics(chosen[0].protocol)
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
    return Leaderboard(
        dataset,
        classes,
        order,
        tuple(metrics),
        counts,
        cells,
        chosen[0].protocol,
        manifests,
        bounds,
        _setting(chosen, "n_resamples"),
        _setting(chosen, "confidence"),
    )


# ---- layouts: which (class, method) each (row, column group) shows -----------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """A layout: `head` titles the first columns, `rows` and column `groups` (each one column per metric);
    `at(row, group)` is the (class, method) of a cell, `row_head(row)` the row's first cells; `rule_before` holds
    the rows that start a new block (the Average; the first bound). Names are plain text, to be styled."""

    head: tuple[str, ...]
    rows: tuple[str, ...]
    groups: tuple[str, ...]
    at: Callable[[str, str], tuple[str, str]]
    row_head: Callable[[str], list[str]]
    group_title: Callable[[str], str]
    rule_before: frozenset[str]


def _grid(board: Leaderboard, layout: Layout) -> _Grid:
    if layout == "classes":
        return _Grid(
            ("Class", "N"),
            board.classes,
            board.methods,
            lambda row, group: (row, group),
            lambda row: [row, board.counts[row]],
            board.header,
            frozenset({AVERAGE}),
        )
    if layout == "methods":
        first_bound = [m for m in board.methods if m in board.bounds][:1] if board.ranked else []
        return _Grid(
            ("Method",),
            board.methods,
            board.classes,
            lambda row, group: (group, row),
            lambda row: [board.header(row)],
            lambda group: f"{group} (N = {board.counts[group]})",
            frozenset(first_bound),
        )
    raise CxrbenchError(f"unknown table layout {layout!r}; choose classes or methods")


def _marks_of(board: Leaderboard, marks: Marks | None, cls: str, method: str, metric: str) -> tuple[bool, bool, bool]:
    """(bold, underline, dagger) of one cell."""
    if marks is None:
        return False, False, False
    best, second = board.rank(cls, metric)
    return method in best, method in second, method in best and (cls, metric) in marks.daggers


# ---- Markdown -----------------------------------------------------------------------------------------------------


def _markdown_cell(board: Leaderboard, cls: str, method: str, metric: str, cell: CellStyle, marks: Marks | None) -> str:
    parts = board.parts(cls, method, metric, cell)
    if parts is None:
        return "--"
    bold, underline, dagger = _marks_of(board, marks, cls, method, metric)
    mean = f"**{parts[0]}**" if bold else f"<u>{parts[0]}</u>" if underline else parts[0]
    return _join([mean + ("†" if dagger else ""), *parts[1:]], cell if metric != "misses" else "mean")


def to_markdown(
    board: Leaderboard, marks: Marks | None = None, cell: CellStyle = "ci", layout: Layout = "classes"
) -> str:
    """A Markdown table (bounds in italics, the Average in bold) and the footnote under it."""
    grid = _grid(board, layout)

    def style(name: str, text: str) -> str:
        return f"*{text}*" if name in board.bounds else f"**{text}**" if name == AVERAGE else text

    labels = [METRIC_STYLE[k][0] for k in board.metrics]
    header = [*grid.head, *(f"{style(g, grid.group_title(g))} {label}" for g in grid.groups for label in labels)]
    align = [":--", "--:"][: len(grid.head)] + [":-:"] * (len(header) - len(grid.head))
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in grid.rows:
        first = grid.row_head(row)
        first[0] = style(row, first[0])
        cells = [_markdown_cell(board, *grid.at(row, g), k, cell, marks) for g in grid.groups for k in board.metrics]
        lines.append("| " + " | ".join([*first, *cells]) + " |")
    return "\n".join([*lines, "", board.footnote(cell, marks)]) + "\n"


# ---- LaTeX --------------------------------------------------------------------------------------------------------

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "≤": r"$\leq$",
    ">": r"$>$",
    "<": r"$<$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _number_format(texts: Iterable[str]) -> str:
    """siunitx `table-format` that holds every number: sign, integer digits, decimals (e.g. -2.1)."""
    numbers = [t for t in texts if t != "--"]
    sign = "-" if any(t.startswith("-") for t in numbers) else ""
    digits = max((len(t.lstrip("-").partition(".")[0]) for t in numbers), default=1)
    decimals = max((len(t.partition(".")[2]) for t in numbers), default=0)
    return f"{sign}{digits}.{decimals}" if decimals else f"{sign}{digits}"


def _formats(board: Leaderboard, cell: CellStyle) -> dict[tuple[str, int], str]:
    """(metric, part) -> table-format over the whole table, so that a metric's numbers align in every column."""
    texts: dict[tuple[str, int], list[str]] = {}
    for cls in board.classes:
        for m in board.methods:
            for k in board.metrics:
                for i, text in enumerate(board.parts(cls, m, k, cell) or ()):
                    texts.setdefault((k, i), []).append(text)
    return {key: _number_format(values) for key, values in texts.items()}


def _latex_cell(
    board: Leaderboard,
    cls: str,
    method: str,
    metric: str,
    cell: CellStyle,
    marks: Marks | None,
    formats: dict[tuple[str, int], str],
) -> str:
    """Each number in a `\\tablenum` of the metric's table-format (decimal points aligned down the column, the
    brackets too); the mean bold or underlined, a dagger slot after it where the metric has daggers."""
    parts = board.parts(cls, method, metric, cell)
    if parts is None:
        return "--"
    numbers = [
        t if t == "--" else f"\\tablenum[table-format={formats[(metric, i)]}]{{{t}}}" for i, t in enumerate(parts)
    ]
    bold, underline, dagger = _marks_of(board, marks, cls, method, metric)
    mean = f"\\textbf{{{numbers[0]}}}" if bold else f"\\underline{{{numbers[0]}}}" if underline else numbers[0]
    if marks is not None and any(k == metric for _, k in marks.daggers):
        mean += "$^{\\dagger}$" if dagger else "\\phantom{$^{\\dagger}$}"
    kind = cell if metric != "misses" else "mean"
    return _join([mean, *numbers[1:]], kind).replace(" ± ", " $\\pm$ ")


def _label(dataset: str) -> str:
    return "tab:cxrbench-" + re.sub(r"[^A-Za-z0-9-]+", "-", dataset).strip("-")


def _latex_header(board: Leaderboard, grid: _Grid) -> list[str]:
    """The header rows: (in the classes layout with bounds, a "Methods" / "Bounds" tier), the group titles and
    the metric labels, with booktabs rules under each group."""
    width, fixed = len(board.metrics), len(grid.head)

    def rule(first: int, count: int) -> str:  # under `count` groups from group index `first`
        return f"\\cmidrule(lr){{{fixed + 1 + first * width}-{fixed + (first + count) * width}}}"

    def title(group: str) -> str:
        text = latex_escape(grid.group_title(group))
        return f"\\textit{{{text}}}" if group in board.bounds else text

    lines = []
    n_ranked = sum(g not in board.bounds for g in grid.groups)
    if grid.groups == board.methods and 0 < n_ranked < len(grid.groups):
        n_bounds = len(grid.groups) - n_ranked
        tier = ["" for _ in grid.head]
        tier += [
            f"\\multicolumn{{{width * n_ranked}}}{{c}}{{Methods}}",
            f"\\multicolumn{{{width * n_bounds}}}{{c}}{{\\textit{{Bounds (not ranked)}}}}",
        ]
        lines += [" & ".join(tier) + " \\\\", f"{rule(0, n_ranked)} {rule(n_ranked, n_bounds)}"]
    groups = [f"\\multicolumn{{{width}}}{{c}}{{{title(g)}}}" for g in grid.groups]
    lines.append(" & ".join([*grid.head, *groups]) + " \\\\")
    lines.append(" ".join(rule(i, 1) for i in range(len(grid.groups))))
    labels = [latex_escape(METRIC_STYLE[k][0]) for k in board.metrics]
    lines.append(" & ".join(["" for _ in grid.head] + labels * len(grid.groups)) + " \\\\")
    return lines


def _tabular(board: Leaderboard, cell: CellStyle, marks: Marks | None, layout: Layout) -> list[str]:
    grid = _grid(board, layout)
    formats = _formats(board, cell)
    columns = "lr"[: len(grid.head)] + "c" * len(board.metrics) * len(grid.groups)
    lines = [f"\\begin{{tabular}}{{{columns}}}", "\\toprule", *_latex_header(board, grid), "\\midrule"]
    for row in grid.rows:
        if row in grid.rule_before:
            lines.append("\\midrule")
        head = [latex_escape(text) for text in grid.row_head(row)]
        if row in board.bounds:
            head[0] = f"\\textit{{{head[0]}}}"
        cells = [
            _latex_cell(board, *grid.at(row, g), k, cell, marks, formats) for g in grid.groups for k in board.metrics
        ]
        lines.append(" & ".join([*head, *cells]) + " \\\\")
    return [*lines, "\\bottomrule", "\\end{tabular}"]


def fit_to_line(tabular: Sequence[str]) -> list[str]:
    """LaTeX lines that typeset `tabular` at its natural width, or scaled down to \\linewidth (graphicx's
    \\resizebox) when it is wider: measured in a savebox, so a narrow table is never blown up."""
    return [
        "\\ifdefined\\cxrbenchbox\\else\\newsavebox{\\cxrbenchbox}\\fi",
        "\\sbox{\\cxrbenchbox}{%",
        *tabular[:-1],
        tabular[-1] + "}%",
        "\\ifdim\\wd\\cxrbenchbox>\\linewidth",
        "\\resizebox{\\linewidth}{!}{\\usebox{\\cxrbenchbox}}%",
        "\\else",
        "\\usebox{\\cxrbenchbox}%",
        "\\fi",
    ]


def to_latex(
    board: Leaderboard,
    marks: Marks | None = None,
    cell: CellStyle = "ci",
    layout: Layout = "classes",
    fit: Fit = "textwidth",
    float_env: Float = "table",
) -> str:
    """A complete float: caption (dataset, protocol, N, interval method, marks), label and a booktabs tabular whose
    numbers siunitx's \\tablenum aligns on the decimal point. With fit="textwidth" the tabular is measured and,
    only when wider than the line (\\linewidth: the text width, or the column width for a `table` in a
    two-column document), scaled down to it with graphicx's \\resizebox; fit="none" leaves its natural width."""
    if fit not in ("textwidth", "none"):
        raise CxrbenchError(f"unknown --fit {fit!r}; choose textwidth or none")
    if float_env not in ("table", "table*"):
        raise CxrbenchError(f"unknown float {float_env!r}; choose table or table*")
    n_classes = len(board.classes) - 1
    sentences = latex_escape(" ".join(board.sentences(cell, marks, paper=True))).replace("Dagger:", "$^{\\dagger}$:")
    caption = (
        f"Phrase grounding on {latex_escape(board.dataset)}: $N = {board.counts[AVERAGE]}$ pairs in {n_classes} "
        f"classes. {sentences}"
    )
    tabular = _tabular(board, cell, marks, layout)
    if fit == "textwidth":
        tabular = fit_to_line(tabular)
    lines = [
        f"% cxrbench table: needs \\usepackage{{{','.join(LATEX_PACKAGES)}}} (siunitx v3 or later)",
        f"% {board.footnote(cell, marks)}",
        f"\\begin{{{float_env}}}[tbp]",
        "\\centering",
        "\\sisetup{detect-weight=true, mode=text}",
        f"\\caption{{{caption}}}",
        f"\\label{{{_label(board.dataset)}}}",
        *tabular,
        f"\\end{{{float_env}}}",
    ]
    return "\n".join(lines) + "\n"


# ---- CSV ----------------------------------------------------------------------------------------------------------


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


def format_table(
    board: Leaderboard,
    fmt: Format = "markdown",
    marks: Marks | None = None,
    cell: CellStyle = "ci",
    layout: Layout = "classes",
    fit: Fit = "textwidth",
    float_env: Float = "table",
) -> str:
    """The table in one format; CSV holds the numbers only (no marks, one layout)."""
    if cell not in ("ci", "pm", "mean"):
        raise CxrbenchError(f"unknown --cell {cell!r}; choose ci, pm or mean")
    if fmt == "markdown":
        return to_markdown(board, marks, cell, layout)
    if fmt == "latex":
        return to_latex(board, marks, cell, layout, fit, float_env)
    if fmt == "csv":
        return to_csv(board)
    raise CxrbenchError(f"unknown table format {fmt!r}; choose markdown, latex or csv")
