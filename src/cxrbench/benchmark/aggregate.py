"""docs/results.md, "Aggregation": per-class means with percentile bootstrap CIs, and the "Average" row over classes.

The Average row is the unweighted mean of the class means; its interval comes from a stratified bootstrap:
each class is resampled on its own (the same resamples as its own row) and the class means are averaged.
Pairs whose metric is undefined (NaN, e.g. AUC when the box covers every valid pixel) are left out of that
metric, and each cell records the n it used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrbench.benchmark.bootstrap import group_seed, percentile_interval, resample_means

AVERAGE = "Average"


def summarise(
    scores: pd.DataFrame,
    metrics: Sequence[str],
    classes: Sequence[str],
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict]:
    """{class: {"n": pairs, metric: {"mean", "low", "high", "n"}}} for each class present, plus "Average".

    `classes` fixes the row order; classes absent from `scores` are skipped.
    """
    rows: dict[str, dict] = {}
    class_means: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    class_values: dict[str, list[float]] = {m: [] for m in metrics}
    for name in classes:
        group = scores[scores["class_name"] == name]
        if group.empty:
            continue
        row: dict = {"n": len(group)}
        for metric in metrics:
            values = group[metric].to_numpy(dtype=np.float64)
            values = values[~np.isnan(values)]
            if values.size == 0:
                row[metric] = {"mean": None, "low": None, "high": None, "n": 0}
                continue
            means = resample_means(values, n_resamples, np.random.default_rng(group_seed(seed, name)))
            mean = float(values.mean())
            low, high = percentile_interval(means, confidence, mean)
            row[metric] = {"mean": mean, "low": low, "high": high, "n": int(values.size)}
            class_means[metric].append(means)
            class_values[metric].append(mean)
        rows[name] = row
    average: dict = {"n": int(sum(r["n"] for r in rows.values())), "classes": len(rows)}
    for metric in metrics:
        if not class_values[metric]:
            average[metric] = {"mean": None, "low": None, "high": None, "n": 0}
            continue
        mean = float(np.mean(class_values[metric]))
        low, high = percentile_interval(np.mean(class_means[metric], axis=0), confidence, mean)
        average[metric] = {
            "mean": mean,
            "low": low,
            "high": high,
            "n": len(class_values[metric]),
        }
    rows[AVERAGE] = average
    return rows
