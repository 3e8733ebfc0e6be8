import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cxrbench.benchmark.aggregate import AVERAGE, summarise
from cxrbench.benchmark.bootstrap import bootstrap_ci, group_seed


def _naive_bootstrap(values, n_resamples, confidence, seed):
    """One resample at a time, the textbook loop; same generator, so the same draws."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_resamples):
        sample = [values[i] for i in rng.integers(0, len(values), size=len(values))]
        means.append(sum(sample) / len(sample))
    tail = (1 - confidence) / 2
    return float(np.mean(values)), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


@pytest.mark.parametrize(("n", "n_resamples"), [(1, 10), (7, 999), (50, 2500)])
def test_bootstrap_equals_naive_loop(n, n_resamples):
    values = np.random.default_rng(n).normal(size=n)
    got = bootstrap_ci(values, n_resamples=n_resamples, confidence=0.9, seed=3)
    assert got == pytest.approx(_naive_bootstrap(values, n_resamples, 0.9, 3), abs=1e-12)


def test_bootstrap_agrees_with_scipy_percentile_interval():
    values = np.random.default_rng(0).exponential(size=200)
    mean, low, high = bootstrap_ci(values, n_resamples=20_000, seed=1)
    ref = stats.bootstrap((values,), np.mean, n_resamples=20_000, method="percentile", random_state=2)
    assert mean == pytest.approx(values.mean())
    assert low == pytest.approx(ref.confidence_interval.low, rel=0.02)
    assert high == pytest.approx(ref.confidence_interval.high, rel=0.02)


def test_bootstrap_is_seeded_and_sensible():
    values = np.random.default_rng(5).random(30)
    assert bootstrap_ci(values, seed=4) == bootstrap_ci(values, seed=4)
    assert bootstrap_ci(values, seed=4) != bootstrap_ci(values, seed=5)
    mean, low, high = bootstrap_ci(values)
    assert low < mean < high
    assert bootstrap_ci([0.5] * 9) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("bad", [[], [1.0, np.nan]])
def test_bootstrap_rejects_empty_and_nan(bad):
    with pytest.raises(ValueError, match=r"NaN|non-empty"):
        bootstrap_ci(bad)


def test_summarise_average_row_is_unweighted_mean_of_class_means():
    rng = np.random.default_rng(0)
    scores = pd.DataFrame(
        {
            "class_name": ["A"] * 5 + ["B"] * 40 + ["C"] * 3,
            "cnr": rng.random(48),
            "auc": np.r_[rng.random(47), np.nan],
        }
    )
    rows = summarise(scores, ["cnr", "auc"], ["C", "A", "B", "Missing"], n_resamples=500, seed=9)
    assert list(rows) == ["C", "A", "B", AVERAGE]
    class_means = [scores[scores.class_name == c].cnr.mean() for c in "ABC"]
    assert rows[AVERAGE]["cnr"]["mean"] == pytest.approx(np.mean(class_means))
    assert rows["C"]["auc"]["n"] == 2  # the undefined pair is left out of that metric only
    assert rows["C"]["cnr"]["n"] == 3
    for c in "ABC":
        values = scores[scores.class_name == c].cnr.to_numpy()
        expected = _naive_bootstrap(list(values), 500, 0.95, group_seed(9, c))
        cell = rows[c]["cnr"]
        assert (cell["mean"], cell["low"], cell["high"]) == pytest.approx(expected, abs=1e-12)
    # Average CI: each class resampled on its own with its own seed, class means averaged.
    per_class = []
    for c in "ABC":
        values = scores[scores.class_name == c].cnr.to_numpy()
        rng_c = np.random.default_rng(group_seed(9, c))
        per_class.append([values[rng_c.integers(0, len(values), len(values))].mean() for _ in range(500)])
    averaged = np.mean(per_class, axis=0)
    assert rows[AVERAGE]["cnr"]["low"] == pytest.approx(np.quantile(averaged, 0.025), abs=1e-12)
    assert rows[AVERAGE]["cnr"]["high"] == pytest.approx(np.quantile(averaged, 0.975), abs=1e-12)
