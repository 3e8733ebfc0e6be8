"""The report of one dataset's stored runs as one offline HTML page (docs/figures.md, "Report"): the leaderboard,
the forest plots, the paired comparison matrix, the breakdowns and, per class, galleries of each method's best
and worst pairs. Every number comes from the modules that print it elsewhere (leaderboard.tables,
benchmark.compare, benchmark.breakdown, figures.forest, figures.qualitative); this module only lays them out."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbench import __version__
from cxrbench.benchmark import store
from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.benchmark.summary import RunSummary
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.tables import METRIC_STYLE, Leaderboard, Marks, build_leaderboard
from cxrbench.report import html

BREAKDOWNS = ("box-size", "side", "n-boxes", "prompt-length")
PAGE = "index.html"
PREVIEW_SIDE = 320  # gallery panels are about 200 pixels wide: their arrays are thinned to this many a side


@dataclass(frozen=True)
class ReportOptions:
    """What the report shows: `metrics` in the tables and plots (None: the leaderboard's default for the runs'
    protocol); `gallery` pairs per best/worst gallery, ranked by `gallery_metric`; the bootstrap settings of the
    comparison and the breakdowns."""

    metrics: tuple[str, ...] | None = None
    gallery: int = 2
    gallery_metric: str = "cnr"
    n_resamples: int = 10_000
    seed: int = 0
    dpi: int = 90


def _label(metric: str) -> str:
    return METRIC_STYLE[metric][0]


# ---- sections ----------------------------------------------------------------------------------------------------


def leaderboard_html(board: Leaderboard) -> str:
    """The leaderboard as `cxrbench table --marks` prints it: cells "mean [low, high]", the best mean in bold, the
    second best underlined, reference bounds in italics and never marked."""
    width = len(board.metrics)
    head = [
        [
            ("Class", 1),
            ("N", 1),
            *((board.header(m), width, "bound" if m in board.bounds else "") for m in board.methods),
        ],
        [("", 1), ("", 1), *((_label(k), 1) for _ in board.methods for k in board.metrics)],
    ]
    rows, kinds, marked = [], [], {}
    for i, cls in enumerate(board.classes):
        row = [cls, board.counts[cls]]
        for m in board.methods:
            for k in board.metrics:
                best, second = board.rank(cls, k)
                if m in best or m in second:
                    marked[(i, len(row))] = "best" if m in best else "second"
                row.append(board.text(cls, m, k))
        rows.append(row)
        kinds.append("average" if cls == AVERAGE else "")
    return html.table(head, rows, kinds, marked) + html.paragraph(board.footnote(marks=Marks()))


def forest_html(runs: Sequence[RunSummary], options: ReportOptions) -> str:
    from cxrbench.figures.forest import forest_plot

    names = [r.name for r in runs]
    images = [
        html.image(html.png_uri(forest_plot(runs, metric, names), options.dpi), f"forest plot of {_label(metric)}")
        for metric in options.metrics
    ]
    return '<div class="plots">' + "\n".join(images) + "</div>"


def _difference(row: pd.Series, metric: str) -> str:
    _, scale, decimals = METRIC_STYLE[metric]
    if math.isnan(row["diff"]):
        return "--"
    text = f"{row['diff'] * scale:+.{decimals}f}"
    if not math.isnan(row["low"]):
        text += f" [{row['low'] * scale:+.{decimals}f}, {row['high'] * scale:+.{decimals}f}]"
    p = row["p"]
    return text + ("" if math.isnan(p) else " p<0.001" if p < 0.001 else f" p={p:.3f}")


def comparison_html(runs: Sequence[RunSummary], options: ReportOptions) -> str:
    """Per metric, a matrix of the Average row's paired difference row method - column method, its interval and
    p-value (`compare.paired_bootstrap` with each column as the baseline)."""
    from cxrbench.benchmark.compare import footnote, paired_bootstrap

    if len(runs) < 2:
        return html.paragraph("One run: nothing to compare.")
    names = [r.name for r in runs]
    results = {base: paired_bootstrap(runs, base, options.metrics, options.n_resamples, options.seed) for base in names}
    parts = []
    for metric in options.metrics:
        cells = {}
        for base, result in results.items():
            average = result.rows[(result.rows["class"] == AVERAGE) & (result.rows["metric"] == metric)]
            for _, row in average.iterrows():
                cells[(row["method"], base)] = _difference(row, metric)
        head = [[(f"{_label(metric)}: row - column", 1), *((n, 1) for n in names)]]
        rows = [[a, *("" if a == b else cells[(a, b)] for b in names)] for a in names]
        parts.append(html.heading(_label(metric)) + html.table(head, rows))
    first = next(iter(results.values()))
    parts.append(
        html.paragraph(
            "Cells: the Average row's difference row - column, its interval and two-sided p-value. "
            + footnote(first)
            + " Per class: cxrbench compare."
        )
    )
    return "\n".join(parts)


def _stratum_text(cell: pd.Series, metric: str) -> str:
    if math.isnan(cell["mean"]):
        return "--"
    _, scale, decimals = METRIC_STYLE[metric]
    mean, low, high = (f"{cell[k] * scale:.{decimals}f}" for k in ("mean", "low", "high"))
    return f"{mean} [{low}, {high}]"


def breakdowns_html(runs: Sequence[RunSummary], options: ReportOptions) -> str:
    """Each breakdown of `benchmark.breakdown` as a table: strata as rows, methods x metrics as columns."""
    from cxrbench.benchmark.breakdown import TITLES, breakdown, caption

    parts = []
    for by in BREAKDOWNS:
        frame = breakdown(runs, by, options.metrics, n_resamples=options.n_resamples, seed=options.seed)
        methods = list(dict.fromkeys(frame["method"]))
        cells = frame.set_index(["stratum", "method", "metric"])
        head = [
            [(TITLES[by], 1), ("N", 1), *((m, len(options.metrics)) for m in methods)],
            [("", 1), ("", 1), *((_label(k), 1) for _ in methods for k in options.metrics)],
        ]
        rows = [
            [
                frame.attrs["labels"][s],
                str(frame.attrs["counts"][s]),
                *(_stratum_text(cells.loc[(s, m, k)], k) for m in methods for k in options.metrics),
            ]
            for s in frame.attrs["labels"]
        ]
        parts.append(html.heading(TITLES[by]) + html.table(head, rows) + html.paragraph(caption(frame)))
    return "\n".join(parts)


def _one_column(row: Any, column: int) -> Any:
    """`row` reduced to one run's heatmap and scores."""
    return dataclasses.replace(row, heatmaps=(row.heatmaps[column],), scores=(row.scores[column],))


def galleries_html(
    runs: Sequence[RunSummary], classes: Sequence[str], samples: Any, options: ReportOptions, device: str | None
) -> str:
    """Per class and heatmap run: its `gallery` best and worst pairs (by `gallery_metric`), each pair drawn with
    every heatmap run's overlay and scores (`figures.qualitative`)."""
    from cxrbench.benchmark.compare import read_scores
    from cxrbench.figures import qualitative as q

    heat = [r for r in runs if r.output != "boxes"]
    if not heat:
        return html.paragraph("No run predicts heatmaps.")
    metrics = tuple(dict.fromkeys((*q.SHOWN_METRICS, options.gallery_metric)))
    scores = {r.name: read_scores(r, metrics) for r in heat}
    chosen: dict[tuple[str, str, str], list[str]] = {}
    for cls in classes:
        for run in heat:
            ranked = [scores[run.name], *(scores[r.name] for r in heat if r is not run)]
            for way in ("best", "worst"):
                chosen[(cls, run.name, way)] = q.select_pairs(
                    ranked, metric=options.gallery_metric, class_name=cls, **{way: options.gallery}
                )
    pair_ids = list(dict.fromkeys(p for ids in chosen.values() for p in ids))
    rows = q.build_rows(heat, samples, pair_ids, metrics, device, [scores[r.name] for r in heat]) if pair_ids else []
    by_id = {row.sample.pair_id: row for row in rows}
    label = _label(options.gallery_metric)
    parts = []
    for cls in classes:
        figures = []
        for column, run in enumerate(heat):
            for way in ("best", "worst"):
                ids = chosen[(cls, run.name, way)]
                what = f"{cls}: the {len(ids)} {way} pair(s) of {run.name} by {label}"
                if ids:  # the image and this run's overlay only: the page grows linearly with the runs
                    own = [_one_column(by_id[p], column) for p in ids]
                    preview = q.draw(own, [run.name], max_side=PREVIEW_SIDE)
                    uri = html.png_uri(preview, options.dpi)
                    figures.append(html.image(uri, what, what))
        body = '<div class="gallery">' + "\n".join(figures) + "</div>" if figures else html.paragraph("No pair.")
        parts.append(html.heading(cls) + body)
    return "\n".join(parts)


# ---- the page ----------------------------------------------------------------------------------------------------


def _guarded(build: Any, problems: list[str]) -> str:
    """A section's HTML, or the one-line reason it cannot be shown (e.g. runs scored by an older cxrbench), which
    is also added to `problems`."""
    try:
        return build()
    except CxrbenchError as exc:
        problems.append(str(exc))
        return html.paragraph(f"Not available: {exc}", "error")


def report_html(
    runs: Sequence[RunSummary],
    dataset: str,
    samples: Any,
    options: ReportOptions = ReportOptions(),
    device: str | None = None,
) -> tuple[str, list[str]]:
    """The page for `runs` (one dataset, protocol and dataset version), in their order, and the reasons of the
    sections that could not be shown."""
    board = build_leaderboard(runs, dataset, [r.name for r in runs], options.metrics)
    options = replace(options, metrics=tuple(m for m in board.metrics if m != "misses"))
    runs = [next(r for r in runs if r.name == m and r.dataset == dataset) for m in board.methods]
    classes = [c for c in board.classes if c != AVERAGE]
    intro = [
        html.paragraph(
            f"{len(runs)} run(s) of {dataset}, {board.protocol} protocol: "
            + "; ".join(f"{r.name} ({r.n_scored} pairs scored, {r.n_errors} errors)" for r in runs)
            + f". Generated by cxrbench {__version__}; metrics as in docs/protocol.md."
        )
    ]
    problems: list[str] = []
    sections = [
        ("leaderboard", "Leaderboard", leaderboard_html(board)),
        ("forest", "Forest plots", _guarded(lambda: forest_html(runs, options), problems)),
        ("comparison", "Paired comparison", _guarded(lambda: comparison_html(runs, options), problems)),
        ("breakdowns", "Breakdowns", _guarded(lambda: breakdowns_html(runs, options), problems)),
        (
            "galleries",
            "Best and worst pairs",
            _guarded(lambda: galleries_html(runs, classes, samples, options, device), problems),
        ),
    ]
    return html.page(f"cxrbench report: {dataset}", intro, sections), problems


def build_report(
    runs_dir: str | os.PathLike[str],
    dataset: str,
    output: str | os.PathLike[str],
    *,
    methods: Sequence[str] | None = None,
    protocol: str | None = None,
    data_root: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    options: ReportOptions = ReportOptions(),
    device: str | None = None,
) -> tuple[Path, list[str]]:
    """Write `<output>/index.html` for the stored runs of `dataset` under `runs_dir` (`methods`: the run names,
    in column order; default every run of the dataset, by name); its path, and why sections were left out."""
    from cxrbench.figures.qualitative import open_run_dataset

    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise CxrbenchError(f"--output {folder} is a file; give a folder for the report")
    found = [r for r in store.find_runs(runs_dir).runs if r.dataset == dataset]
    if protocol is not None:
        found = [r for r in found if r.protocol == protocol]
    if not found:
        raise CxrbenchError(f"no stored run of '{dataset}'" + (f" under the {protocol} protocol" if protocol else ""))
    by_name = {r.name: r for r in found}
    names = list(methods) if methods else sorted(by_name)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise CxrbenchError(f"no stored run of {', '.join(missing)} on '{dataset}'; runs: {', '.join(sorted(by_name))}")
    runs = [by_name[n] for n in names]
    samples = {s.pair_id: s for s in open_run_dataset(runs[0], data_root, dataset_options)}
    text, problems = report_html(runs, dataset, samples, options, device)
    folder.mkdir(parents=True, exist_ok=True)
    store.write_atomic(folder / PAGE, text)
    return folder / PAGE, problems
