"""Breakdowns of stored runs by a property of the pair (docs/analysis.md, "Breakdowns"): per stratum, method and
metric, the mean over the stratum's pairs and its percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13),
computed as the leaderboard computes a class's (`bootstrap.resample_means`, `percentile_interval`), on the pairs
scored by every selected run.

Strata (`BY`):
- `box-size`: terciles of `box_fraction` (scores.csv) over the pairs, cut once for every method at
  q1 = Q(1/3) and q2 = Q(2/3) (numpy's linear quantile): small f <= q1 < medium f <= q2 < large.
- `side`: the patient side the prompt names (`prompt_side`, the rule extractor's locations), or with
  `side_from="boxes"` the stored `box_side`: right, left, bilateral, none.
- `n-boxes`: the pair's ground-truth boxes: 1, 2, 3+ (0 when a pair has none).
- `prompt-length`: the prompt's words (`prompt_words`): 1-2, 3-4, 5+.
- `class`: the pair's class.

Stratum s is resampled from `np.random.default_rng(group_seed(seed, s))`, so `--by class` reproduces a run's
class rows, and a stratum's interval does not depend on which other strata exist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from cxrbench.anatomy.rules import anatomy_locations
from cxrbench.anatomy.vocabulary import PATHOLOGIES, SIDED_LOCATIONS
from cxrbench.benchmark.bootstrap import group_seed, percentile_interval, resample_means
from cxrbench.benchmark.compare import (
    check_bootstrap_options,
    check_comparable,
    common_pairs,
    read_scores,
)
from cxrbench.benchmark.strata import BOX_SIDES
from cxrbench.benchmark.summary import RunSummary
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.tables import DEFAULT_METRICS, METRIC_STYLE, latex_escape

Format = Literal["markdown", "latex", "csv"]
BY: tuple[str, ...] = ("box-size", "side", "n-boxes", "prompt-length", "class")
SIDE_FROM: tuple[str, ...] = ("prompt", "boxes")
COLUMNS = ("stratum", "method", "metric", "mean", "low", "high", "n")
TITLES = {
    "box-size": "Box size",
    "side": "Side",
    "n-boxes": "Boxes",
    "prompt-length": "Prompt words",
    "class": "Class",
}
_WORD = re.compile(r"\S*[^\W_]\S*")  # a whitespace-separated token holding a letter or digit


def prompt_words(prompt: str) -> int:
    """The prompt's words: whitespace-separated tokens holding a letter or a digit ("ill-defined" and "<and>" are
    one word each, a lone "," none)."""
    return len(_WORD.findall(prompt))


def _length_bin(words: int) -> str:
    return "1-2" if words <= 2 else "3-4" if words <= 4 else "5+"


def _location_sides(location: str) -> set[str]:
    """The patient sides a vocabulary location lies on: lingular is left; pulmonary and cardiomegaly none."""
    if location == "lingular":
        return {"left"}
    side = SIDED_LOCATIONS.get(location, ("", ""))[0]
    return {"left", "right"} if side == "bilateral" else {side} - {""}


def prompt_side(prompt: str) -> str:
    """right, left, bilateral (both sides named) or none, from the locations the rule extractor reads in the
    prompt (`anatomy.rules.anatomy_locations`; docs/anatomy.md, section 2)."""
    sides = set().union(*(_location_sides(loc) for loc in anatomy_locations(prompt)))
    if not sides:
        return "none"
    return sides.pop() if len(sides) == 1 else "bilateral"


def tercile_cuts(fractions: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(q1, q2): the 1/3 and 2/3 quantiles (linear interpolation) of the box fractions."""
    q1, q2 = np.quantile(np.asarray(fractions, dtype=np.float64), [1 / 3, 2 / 3])
    return float(q1), float(q2)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.3g} %"


def assign_strata(pairs: pd.DataFrame, by: str, side_from: str = "prompt") -> tuple[pd.Series, dict[str, str]]:
    """Each pair's stratum (a Series on `pairs`' index), and {stratum: label in tables} for the strata present, in
    table order. `pairs` has the scores.csv columns the stratification reads (`needed_columns`)."""
    if by == "box-size":
        fraction = pairs["box_fraction"].to_numpy(np.float64)
        q1, q2 = tercile_cuts(fraction)
        keys = np.where(fraction <= q1, "small", np.where(fraction <= q2, "medium", "large"))
        labels = {
            "small": f"small (≤ {_percent(q1)})",
            "medium": f"medium ({_percent(q1)} - {_percent(q2)})",
            "large": f"large (> {_percent(q2)})",
        }
    elif by == "side":
        keys = pairs["box_side"] if side_from == "boxes" else pairs["prompt"].map(prompt_side)
        labels = {side: side for side in BOX_SIDES}
    elif by == "n-boxes":
        keys = pairs["n_boxes"].map(lambda n: "3+" if n >= 3 else str(int(n)))
        labels = {key: key for key in ("0", "1", "2", "3+")}
    elif by == "prompt-length":
        keys = pairs["prompt"].map(lambda p: _length_bin(prompt_words(p)))
        labels = {key: key for key in ("1-2", "3-4", "5+")}
    elif by == "class":
        keys = pairs["class_name"]
        present = set(keys)
        labels = {c: c for c in (*[c for c in PATHOLOGIES if c in present], *sorted(present - set(PATHOLOGIES)))}
    else:
        raise CxrbenchError(f"unknown breakdown {by!r}; choose {', '.join(BY)}")
    strata = pd.Series(np.asarray(keys, dtype=object), index=pairs.index, name="stratum")
    present = set(strata)
    return strata, {key: label for key, label in labels.items() if key in present}


def needed_columns(by: str, side_from: str = "prompt") -> tuple[str, ...]:
    """The scores.csv columns a breakdown reads besides pair_id, class_name and the metrics."""
    if by not in BY:
        raise CxrbenchError(f"unknown breakdown {by!r}; choose {', '.join(BY)}")
    if side_from not in SIDE_FROM:
        raise CxrbenchError(f"unknown side source {side_from!r}; choose {', '.join(SIDE_FROM)}")
    columns = {
        "box-size": ("box_fraction",),
        "side": ("box_side",) if side_from == "boxes" else ("prompt",),
        "n-boxes": ("n_boxes",),
        "prompt-length": ("prompt",),
        "class": (),
    }
    return columns[by]


def _check_values(frame: pd.DataFrame, column: str, where: str) -> None:
    """Refuse a stratification column with a value the breakdown cannot use, naming the row (1 = header)."""
    values = frame[column]
    if column == "box_fraction":
        numbers = pd.to_numeric(values, errors="coerce")
        bad = ~numbers.between(0, 1)
    elif column == "n_boxes":
        numbers = pd.to_numeric(values, errors="coerce")
        bad = ~(numbers >= 0) | (numbers != numbers.round())
    elif column == "box_side":
        bad = ~values.isin(BOX_SIDES)
    else:  # prompt
        bad = ~values.map(lambda p: isinstance(p, str) and prompt_words(p) > 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CxrbenchError(
            f"{where}, row {row + 2}: {column} {values.iloc[row]!r} cannot be stratified; rerun the run"
        )
    if column in ("box_fraction", "n_boxes"):
        frame[column] = numbers


def _stratum_columns(scores: Mapping[str, pd.DataFrame], joined: pd.DataFrame, columns: Sequence[str]) -> None:
    """Add the stratification columns to `joined` (indexed by pair_id), refusing runs that disagree on them."""
    first = next(iter(scores))
    for name, frame in scores.items():
        table = frame.set_index("pair_id").reindex(joined.index)
        for column in columns:
            if name == first:
                joined[column] = table[column]
                continue
            differs = joined.index[(table[column] != joined[column]).to_numpy()]
            if len(differs):
                pair = differs[0]
                raise CxrbenchError(
                    f"pair {pair} has {column} {joined.loc[pair, column]} in '{first}' and "
                    f"{table.loc[pair, column]} in '{name}'; the runs were scored on different data"
                )


def _cell(values: np.ndarray, stratum: str, n_resamples: int, seed: int, confidence: float) -> dict[str, float]:
    """Mean and percentile bootstrap interval of one stratum's defined values (NaN without any)."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    means = resample_means(values, n_resamples, np.random.default_rng(group_seed(seed, stratum)))
    mean = float(values.mean())
    low, high = percentile_interval(means, confidence, mean)
    return {"mean": mean, "low": low, "high": high, "n": int(values.size)}


def breakdown_scores(
    scores: Mapping[str, pd.DataFrame],
    by: str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    side_from: str = "prompt",
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The breakdown of per-pair score frames (run name -> scores.csv frame): one row per (stratum, method,
    metric) with COLUMNS, in raw units (fractions for mIoU and AUC), on the pairs every run scored.

    `attrs` holds what the table needs: by, side_from, labels {stratum: label}, counts {stratum: pairs},
    cuts (box-size: (q1, q2)), n_pairs, n_dropped, n_resamples, seed, confidence.
    """
    columns = needed_columns(by, side_from)
    check_bootstrap_options(metrics, n_resamples, seed, confidence)
    if not scores:
        raise CxrbenchError("a breakdown needs at least one run")
    joined, dropped = common_pairs(scores, metrics)
    if joined.empty:
        raise CxrbenchError(f"the runs {', '.join(scores)} have no scored pair in common")
    _stratum_columns(scores, joined, columns)
    strata, labels = assign_strata(joined, by, side_from)
    records = []
    for stratum in labels:
        group = joined[strata == stratum]
        for method in scores:
            for metric in metrics:
                values = group[f"{method}/{metric}"].to_numpy(np.float64)
                cell = _cell(values, stratum, n_resamples, seed, confidence)
                records.append({"stratum": stratum, "method": method, "metric": metric, **cell})
    frame = pd.DataFrame(records, columns=list(COLUMNS))
    frame.attrs = {
        "by": by,
        "side_from": side_from,
        "labels": labels,
        "counts": {s: int((strata == s).sum()) for s in labels},
        "cuts": tercile_cuts(joined["box_fraction"]) if by == "box-size" else None,
        "n_pairs": len(joined),
        "n_dropped": dropped,
        "n_resamples": n_resamples,
        "seed": seed,
        "confidence": confidence,
    }
    return frame


def _read(run: RunSummary, metrics: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """A run's scores.csv with the stratification columns checked; a run from before they existed is named."""
    frame = read_scores(run, metrics)
    where = str(run.path.parent / "scores.csv") if run.path else run.name
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CxrbenchError(
            f"run '{run.name}' has no {', '.join(missing)} in {where}: it was scored by an older cxrbench; rerun it "
            f"with `cxrbench run` (cached heatmaps are reused)"
        )
    for column in columns:
        _check_values(frame, column, where)
    return frame


def breakdown(
    runs: Sequence[RunSummary],
    by: str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    side_from: str = "prompt",
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The breakdown of stored runs (`breakdown_scores`, plus dataset and protocol in `attrs`); runs of different
    datasets, dataset manifests, protocols or scorer versions are refused."""
    columns = needed_columns(by, side_from)
    check_bootstrap_options(metrics, n_resamples, seed, confidence)
    if not runs:
        raise CxrbenchError("a breakdown needs at least one run")
    check_comparable(runs)
    scores = {run.name: _read(run, metrics, columns) for run in runs}
    frame = breakdown_scores(scores, by, metrics, side_from, n_resamples, seed, confidence)
    frame.attrs.update(dataset=runs[0].dataset, protocol=runs[0].protocol)
    return frame


# ---- output ----------------------------------------------------------------------------------------------------


def caption(frame: pd.DataFrame) -> str:
    """What the strata are and how the cells were computed (under the Markdown table, the LaTeX caption)."""
    a = frame.attrs
    how = {
        "box-size": "area of the union of the pair's boxes over the image area, in terciles of the pairs"
        + (
            f" (cut at {_percent(a['cuts'][0])} and {_percent(a['cuts'][1])} for every method)" if a.get("cuts") else ""
        ),
        "side": "the patient side of the box centres"
        if a["side_from"] == "boxes"
        else "the patient side the prompt names (rule extractor)",
        "n-boxes": "ground-truth boxes of the pair",
        "prompt-length": "words in the prompt (whitespace-separated tokens holding a letter or digit)",
        "class": "the pair's class",
    }[a["by"]]
    dataset = f" of {a['dataset']}" if a.get("dataset") else ""
    dropped = f" ({a['n_dropped']} pairs not scored by every run left out)" if a["n_dropped"] else ""
    protocol = f", {a['protocol']} protocol" if a.get("protocol") else ""
    return (
        f"{TITLES[a['by']]}: {how}. {a['n_pairs']} pairs scored by every run{dataset}{dropped}{protocol}; mean "
        f"[{a['confidence']:.0%} percentile bootstrap interval] over each stratum's pairs, {a['n_resamples']} "
        f"resamples, seed {a['seed']} (docs/analysis.md)."
    )


def _text(cell: pd.Series, metric: str) -> str:
    """The cell "mean [low, high]" in the leaderboard's scale and decimals (METRIC_STYLE)."""
    if math.isnan(cell["mean"]):
        return "--"
    _, scale, decimals = METRIC_STYLE[metric]
    mean, low, high = (f"{cell[k] * scale:.{decimals}f}" for k in ("mean", "low", "high"))
    return f"{mean} [{low}, {high}]"


def _grid(frame: pd.DataFrame) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """Columns (method, metric label) and one text row per stratum: stratum, N, then the cells."""
    methods = list(dict.fromkeys(frame["method"]))
    metrics = list(dict.fromkeys(frame["metric"]))
    cells = frame.set_index(["stratum", "method", "metric"])
    columns = [(m, METRIC_STYLE[k][0]) for m in methods for k in metrics]
    rows = [
        [
            frame.attrs["labels"][s],
            str(frame.attrs["counts"][s]),
            *(_text(cells.loc[(s, m, k)], k) for m in methods for k in metrics),
        ]
        for s in frame.attrs["labels"]
    ]
    return columns, rows


def to_markdown(frame: pd.DataFrame) -> str:
    columns, rows = _grid(frame)
    header = [TITLES[frame.attrs["by"]], "N", *(f"{m} {label}" for m, label in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":--", "--:"] + [":-:"] * len(columns)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([*lines, "", caption(frame)]) + "\n"


def to_latex(frame: pd.DataFrame) -> str:
    """A table float with a booktabs tabular and the caption; needs \\usepackage{booktabs}."""
    columns, rows = _grid(frame)
    methods = list(dict.fromkeys(m for m, _ in columns))
    width = len(columns) // len(methods)
    head = [TITLES[frame.attrs["by"]], "N"] + [rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(m)}}}" for m in methods]
    rules = " ".join(rf"\cmidrule(lr){{{3 + i * width}-{2 + (i + 1) * width}}}" for i in range(len(methods)))
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption(frame))}}}",
        rf"\label{{tab:breakdown-{frame.attrs['by']}}}",
        rf"\begin{{tabular}}{{lr{'c' * len(columns)}}}",
        r"\toprule",
        " & ".join(head) + r" \\",
        rules,
        " & ".join(["", "", *(latex_escape(label) for _, label in columns)]) + r" \\",
        r"\midrule",
        *(" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def to_csv(frame: pd.DataFrame) -> str:
    """Numbers in the table scale (percent for mIoU and AUC), one row per (stratum, method, metric), with the
    stratum's label and pair count."""
    a = frame.attrs
    rows = frame.copy()
    scale = rows["metric"].map(lambda m: METRIC_STYLE[m][1])
    for column in ("mean", "low", "high"):
        rows[column] = rows[column] * scale
    rows.insert(0, "by", a["by"])
    rows.insert(0, "dataset", a.get("dataset"))
    rows.insert(3, "label", rows["stratum"].map(a["labels"]))
    rows.insert(4, "pairs", rows["stratum"].map(a["counts"]))
    rows["protocol"] = a.get("protocol")
    return rows.to_csv(index=False, float_format="%.6g")


def format_breakdown(frame: pd.DataFrame, fmt: Format = "markdown") -> str:
    writers = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}
    if fmt not in writers:
        raise CxrbenchError(f"unknown format {fmt!r}; choose {', '.join(writers)}")
    return writers[fmt](frame)
