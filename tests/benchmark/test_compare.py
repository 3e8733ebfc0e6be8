"""Paired bootstrap comparison of runs (docs/results.md, "Paired comparison"): against a plain loop, on cases
with a known answer, Holm by hand, refusals, and `cxrbench compare` end to end on two demo runs."""

import dataclasses
import json
import math
from io import StringIO

import numpy as np
import pandas as pd
import pytest

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark import store
from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.benchmark.bootstrap import group_seed
from cxrbench.benchmark.compare import (
    METRICS,
    compare_scores,
    holm,
    p_value,
    paired_bootstrap,
    select_runs,
)
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.errors import CxrbenchError

CLASSES = {"Pneumonia": 9, "Edema": 6, "Cardiomegaly": 2, "Rare": 1, "Nodule": 5}


def _frame(rng, sizes=CLASSES, shift=0.0):
    rows = []
    for cls, n in sizes.items():
        for i in range(n):
            rows.append({"pair_id": f"{cls[:3]}-{i}", "class_name": cls})
    frame = pd.DataFrame(rows)
    for metric in METRICS:
        frame[metric] = rng.normal(0.5, 0.3, len(frame)) + shift
    return frame


def _loop_reference(scores, baseline, metrics, n_resamples, seed, confidence=0.95):
    """{(method, metric, class): (n, diff, low, high, p, p_holm)} by plain loops over pairs and resamples.

    Resample r of a class draws, from the uniforms rng.random((R, n_class)) of the class's generator, pair
    floor(U[r, j] * m) of the m pairs (in the first run's order) whose difference is defined, j < m.
    """
    names = list(scores)
    tables = {name: frame.set_index("pair_id") for name, frame in scores.items()}
    common = [p for p in scores[names[0]]["pair_id"] if all(p in t.index for t in tables.values())]
    classes = []
    for p in common:
        cls = tables[names[0]].loc[p, "class_name"]
        if cls not in classes:
            classes.append(cls)
    uniforms = {}
    for cls in classes:
        size = sum(tables[names[0]].loc[p, "class_name"] == cls for p in common)
        uniforms[cls] = np.random.default_rng(group_seed(seed, cls)).random((n_resamples, size))
    out = {}
    tail = (1 - confidence) / 2 * 100
    for method in names:
        if method == baseline:
            continue
        for metric in metrics:
            resamples, estimates, total, cells = [], [], 0, {}
            for cls in classes:
                diffs = []
                for p in common:
                    if tables[names[0]].loc[p, "class_name"] != cls:
                        continue
                    d = tables[method].loc[p, metric] - tables[baseline].loc[p, metric]
                    if not math.isnan(d):
                        diffs.append(d)
                m = len(diffs)
                if m == 0:
                    cells[cls] = [0, math.nan, math.nan, math.nan, math.nan]
                    continue
                means = []
                for r in range(n_resamples):
                    drawn = [diffs[int(uniforms[cls][r, j] * m)] for j in range(m)]
                    means.append(sum(drawn) / m)
                estimate = sum(diffs) / m
                resamples.append(means)
                estimates.append(estimate)
                total += m
                cells[cls] = [m, estimate, *_interval_and_p(means, tail)] if m >= 2 else [m, estimate, *[math.nan] * 3]
            for cls, adjusted in zip(classes, _holm_loop([cells[c][4] for c in classes]), strict=True):
                out[(method, metric, cls)] = (*cells[cls], adjusted)
            average = [sum(col) / len(col) for col in zip(*resamples, strict=True)]
            out[(method, metric, AVERAGE)] = (total, sum(estimates) / len(estimates), *_interval_and_p(average, tail))
            out[(method, metric, AVERAGE)] += (math.nan,)
    return out


def _interval_and_p(means, tail):
    low, high = np.percentile(means, [tail, 100 - tail])
    below = sum(1 for t in means if t <= 0)
    above = sum(1 for t in means if t >= 0)
    return low, high, min(1.0, 2 * (1 + min(below, above)) / (len(means) + 1))


def _holm_loop(p_values):
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        out[i] = running
    return out


def _rows(comparison):
    return {
        (r["method"], r["metric"], r["class"]): (r["n"], r["diff"], r["low"], r["high"], r["p"], r["p_holm"])
        for r in comparison.rows.to_dict(orient="records")
    }


def _assert_rows_equal(got, expected):
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        assert got[key][0] == want[0], key
        np.testing.assert_allclose(got[key][1:], want[1:], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=str(key))


def test_matches_a_plain_loop_with_undefined_and_unshared_pairs():
    rng = np.random.default_rng(7)
    base, better, other = _frame(rng), _frame(rng, shift=0.1), _frame(rng, shift=-0.05)
    base.loc[[0, 3], "auc"] = np.nan  # undefined in the baseline: left out for every method
    better.loc[[1, 10], "cnr"] = np.nan  # undefined in one method only
    other.loc[other["class_name"] == "Edema", "miou"] = np.nan  # a class with no defined pair
    other = other.drop(index=[4, 20])  # pairs the third run did not score
    scores = {"base": base, "better": better, "other": other}
    comparison = compare_scores(scores, "base", METRICS, n_resamples=300, seed=3)
    _assert_rows_equal(_rows(comparison), _loop_reference(scores, "base", METRICS, 300, 3))
    assert comparison.n_dropped == 2
    assert comparison.n_pairs == sum(CLASSES.values()) - 2
    assert comparison.classes == ("Pneumonia", "Edema", "Cardiomegaly", "Nodule", "Rare", AVERAGE)
    rows = comparison.rows.set_index(["method", "metric", "class"])
    assert rows.loc[("better", "cnr", "Pneumonia"), "n"] == 9 - 1 - 1  # row 4 unshared, row 1 NaN
    assert rows.loc[("better", "cnr", "Edema"), "n"] == 6 - 1  # row 10 NaN
    assert rows.loc[("better", "auc", "Pneumonia"), "n"] == 9 - 3
    assert rows.loc[("other", "miou", "Edema"), "n"] == 0
    assert math.isnan(rows.loc[("other", "miou", "Edema"), "diff"])
    assert math.isnan(rows.loc[("better", "cnr", "Rare"), "p"])  # one pair: no test, not in Holm's family


def test_a_method_against_itself_differs_by_zero_with_p_one():
    frame = _frame(np.random.default_rng(0))
    comparison = compare_scores({"a": frame, "a-again": frame.copy()}, "a", METRICS, n_resamples=200)
    tested = comparison.rows[comparison.rows["n"] >= 2]
    assert (tested["diff"] == 0).all()
    assert (tested["low"] == 0).all()
    assert (tested["high"] == 0).all()
    assert (tested["p"] == 1).all()
    assert (tested[tested["class"] != AVERAGE]["p_holm"] == 1).all()


def test_a_constant_shift_has_the_constant_as_its_interval():
    frame = _frame(np.random.default_rng(1))
    shifted = frame.copy()
    shifted[list(METRICS)] += 0.25
    comparison = compare_scores({"a": frame, "b": shifted}, "a", METRICS, n_resamples=500)
    tested = comparison.rows[comparison.rows["n"] >= 2]
    for column in ("diff", "low", "high"):
        np.testing.assert_allclose(tested[column], 0.25, rtol=1e-12)
    assert (tested["p"] == 2 / 501).all()


def test_a_clearly_better_method_is_significant_and_noise_is_not_everywhere():
    rng = np.random.default_rng(2)
    sizes = {"Pneumonia": 30, "Edema": 30, "Cardiomegaly": 30}
    base = _frame(rng, sizes)
    better = base.copy()
    better[list(METRICS)] += 0.2 + rng.normal(0, 0.1, (len(base), len(METRICS)))
    noisy = base.copy()
    noisy[list(METRICS)] += rng.normal(0, 0.1, (len(base), len(METRICS)))
    comparison = compare_scores({"base": base, "better": better, "noisy": noisy}, "base", ("cnr", "miou"), 1000)
    rows = comparison.rows
    assert (rows[rows["method"] == "better"]["p"] < 0.05).all()
    assert (rows[rows["method"] == "better"]["p_holm"].dropna() < 0.05).all()
    assert (rows[rows["method"] == "noisy"]["p"] > 0.05).any()


def test_p_value_definition_by_hand():
    assert p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(2 * (1 + 1) / 5)
    assert p_value(np.full(9, 0.5)) == pytest.approx(2 / 10)
    assert p_value(np.full(9, -0.5)) == pytest.approx(2 / 10)
    assert p_value(np.array([0.0, 0.0, 1.0])) == 1.0


def test_holm_by_hand():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.5]), [0.04, 0.09, 0.09, 0.5])
    np.testing.assert_allclose(holm([0.02, math.nan, 0.01]), [0.02, math.nan, 0.02])
    np.testing.assert_allclose(holm([0.4, 0.9, 0.8]), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(holm([0.001]), [0.001])


def test_bad_inputs_are_refused_with_one_line():
    frame = _frame(np.random.default_rng(3))
    with pytest.raises(CxrbenchError, match="0 scored pair"):
        compare_scores({"a": frame, "b": frame.assign(pair_id=frame["pair_id"] + "x")}, "a")
    with pytest.raises(CxrbenchError, match="1 scored pair"):
        compare_scores({"a": frame, "b": frame.iloc[:1]}, "a")
    with pytest.raises(CxrbenchError, match="has class 'Pneumonia' in one run and 'Edema' in 'b'"):
        compare_scores({"a": frame, "b": frame.assign(class_name="Edema")}, "a")
    with pytest.raises(CxrbenchError, match="at least 100"):
        compare_scores({"a": frame, "b": frame}, "a", n_resamples=99)
    with pytest.raises(CxrbenchError, match=r"unknown metric\(s\) iou"):
        compare_scores({"a": frame, "b": frame}, "a", metrics=("iou",))
    with pytest.raises(CxrbenchError, match="baseline 'c'"):
        compare_scores({"a": frame, "b": frame}, "c")


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for method in ("oracle-gaussian", "center-gaussian"):
        run_benchmark(method, "demo", out=out, n_resamples=100, progress=False)
    return out


def test_runs_of_other_data_protocol_or_scorer_are_refused(demo_runs):
    oracle, center = select_runs(store.find_runs(demo_runs).runs, "demo", ["oracle-gaussian", "center-gaussian"])
    for field, value, message in [
        ("manifest_sha256", "0" * 64, "different dataset manifests"),
        ("protocol", "published", "different protocols"),
        ("scorer_version", oracle.identity.scorer_version + 1, "different scorer versions"),
    ]:
        other = dataclasses.replace(center, identity=dataclasses.replace(center.identity, **{field: value}))
        with pytest.raises(CxrbenchError, match=message) as error:
            paired_bootstrap([oracle, other])
        assert "\n" not in str(error.value)


def test_stored_runs_are_compared_on_their_scores(demo_runs):
    runs = select_runs(store.find_runs(demo_runs).runs, "demo", ["center-gaussian", "oracle-gaussian"])
    comparison = paired_bootstrap(runs, metrics=("cnr", "miou"), n_resamples=200)
    scores = {r.name: pd.read_csv(demo_runs / "demo" / r.name / "scores.csv") for r in runs}
    _assert_rows_equal(_rows(comparison), _loop_reference(scores, "center-gaussian", ("cnr", "miou"), 200, 0))
    assert (comparison.dataset, comparison.protocol, comparison.n_pairs) == ("demo", "cxrbench", 64)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.drop(columns="miou"), r"scores.csv has no column\(s\) miou"),
        (lambda f: pd.concat([f, f.iloc[[3]]]), r"scores.csv holds pair \S+ twice"),
        (lambda f: f.astype({"miou": object}).assign(miou=["high", *f["miou"][1:]]), r"row 2: miou 'high' is not a"),
    ],
)
def test_a_malformed_scores_file_is_named(tmp_path, demo_runs, damage, message):
    runs = select_runs(store.find_runs(demo_runs).runs, "demo", ["center-gaussian", "oracle-gaussian"])
    damage(pd.read_csv(demo_runs / "demo" / "oracle-gaussian" / "scores.csv")).to_csv(tmp_path / "scores.csv")
    moved = dataclasses.replace(runs[1], path=tmp_path / "summary.json")
    (tmp_path / "summary.json").write_text(moved.to_json())
    with pytest.raises(CxrbenchError, match=message):
        paired_bootstrap([runs[0], moved], metrics=("miou",))


def test_cli_compares_two_demo_runs_in_every_format(cli, demo_runs, tmp_path):
    args = ("compare", str(demo_runs), "-d", "demo", "--methods", "oracle-gaussian", "--baseline", "center-gaussian")
    args += ("--n-resamples", "300", "--seed", "4")
    csv = cli(*args, "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    table = pd.read_csv(StringIO(csv.stdout))
    summaries = {r.name: r for r in store.find_runs(demo_runs).runs}
    for metric, scale in (("cnr", 1), ("miou", 100), ("auc", 100)):
        rows = table[table["metric"] == metric].set_index("class")
        for cls, row in rows.iterrows():
            expected = (
                summaries["oracle-gaussian"].classes[cls][metric]["mean"]
                - summaries["center-gaussian"].classes[cls][metric]["mean"]
            )
            assert row["diff"] == pytest.approx(expected * scale, rel=1e-5), (metric, cls)
            assert row["low"] <= row["diff"] <= row["high"]
            assert row["p"] == pytest.approx(2 / 301, rel=1e-5)
    assert set(table["class"]) == {*PATHOLOGIES, AVERAGE}

    markdown = cli(*args)
    assert "### oracle-gaussian vs center-gaussian" in markdown.stdout
    average = next(line for line in markdown.stdout.splitlines() if line.startswith(f"| **{AVERAGE}** | 64 |"))
    assert "<0.001" not in average and "| 0.007 | -- |" in average
    latex = cli(*args, "--format", "latex", "--output", "cmp/table.tex")
    text = (tmp_path / "cmp" / "table.tex").read_text()
    assert latex.returncode == 0 and "\\begin{tabular}" in text and "\\midrule\nAverage & 64" in text
    record = json.loads(cli(*args, "--format", "json").stdout)
    assert (record["baseline"], record["n_pairs"], record["n_dropped"]) == ("center-gaussian", 64, 0)
    assert record["rows"][0]["p_holm"] == pytest.approx(min(1, 8 * 2 / 301), rel=1e-5)

    missing = cli("compare", str(demo_runs), "-d", "demo", "--methods", "oracle-gaussian,lut-prior")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: no stored run of lut-prior on 'demo'; runs exist for center-gaussian, oracle-gaussian"
    ]
