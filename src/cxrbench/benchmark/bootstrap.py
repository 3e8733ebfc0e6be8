"""Percentile bootstrap confidence intervals of a mean (Efron & Tibshirani 1993, ch. 13; docs/results.md,
"Aggregation")."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

# Resamples are drawn in blocks of this many rows so memory stays bounded; part of the algorithm (seeded
# results depend on it), so it is a constant, not an option.
_BLOCK = 1000
# Fewer resamples than this give intervals too coarse to report (docs/results.md); the runner refuses them.
MIN_RESAMPLES = 100
MAX_RESAMPLES = 1_000_000  # 8 MB of means per class: more is no more precise, only slower


def resample_means(values: Sequence[float] | np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` resamples of `values` drawn with replacement, vectorised in blocks."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("need a non-empty 1-D array of values")
    if np.isnan(values).any():
        raise ValueError("values contain NaN; drop undefined pairs before bootstrapping")
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, _BLOCK):
        rows = min(_BLOCK, n_resamples - start)
        idx = rng.integers(0, values.size, size=(rows, values.size))
        out[start : start + rows] = values[idx].mean(axis=1)
    return out


def percentile_interval(means: np.ndarray, confidence: float, estimate: float) -> tuple[float, float]:
    """(low, high) percentiles of bootstrap means for a two-sided `confidence` interval around `estimate`.

    The interval always contains the estimate: resample means are summed in another order than the estimate,
    so for (near-)constant values every one of them can lie an ulp off it; the bound is moved onto it then.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return min(float(low), estimate), max(float(high), estimate)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the sample mean and its percentile bootstrap interval, resampling values with
    replacement `n_resamples` times with `np.random.default_rng(seed)`."""
    values = np.asarray(values, dtype=np.float64)
    means = resample_means(values, n_resamples, np.random.default_rng(seed))
    mean = float(values.mean())
    return (mean, *percentile_interval(means, confidence, mean))


def group_seed(seed: int, group: str) -> list[int]:
    """A seed for one group (class) that differs between groups and does not depend on which others exist."""
    return [seed, zlib.crc32(group.encode("utf-8"))]
