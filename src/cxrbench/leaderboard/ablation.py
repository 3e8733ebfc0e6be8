"""Ablation tables: one row per configuration of one method, the options that vary as columns, then the mean
of each metric per class and for the Average (as the zero-shot paper's Tables II and III; docs/ablations.md)."""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.benchmark.summary import RunSummary
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.tables import (
    METRIC_STYLE,
    Fit,
    Format,
    Leaderboard,
    build_leaderboard,
    fit_to_line,
    latex_escape,
)


@dataclass(frozen=True)
class Ablation:
    """The leaderboard of one method's runs, with the method options that differ between them."""

    method: str
    board: Leaderboard
    varied: tuple[str, ...]
    options: dict[str, dict[str, Any]]  # run name -> {varied key: value}

    def mean(self, run: str, cls: str, metric: str) -> float | None:
        value = self.board.value(cls, run, metric)
        return None if value is None else value[0]


def _display(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def build_ablation(
    runs: Sequence[RunSummary],
    dataset: str | None,
    method: str,
    metrics: Sequence[str] | None = None,
    protocol: str | None = None,
) -> Ablation:
    """The stored runs of `method` (by their identity, whatever their names) on `dataset`, in name order;
    `metrics` as for build_leaderboard."""
    chosen = [
        r
        for r in runs
        if r.identity.method == method
        and (dataset is None or r.dataset == dataset)
        and (protocol is None or r.protocol == protocol)
    ]
    if not chosen:
        methods = sorted({r.identity.method for r in runs if dataset is None or r.dataset == dataset})
        where = "" if protocol is None else f" scored with the {protocol} protocol"
        raise CxrbenchError(f"no stored run of method {method!r}{where}; runs exist for {', '.join(methods) or 'none'}")
    if len({r.dataset for r in chosen}) == 1:
        _check_one_manifest(chosen)
    names = sorted(r.name for r in chosen)
    board = build_leaderboard(chosen, dataset, names, metrics, protocol=protocol)
    configs = {r.name: r.identity.method_config for r in chosen}
    keys = sorted({k for config in configs.values() for k in config})
    varied = tuple(
        k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs.values()}) > 1
    )
    options = {name: {k: configs[name].get(k) for k in varied} for name in names}
    return Ablation(method, board, varied, options)


def _data(run: RunSummary) -> str:
    """What decided the run's pairs, as the run recorded it: limit, dataset options, data root."""
    options = run.settings.get("options", {}).get("dataset") or {}
    parts = [f"limit {run.identity.limit}" if run.identity.limit is not None else "no limit"]
    parts += [f"{k}={_display(v)}" for k, v in sorted(options.items())]
    if run.settings.get("data_root"):
        parts.append(f"data root {run.settings['data_root']}")
    return ", ".join(parts)


def rerun_command(run: RunSummary, data: RunSummary) -> str:
    """The `cxrbench run` that stores `run` again, with its method options, on the data `data` was scored on."""
    words = ["cxrbench", "run", "-m", run.method, "-d", run.dataset]
    if data.settings.get("data_root"):
        words += ["--data-root", str(data.settings["data_root"])]
    for key, value in sorted((data.settings.get("options", {}).get("dataset") or {}).items()):
        words += ["-O", f"{key}={_display(value)}"]
    if data.identity.limit is not None:
        words += ["--limit", str(data.identity.limit)]
    for key, value in sorted((run.settings.get("options", {}).get("method") or {}).items()):
        words += ["-o", f"{key}={_display(value)}"]
    if run.protocol != "cxrbench":
        words += ["--protocol", run.protocol]
    if run.path is not None:
        words += ["--out", str(run.path.parent.parent.parent)]
    return shlex.join([*words, "--name", run.name, "--overwrite"])


def _check_one_manifest(runs: Sequence[RunSummary]) -> None:
    """Refuse runs of one dataset scored on different versions of its data, naming the runs of each version
    and the commands that rerun the smaller groups on the data of the largest (ties: by name)."""
    groups: dict[str, list[RunSummary]] = {}
    for run in sorted(runs, key=lambda r: r.name):
        groups.setdefault(run.identity.manifest_sha256, []).append(run)
    if len(groups) < 2:
        return
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0].name))
    reference = ordered[0][0]
    described = "; ".join(
        f"{', '.join(r.name for r in g)} ({_data(g[0])}, data {g[0].identity.manifest_sha256[:8]})" for g in ordered
    )
    others = [r for g in ordered[1:] for r in g]
    commands = "; ".join(f"`{rerun_command(r, reference)}`" for r in others)
    raise CxrbenchError(
        f"the runs of {reference.method} on '{reference.dataset}' were scored on different versions of the dataset, "
        f"which one ablation cannot compare: {described}. Rerun {', '.join(r.name for r in others)} on the data "
        f"of {reference.name}: {commands} (or rerun them all, if the files changed since)"
    )


def _frame(ablation: Ablation) -> pd.DataFrame:
    board = ablation.board
    rows = []
    for run in board.methods:
        row: dict[Any, Any] = {("Run", ""): run}
        row.update({(k, ""): _display(ablation.options[run][k]) for k in ablation.varied})
        for cls in board.classes:
            for metric in board.metrics:
                mean = ablation.mean(run, cls, metric)
                decimals = METRIC_STYLE[metric][2]
                row[(cls, METRIC_STYLE[metric][0])] = "--" if mean is None else f"{mean:.{decimals}f}"
        rows.append(row)
    return pd.DataFrame(rows, columns=pd.MultiIndex.from_tuples(list(rows[0])))


def to_markdown(ablation: Ablation) -> str:
    frame = _frame(ablation)
    header = [f"{a} {b}".strip() for a, b in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":--"] * len(header)) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([*lines, "", _note(ablation)]) + "\n"


def _note(ablation: Ablation) -> str:
    board = ablation.board
    return (
        f"Ablation of {ablation.method} on {board.dataset} (N = {board.counts[AVERAGE]} pairs): means over the "
        f"pairs, scored with the {board.protocol} protocol; --format csv adds each mean's bootstrap interval."
    )


def to_latex(ablation: Ablation, fit: Fit = "textwidth") -> str:
    """A table float (\\usepackage{booktabs,graphicx}) with caption and label: options, then a column group per
    class; with fit="textwidth" scaled down to the line width when wider (as the leaderboard's)."""
    frame = _frame(ablation)
    fixed = 1 + len(ablation.varied)
    styler = frame.style.hide(axis="index").format_index(escape="latex", axis=1).format(escape="latex")
    body = styler.to_latex(
        hrules=True, multicol_align="c", column_format="l" * fixed + "c" * (len(frame.columns) - fixed)
    )
    tabular = body.rstrip("\n").splitlines()
    label = re.sub(r"[^A-Za-z0-9-]+", "-", f"{ablation.board.dataset}-{ablation.method}").strip("-")
    lines = [
        "% cxrbench ablation table: needs \\usepackage{booktabs,graphicx}",
        "\\begin{table}[tbp]",
        "\\centering",
        f"\\caption{{{latex_escape(_note(ablation))}}}",
        f"\\label{{tab:cxrbench-ablation-{label}}}",
        *(fit_to_line(tabular) if fit == "textwidth" else tabular),
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def to_csv(ablation: Ablation) -> str:
    """Numbers: run, the varied options, then <class>_<metric>[_low|_high] in the table's scale."""
    board = ablation.board
    rows = []
    for run in board.methods:
        row: dict[str, Any] = {"run": run, **{k: _display(v) for k, v in ablation.options[run].items()}}
        for cls in board.classes:
            for metric in board.metrics:
                value = board.value(cls, run, metric) or (math.nan,) * 3
                row.update(
                    dict(zip((f"{cls}_{metric}", f"{cls}_{metric}_low", f"{cls}_{metric}_high"), value, strict=True))
                )
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False, float_format="%.6g")


def format_ablation(ablation: Ablation, fmt: Format = "markdown", fit: Fit = "textwidth") -> str:
    if fmt == "latex":
        return to_latex(ablation, fit)
    formats = {"markdown": to_markdown, "csv": to_csv}
    if fmt not in formats:
        raise CxrbenchError(f"unknown table format {fmt!r}; choose markdown, latex or csv")
    return formats[fmt](ablation)
