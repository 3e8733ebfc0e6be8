"""Paired comparison of stored runs (docs/results.md, "Paired comparison"): per class and for the Average row,
the mean difference of each metric between a method and a baseline on the pairs all the compared runs scored,
its percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) and a two-sided bootstrap p-value, with
Holm-adjusted p-values across classes.

The bootstrap is paired: a resample draws pairs, and both runs' scores of each drawn pair enter it, so it
resamples the per-pair differences d_i = method_i - baseline_i. Per class c, with its n_c common pairs (in the
first run's scores.csv order), one matrix U of n_resamples x n_c uniforms is drawn from
`np.random.default_rng(group_seed(seed, c))` (the class seeds of aggregate.py); a (method, metric) whose
differences are defined on m of the class's pairs (NaN in either run leaves a pair out) takes as resample r the
pairs floor(U[r, j] * m), j < m, of those m. So every metric and method is resampled from the same draws, and
columns defined on the same pairs use the very same resampled pairs. The Average row is stratified like
aggregate.py: resample r's class mean differences are averaged over the classes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark import store
from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.benchmark.bootstrap import MIN_RESAMPLES, group_seed, percentile_interval
from cxrbench.benchmark.summary import RunSummary
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.tables import DEFAULT_METRICS, METRIC_STYLE

Format = Literal["markdown", "latex", "csv", "json"]
METRICS = ("cnr", "miou", "auc", "auc_binned", "cnr_signed")
ROW_COLUMNS = ("method", "baseline", "metric", "class", "n", "diff", "low", "high", "p", "p_holm")
# Uniforms are drawn in blocks of this many resamples so memory stays bounded (the draws do not depend on it).
_BLOCK = 1000


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of each method in `methods` against `baseline`.

    `rows` has one row per (method, metric, class) with the columns ROW_COLUMNS, in raw units (fractions for
    mIoU and AUC); `low`/`high`/`p` are NaN where fewer than 2 pairs are defined, `p_holm` is NaN on the Average
    row (it is not one of the family adjusted). `n_pairs` pairs were scored by every run; `n_dropped` pairs were
    scored by some of them only and left out.
    """

    baseline: str
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    classes: tuple[str, ...]
    counts: dict[str, int]
    n_pairs: int
    n_dropped: int
    n_resamples: int
    seed: int
    confidence: float
    rows: pd.DataFrame
    dataset: str | None = None
    protocol: str | None = None


def p_value(resampled: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "mean difference = 0" from the resampled mean differences t_1..t_R:

        p = min(1, 2 * min(1 + #{t_r <= 0}, 1 + #{t_r >= 0}) / (R + 1))

    twice the share of resamples on the far side of 0 (about the level at which the percentile interval starts to
    exclude 0; Efron & Tibshirani 1993, ch. 15-16), with the +1 correction of Monte Carlo p-values so it is never
    0 (Davison & Hinkley 1997, sec. 4.2.1; Phipson & Smyth 2010). A method against itself gets p = 1.
    """
    below = int(np.count_nonzero(resampled <= 0))
    above = int(np.count_nonzero(resampled >= 0))
    return min(1.0, 2 * (1 + min(below, above)) / (resampled.size + 1))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values: the i-th smallest of m becomes max_{j <= i} min(1, (m - j + 1) p_(j)).

    NaN entries are not tested: they stay NaN and do not count in m.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def _resampled_means(diffs: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, K) resampled mean differences of one class's (n, K) differences (NaN: undefined pair).

    Resample r of a column defined on m pairs takes pairs floor(U[r, :m] * m) of them; the draws are turned into
    counts per pair, so all columns with the same defined pairs share one matrix product.
    """
    n, k = diffs.shape
    out = np.full((n_resamples, k), np.nan)
    defined = ~np.isnan(diffs)
    masks, group = np.unique(defined.T, axis=0, return_inverse=True)
    for start in range(0, n_resamples, _BLOCK):
        rows = min(_BLOCK, n_resamples - start)
        uniforms = rng.random((rows, n))
        for g, mask in enumerate(masks):
            m = int(mask.sum())
            if m == 0:
                continue
            columns = np.flatnonzero(group.ravel() == g)
            drawn = (uniforms[:, :m] * m).astype(np.int64)  # floor; U < 1 keeps it below m
            counts = np.bincount((drawn + m * np.arange(rows)[:, None]).ravel(), minlength=rows * m)
            values = diffs[np.flatnonzero(mask)][:, columns]
            out[start : start + rows, columns] = counts.reshape(rows, m).astype(np.float64) @ values / m
    return out


def _cell(estimate: float, resampled: np.ndarray, n: int, confidence: float) -> dict[str, float]:
    if n < 2:
        return {"n": n, "diff": estimate, "low": math.nan, "high": math.nan, "p": math.nan}
    low, high = percentile_interval(resampled, confidence, estimate)
    return {"n": n, "diff": estimate, "low": low, "high": high, "p": p_value(resampled)}


def _class_order(names: Sequence[str]) -> tuple[str, ...]:
    present = set(names)
    return (*[c for c in PATHOLOGIES if c in present], *sorted(present - set(PATHOLOGIES)))


def common_pairs(scores: Mapping[str, pd.DataFrame], metrics: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """One frame indexed by pair_id with class_name and <run>/<metric> columns, on the pairs every run scored;
    and the number of pairs left out because some run did not score them."""
    ids = [set(frame["pair_id"]) for frame in scores.values()]
    common = set.intersection(*ids)
    joined = pd.DataFrame()
    for name, frame in scores.items():
        table = frame[frame["pair_id"].isin(common)].set_index("pair_id")
        if joined.empty:
            joined = table[["class_name"]]
        classes = table["class_name"].reindex(joined.index)
        wrong = joined.index[classes != joined["class_name"]]
        if len(wrong):
            raise CxrbenchError(
                f"pair {wrong[0]} has class '{joined.loc[wrong[0], 'class_name']}' in one run and "
                f"'{classes[wrong[0]]}' in '{name}'; the runs were scored on different data"
            )
        joined = joined.join(table[list(metrics)].add_prefix(f"{name}/"))
    return joined, len(set.union(*ids)) - len(common)


def compare_scores(
    scores: Mapping[str, pd.DataFrame],
    baseline: str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """The paired comparison of per-pair score frames (run name -> frame with pair_id, class_name and the
    metrics, as in scores.csv): every run other than `baseline` against it, on the pairs all of them scored."""
    _check_options(list(scores), baseline, metrics, n_resamples, seed)
    joined, dropped = common_pairs(scores, metrics)
    if len(joined) < 2:
        raise CxrbenchError(
            f"the runs {', '.join(scores)} have {len(joined)} scored pair(s) in common; a paired comparison needs "
            f"at least 2"
        )
    methods = tuple(n for n in scores if n != baseline)
    columns = [(method, metric) for method in methods for metric in metrics]
    classes = _class_order(joined["class_name"].unique())
    per_class = [
        _class_differences(joined[joined["class_name"] == c], c, baseline, columns, n_resamples, seed) for c in classes
    ]
    records: list[dict[str, Any]] = []
    for j, (method, metric) in enumerate(columns):
        key = {"method": method, "baseline": baseline, "metric": metric}
        cells = [_cell(float(est[j]), res[:, j], int(n[j]), confidence) for est, res, n in per_class]
        for cls, cell, adjusted in zip(classes, cells, holm([c["p"] for c in cells]), strict=True):
            records.append({**key, "class": cls, **cell, "p_holm": float(adjusted)})
        records.append({**key, "class": AVERAGE, **_average(per_class, j, confidence), "p_holm": math.nan})
    counts = {cls: int((joined["class_name"] == cls).sum()) for cls in classes}
    return Comparison(
        baseline=baseline,
        methods=methods,
        metrics=tuple(metrics),
        classes=(*classes, AVERAGE),
        counts={**counts, AVERAGE: len(joined)},
        n_pairs=len(joined),
        n_dropped=dropped,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        rows=pd.DataFrame(records, columns=list(ROW_COLUMNS)),
    )


def _class_differences(
    group: pd.DataFrame, cls: str, baseline: str, columns: Sequence[tuple[str, str]], n_resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One class's (mean differences, resampled mean differences, defined pairs) of every (method, metric)."""
    diffs = np.column_stack(
        [group[f"{a}/{m}"].to_numpy(np.float64) - group[f"{baseline}/{m}"].to_numpy(np.float64) for a, m in columns]
    )
    n = np.count_nonzero(~np.isnan(diffs), axis=0)
    estimate = np.array(
        [float(np.mean(col[~np.isnan(col)])) if k else math.nan for col, k in zip(diffs.T, n, strict=True)]
    )
    resampled = _resampled_means(diffs, n_resamples, np.random.default_rng(group_seed(seed, cls)))
    return estimate, resampled, n


def _average(per_class: list[tuple[np.ndarray, np.ndarray, np.ndarray]], j: int, confidence: float) -> dict[str, Any]:
    """The Average row of column j: the unweighted mean over the classes where it is defined, its resamples the
    mean of the classes' resamples (stratified bootstrap, as aggregate.py)."""
    used = [(est[j], res[:, j], n[j]) for est, res, n in per_class if n[j] > 0]
    if not used:
        return {"n": 0, "diff": math.nan, "low": math.nan, "high": math.nan, "p": math.nan}
    estimate = float(np.mean([u[0] for u in used]))
    resampled = np.mean([u[1] for u in used], axis=0)
    return _cell(estimate, resampled, int(sum(u[2] for u in used)), confidence)


def _check_options(names: Sequence[str], baseline: str, metrics: Sequence[str], n_resamples: int, seed: int) -> None:
    if len(names) < 2:
        raise CxrbenchError("a paired comparison needs at least 2 runs; name them with --methods A,B")
    if baseline not in names:
        raise CxrbenchError(f"baseline '{baseline}' is not one of the compared runs ({', '.join(names)})")
    check_bootstrap_options(metrics, n_resamples, seed)


def check_bootstrap_options(metrics: Sequence[str], n_resamples: int, seed: int, confidence: float = 0.95) -> None:
    """Known, non-empty metrics; at least MIN_RESAMPLES resamples; a seed >= 0; a confidence in (0, 1)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise CxrbenchError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}"
        )
    if n_resamples < MIN_RESAMPLES:
        raise CxrbenchError(f"--n-resamples must be at least {MIN_RESAMPLES}, got {n_resamples}")
    if seed < 0:
        raise CxrbenchError(f"--seed must be a non-negative integer, got {seed}")
    if not 0 < confidence < 1:
        raise CxrbenchError(f"the confidence must lie in (0, 1), got {confidence}")


def read_scores(run: RunSummary, metrics: Sequence[str]) -> pd.DataFrame:
    """A stored run's scores.csv (pair_id, class_name and `metrics`), from the folder its summary was read from."""
    if run.path is None:
        raise CxrbenchError(f"run '{run.name}' was not read from a run folder; cannot find its scores")
    path = store.current_file(run.path.parent, store.SCORES)
    if path is None:
        raise CxrbenchError(f"run '{run.name}' has no {store.SCORES} beside {run.path}; rerun it")
    try:
        frame = pd.read_csv(path, dtype={"pair_id": str, "class_name": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CxrbenchError(f"cannot read {path}: {exc}; rerun the run") from exc
    missing = [c for c in ("pair_id", "class_name", *metrics) if c not in frame.columns]
    if missing:
        raise CxrbenchError(f"{path} has no column(s) {', '.join(missing)}; rerun the run")
    duplicated = frame["pair_id"][frame["pair_id"].duplicated()]
    if len(duplicated):
        raise CxrbenchError(f"{path} holds pair {duplicated.iloc[0]} twice; rerun the run")
    for metric in metrics:
        values = pd.to_numeric(frame[metric], errors="coerce")
        bad = frame.index[values.isna() & frame[metric].notna()]
        if len(bad):
            raise CxrbenchError(f"{path}, row {bad[0] + 2}: {metric} {frame.loc[bad[0], metric]!r} is not a number")
        frame[metric] = values
    return frame


def check_comparable(runs: Sequence[RunSummary]) -> None:
    """Refuse runs that were not scored on the same data, protocol and scorer (one line, naming the runs)."""
    for field, value in (
        ("dataset", lambda r: r.dataset),
        ("dataset manifest", lambda r: r.identity.manifest_sha256[:8]),
        ("protocol", lambda r: r.protocol),
        ("scorer version", lambda r: str(r.identity.scorer_version)),
    ):
        found = {r.name: value(r) for r in runs}
        if len(set(found.values())) > 1:
            listed = ", ".join(f"{name}: {v}" for name, v in found.items())
            raise CxrbenchError(
                f"cannot compare runs with different {field}s ({listed}); rerun them on the same data with the same "
                f"protocol and cxrbench version"
            )


def select_runs(runs: Sequence[RunSummary], dataset: str, names: Sequence[str]) -> list[RunSummary]:
    """The stored runs of `dataset` with these names, in this order."""
    if len(set(names)) != len(names):
        raise CxrbenchError(f"--methods names a run twice ({', '.join(names)})")
    by_name = {r.name: r for r in runs if r.dataset == dataset}
    if not by_name:
        datasets = sorted({r.dataset for r in runs})
        raise CxrbenchError(f"no stored run for dataset '{dataset}'; datasets with runs: {', '.join(datasets)}")
    missing = [n for n in names if n not in by_name]
    if missing:
        raise CxrbenchError(
            f"no stored run of {', '.join(missing)} on '{dataset}'; runs exist for {', '.join(sorted(by_name))}"
        )
    return [by_name[n] for n in names]


def paired_bootstrap(
    runs: Sequence[RunSummary],
    baseline: str | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare stored runs (first one the baseline unless `baseline` names another) on the pairs all of them
    scored; runs of different datasets, dataset manifests, protocols or scorer versions are refused."""
    baseline = baseline or (runs[0].name if runs else "")
    _check_options([r.name for r in runs], baseline, metrics, n_resamples, seed)
    check_comparable(runs)
    scores = {r.name: read_scores(r, metrics) for r in runs}
    result = compare_scores(scores, baseline, metrics, n_resamples, seed, confidence)
    return replace(result, dataset=runs[0].dataset, protocol=runs[0].protocol)


# ---- output ----------------------------------------------------------------------------------------------------


def _scaled(comparison: Comparison) -> pd.DataFrame:
    """The rows in the table scale of `cxrbench table` (percentage points for mIoU and AUC)."""
    rows = comparison.rows.copy()
    scale = rows["metric"].map(lambda m: METRIC_STYLE[m][1])
    for column in ("diff", "low", "high"):
        rows[column] = rows[column] * scale
    return rows


def _p_text(p: float, latex: bool = False) -> str:
    if math.isnan(p):
        return "--"
    if p < 0.001:
        return "$<$0.001" if latex else "<0.001"
    return f"{p:.3f}"


def _diff_text(row: pd.Series, metric: str) -> str:
    if math.isnan(row["diff"]):
        return "--"
    decimals = METRIC_STYLE[metric][2]
    if math.isnan(row["low"]):
        return f"{row['diff']:+.{decimals}f}"
    return f"{row['diff']:+.{decimals}f} [{row['low']:+.{decimals}f}, {row['high']:+.{decimals}f}]"


def _label(metric: str) -> str:
    return METRIC_STYLE[metric][0].replace("(%)", "(pp)")


def _grid(comparison: Comparison, method: str, latex: bool) -> list[list[str]]:
    """One text row per class: class, N, then per metric the difference [CI], p and Holm-adjusted p."""
    rows = _scaled(comparison)
    rows = rows[rows["method"] == method].set_index(["class", "metric"])
    grid = []
    for cls in comparison.classes:
        line = [cls, str(comparison.counts[cls])]
        for metric in comparison.metrics:
            row = rows.loc[(cls, metric)]
            line += [_diff_text(row, metric), _p_text(row["p"], latex), _p_text(row["p_holm"], latex)]
        grid.append(line)
    return grid


def footnote(comparison: Comparison) -> str:
    """How the comparison was made (printed under each table)."""
    classes = len(comparison.classes) - 1
    dropped = f" ({comparison.n_dropped} pairs not scored by every run left out)" if comparison.n_dropped else ""
    protocol = f", scored with the {comparison.protocol} protocol" if comparison.protocol else ""
    return (
        f"Paired bootstrap on the {comparison.n_pairs} pairs scored by every run{dropped}{protocol}: difference = "
        f"method - baseline, {comparison.confidence:.0%} percentile interval, two-sided bootstrap p-value, "
        f"{comparison.n_resamples} resamples, seed {comparison.seed}; p (Holm) adjusted across the {classes} "
        f"classes per metric; the Average is stratified by class (docs/results.md)."
    )


def to_markdown(comparison: Comparison) -> str:
    parts = []
    for method in comparison.methods:
        header = ["Class", "N"]
        for metric in comparison.metrics:
            header += [f"Δ {_label(metric)} [{comparison.confidence:.0%} CI]", "p", "p (Holm)"]
        lines = [f"### {method} vs {comparison.baseline}", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join([":--", "--:"] + ["--:"] * (len(header) - 2)) + "|"]
        for line in _grid(comparison, method, latex=False):
            if line[0] == AVERAGE:
                line[0] = f"**{AVERAGE}**"
            lines.append("| " + " | ".join(line) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join([*parts, footnote(comparison)]) + "\n"


def to_latex(comparison: Comparison) -> str:
    """One booktabs tabular per method against the baseline; needs \\usepackage{booktabs}."""
    parts = [f"% {footnote(comparison)}"]
    ci = f"$\\Delta$ [{comparison.confidence:.0%} CI]".replace("%", "\\%")
    for method in comparison.methods:
        columns = pd.MultiIndex.from_tuples(
            [
                ("Class", ""),
                ("N", ""),
                *(
                    (_label(m).replace("%", "\\%"), sub)
                    for m in comparison.metrics
                    for sub in (ci, "$p$", "$p_{\\mathrm{Holm}}$")
                ),
            ]
        )
        frame = pd.DataFrame(_grid(comparison, method, latex=True), columns=columns)
        styler = frame.style.hide(axis="index").format(escape="latex", subset=[("Class", "")])
        body = styler.to_latex(
            hrules=True, multicol_align="c", column_format="lr" + "crr" * len(comparison.metrics)
        ).splitlines()
        average = next(i for i, line in enumerate(body) if line.startswith(AVERAGE + " &"))
        body.insert(average, "\\midrule")
        title = f"{method} vs {comparison.baseline}"
        parts.append("\n".join([f"% {title}", *body]))
    return "\n".join(parts) + "\n"


def to_csv(comparison: Comparison) -> str:
    """Numbers in the table scale (percentage points for mIoU and AUC), one row per (method, metric, class)."""
    rows = _scaled(comparison)
    rows.insert(0, "dataset", comparison.dataset)
    rows["protocol"] = comparison.protocol
    return rows.to_csv(index=False, float_format="%.6g")


def to_json(comparison: Comparison) -> str:
    """The settings and rows (table scale, as the CSV; null where undefined)."""
    rows = _scaled(comparison).astype(object)
    rows = rows.where(rows.notna(), None)
    record = {
        "dataset": comparison.dataset,
        "protocol": comparison.protocol,
        "baseline": comparison.baseline,
        "methods": list(comparison.methods),
        "metrics": list(comparison.metrics),
        "scale": {m: METRIC_STYLE[m][1] for m in comparison.metrics},
        "n_pairs": comparison.n_pairs,
        "n_dropped": comparison.n_dropped,
        "n_resamples": comparison.n_resamples,
        "seed": comparison.seed,
        "confidence": comparison.confidence,
        "class_pairs": comparison.counts,
        "rows": rows.to_dict(orient="records"),
    }
    return json.dumps(record, indent=2, allow_nan=False) + "\n"


def format_comparison(comparison: Comparison, fmt: Format = "markdown") -> str:
    writers = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv, "json": to_json}
    if fmt not in writers:
        raise CxrbenchError(f"unknown format {fmt!r}; choose {', '.join(writers)}")
    return writers[fmt](comparison)
