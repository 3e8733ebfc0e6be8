"""Breakdowns (docs/analysis.md, "Breakdowns"): strata against a naive loop and hand-labelled prompts, cells against
a direct numpy bootstrap and against the runs' own class rows, refusals, the three formats, and
`cxrbench breakdown` end to end on demo runs."""

import dataclasses
import math
import subprocess
import zlib
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark import store
from cxrbench.benchmark.breakdown import (
    assign_strata,
    breakdown,
    breakdown_scores,
    format_breakdown,
    prompt_side,
    prompt_words,
)
from cxrbench.benchmark.compare import select_runs
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.cli import cli as cxrbench_cli
from cxrbench.errors import CxrbenchError

from ..conftest import require_latex

SIDE_PROMPTS = {  # hand-labelled: the patient side each prompt names
    "right lower pneumonia": "right",
    "left apical pneumothorax": "left",
    "lingular atelectasis": "left",
    "bibasilar atelectasis": "bilateral",
    "bilateral pleural pleural effusion": "bilateral",
    "left lower <and> right upper consolidation": "bilateral",
    "right pleural <and> right costophrenic pleural effusion": "right",
    "pulmonary edema": "none",
    "cardiomegaly cardiomegaly": "none",
    "Small left apical pneumothorax": "left",
    "Patchy opacities in both lungs": "bilateral",
    "Right lower lobe consolidation and small left effusion": "bilateral",
    "Enlarged cardiac silhouette": "none",
}
WORD_PROMPTS = {  # hand-counted words
    "cardiomegaly": 1,
    "pulmonary edema": 2,
    "right lower pneumonia": 3,
    "ill-defined  opacity , left base": 4,
    "left lower <and> right lower pleural effusion": 7,
    "Small left apical pneumothorax.": 4,
}


def _naive_tercile(values, p):
    """numpy's default ("linear") quantile by hand: x[lo] + (h - lo) * (x[lo + 1] - x[lo]), h = (n - 1) p."""
    x = sorted(values)
    h = (len(x) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(x) - 1)
    return x[lo] + (h - lo) * (x[hi] - x[lo])


def _naive_strata(pairs, by):
    out = []
    if by == "box-size":
        q1 = _naive_tercile(list(pairs["box_fraction"]), 1 / 3)
        q2 = _naive_tercile(list(pairs["box_fraction"]), 2 / 3)
    for _, row in pairs.iterrows():
        if by == "box-size":
            if row["box_fraction"] <= q1:
                out.append("small")
            elif row["box_fraction"] <= q2:
                out.append("medium")
            else:
                out.append("large")
        elif by == "n-boxes":
            out.append("3+" if row["n_boxes"] >= 3 else str(row["n_boxes"]))
        elif by == "prompt-length":
            words = sum(1 for token in row["prompt"].split() if any(ch.isalnum() for ch in token))
            out.append("1-2" if words <= 2 else "3-4" if words <= 4 else "5+")
    return out


def _pairs(rng, n):
    prompts = list(SIDE_PROMPTS) + list(WORD_PROMPTS)
    return pd.DataFrame(
        {
            "pair_id": [f"p{i}" for i in range(n)],
            "class_name": rng.choice(["Edema", "Pneumonia", "Nodule", "Cardiomegaly"], n),
            "prompt": rng.choice(prompts, n),
            "n_boxes": rng.integers(0, 6, n),
            # few distinct values, so cut points fall on ties
            "box_fraction": rng.choice([0.0, 0.01, 0.02, 0.02, 0.05, 0.3, 1.0], n) * rng.choice([1, 1, 0.5], n),
            "box_side": rng.choice(["right", "left", "bilateral", "none"], n),
        }
    )


@pytest.mark.parametrize("n", [1, 2, 3, 7, 30, 301])
def test_strata_match_a_naive_loop(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        pairs = _pairs(rng, n)
        for by in ("box-size", "n-boxes", "prompt-length"):
            strata, labels = assign_strata(pairs, by)
            assert list(strata) == _naive_strata(pairs, by), by
            assert set(labels) == set(strata)


def test_box_size_ties_and_constant_fractions():
    pairs = pd.DataFrame({"box_fraction": [0.1, 0.1, 0.1, 0.2, 0.2, 0.3]})
    strata, labels = assign_strata(pairs, "box-size")  # q1 = 0.1, q2 = 0.2: ties go to the lower stratum
    assert list(strata) == ["small"] * 3 + ["medium"] * 2 + ["large"]
    assert labels == {"small": "small (≤ 10 %)", "medium": "medium (10 % - 20 %)", "large": "large (> 20 %)"}
    strata, labels = assign_strata(pd.DataFrame({"box_fraction": [0.05] * 4}), "box-size")
    assert list(strata) == ["small"] * 4 and list(labels) == ["small"]


def test_side_word_and_class_strata_by_hand():
    assert {p: prompt_side(p) for p in SIDE_PROMPTS} == SIDE_PROMPTS
    assert {p: prompt_words(p) for p in WORD_PROMPTS} == WORD_PROMPTS
    pairs = pd.DataFrame(
        {
            "prompt": list(SIDE_PROMPTS),
            "box_side": ["none", "left", *["right"] * (len(SIDE_PROMPTS) - 2)],
            "class_name": ["Nodule", "Edema", "Pneumonia", "Aorta", *["Edema"] * (len(SIDE_PROMPTS) - 4)],
        }
    )
    strata, labels = assign_strata(pairs, "side")
    assert list(strata) == list(SIDE_PROMPTS.values())
    assert list(labels) == ["right", "left", "bilateral", "none"]
    strata, labels = assign_strata(pairs, "side", side_from="boxes")
    assert list(strata) == list(pairs["box_side"]) and list(labels) == ["right", "left", "none"]
    strata, labels = assign_strata(pairs, "class")
    assert list(strata) == list(pairs["class_name"])
    assert list(labels) == ["Pneumonia", "Edema", "Aorta", "Nodule"]  # published order, then by name


def _scores(rng, n=60, shift=0.0):
    frame = _pairs(np.random.default_rng(11), n)  # the same pairs and strata in every run
    for metric in ("cnr", "miou", "auc"):
        frame[metric] = rng.normal(0.5, 0.3, n) + shift
    return frame


def _numpy_cell(values, stratum, n_resamples, seed, confidence=0.95):
    """Mean and percentile interval with numpy only: resample r takes values[rng.integers(0, m, (R, m))[r]]."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan, math.nan, 0
    rng = np.random.default_rng([seed, zlib.crc32(stratum.encode("utf-8"))])
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    mean = values.mean()
    return mean, min(low, mean), max(high, mean), values.size


@pytest.mark.parametrize("by", ["box-size", "side", "n-boxes", "prompt-length", "class"])
def test_cells_match_a_direct_numpy_bootstrap(by):
    rng = np.random.default_rng(5)
    a, b = _scores(rng), _scores(rng, shift=0.2)
    a.loc[[2, 7, 30], "cnr"] = np.nan  # undefined pairs are left out of that metric only
    b.loc[b["n_boxes"] == 2, "auc"] = np.nan  # a stratum without a defined pair (n-boxes)
    b = b.drop(index=[0, 13])  # pairs one run did not score: left out for both
    frame = breakdown_scores({"a": a, "b": b}, by, n_resamples=500, seed=9, confidence=0.9)
    common = a[a["pair_id"].isin(b["pair_id"])].reset_index(drop=True)
    strata, labels = assign_strata(common, by)
    assert frame.attrs["n_pairs"] == len(a) - 2 and frame.attrs["n_dropped"] == 2
    assert frame.attrs["counts"] == {s: int((strata == s).sum()) for s in labels}
    assert len(frame) == len(labels) * 2 * 3
    for run, scores in (("a", a), ("b", b)):
        table = scores.set_index("pair_id").loc[common["pair_id"]]
        for stratum in labels:
            for metric in ("cnr", "miou", "auc"):
                values = table[metric].to_numpy()[(strata == stratum).to_numpy()]
                row = frame[(frame["stratum"] == stratum) & (frame["method"] == run) & (frame["metric"] == metric)]
                got = row[["mean", "low", "high", "n"]].to_numpy()[0]
                want = _numpy_cell(values, stratum, 500, 9, 0.9)
                np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True, err_msg=f"{run} {stratum} {metric}")


def test_box_size_cut_points_come_from_the_common_pairs_once():
    rng = np.random.default_rng(1)
    a, b = _scores(rng), _scores(rng)
    frame = breakdown_scores({"a": a, "b": b}, "box-size", metrics=("cnr",), n_resamples=100)
    q = (_naive_tercile(list(a["box_fraction"]), 1 / 3), _naive_tercile(list(a["box_fraction"]), 2 / 3))
    np.testing.assert_allclose(frame.attrs["cuts"], q, rtol=1e-12)
    per_method = frame.pivot(index="stratum", columns="method", values="n")
    assert (per_method["a"] == per_method["b"]).all()


def test_runs_that_disagree_on_a_pair_are_refused():
    rng = np.random.default_rng(2)
    a, b = _scores(rng), _scores(rng)
    b.loc[4, "box_fraction"] = 0.77
    with pytest.raises(CxrbenchError, match=r"pair p4 has box_fraction .* in 'a' and 0.77 in 'b'"):
        breakdown_scores({"a": a, "b": b}, "box-size", n_resamples=100)
    with pytest.raises(CxrbenchError, match="no scored pair in common"):
        breakdown_scores({"a": a, "b": b.assign(pair_id=b["pair_id"] + "x")}, "class", n_resamples=100)
    with pytest.raises(CxrbenchError, match="unknown breakdown 'size'"):
        breakdown_scores({"a": a}, "size")
    with pytest.raises(CxrbenchError, match="unknown side source 'image'"):
        breakdown_scores({"a": a}, "side", side_from="image")
    with pytest.raises(CxrbenchError, match="at least 100"):
        breakdown_scores({"a": a}, "class", n_resamples=99)
    with pytest.raises(CxrbenchError, match=r"unknown metric\(s\) iou"):
        breakdown_scores({"a": a}, "class", metrics=("iou",))


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for method in ("oracle-gaussian", "center-gaussian"):
        run_benchmark(method, "demo", out=out, n_resamples=200, progress=False)
    return out


def _demo(demo_runs):
    return select_runs(store.find_runs(demo_runs).runs, "demo", ["oracle-gaussian", "center-gaussian"])


def test_by_class_reproduces_the_runs_class_rows(demo_runs):
    runs = _demo(demo_runs)
    frame = breakdown(runs, "class", metrics=("cnr", "miou", "auc"), n_resamples=200, seed=0)
    assert (frame.attrs["dataset"], frame.attrs["protocol"], frame.attrs["n_pairs"]) == ("demo", "cxrbench", 64)
    assert list(frame.attrs["labels"]) == list(PATHOLOGIES)
    for run in runs:  # scores.csv holds 10 significant digits, the summary the full values
        for row in frame[frame["method"] == run.name].itertuples():
            cell = run.classes[row.stratum][row.metric]
            np.testing.assert_allclose(
                [row.mean, row.low, row.high, row.n], [cell["mean"], cell["low"], cell["high"], cell["n"]], rtol=1e-8
            )


def test_stored_strata_are_read_from_scores_csv(demo_runs):
    runs = _demo(demo_runs)
    scores = pd.read_csv(demo_runs / "demo" / "oracle-gaussian" / "scores.csv")
    frame = breakdown(runs, "side", metrics=("miou",), side_from="boxes", n_resamples=100)
    assert frame.attrs["counts"] == {s: int(n) for s, n in scores["box_side"].value_counts().items()}
    frame = breakdown(runs, "n-boxes", metrics=("miou",), n_resamples=100)
    assert frame.attrs["counts"] == {str(n): int(c) for n, c in scores["n_boxes"].value_counts().sort_index().items()}


def _moved(tmp_path, run, scores):
    """The run with its summary beside a replaced scores.csv in tmp_path."""
    folder = tmp_path / run.name
    folder.mkdir()
    scores.to_csv(folder / "scores.csv", index=False)
    moved = dataclasses.replace(run, path=folder / "summary.json")
    (folder / "summary.json").write_text(moved.to_json())
    return moved


def test_a_run_from_before_the_strata_columns_is_named(tmp_path, demo_runs):
    oracle, center = _demo(demo_runs)
    scores = pd.read_csv(demo_runs / "demo" / "center-gaussian" / "scores.csv")
    old = _moved(tmp_path, center, scores.drop(columns=["box_fraction", "box_side"]))
    with pytest.raises(CxrbenchError, match=r"run 'center-gaussian' has no box_fraction in .*scores.csv: .*rerun it"):
        breakdown([oracle, old], "box-size", n_resamples=100)
    with pytest.raises(CxrbenchError, match="run 'center-gaussian' has no box_side"):
        breakdown([oracle, old], "side", side_from="boxes", n_resamples=100)
    assert len(breakdown([oracle, old], "n-boxes", metrics=("cnr",), n_resamples=100)) == 2 * 2  # not needed


def test_a_bad_stratum_value_names_the_row(tmp_path, demo_runs):
    oracle, center = _demo(demo_runs)
    scores = pd.read_csv(demo_runs / "demo" / "center-gaussian" / "scores.csv")
    scores.loc[3, "box_side"] = "up"
    with pytest.raises(CxrbenchError, match=r"scores.csv, row 5: box_side 'up' cannot be stratified"):
        breakdown([oracle, _moved(tmp_path, center, scores)], "side", side_from="boxes", n_resamples=100)


def test_runs_of_other_data_or_protocol_are_refused(demo_runs):
    oracle, center = _demo(demo_runs)
    for field, value, message in [
        ("manifest_sha256", "0" * 64, "different dataset manifests"),
        ("protocol", "published", "different protocols"),
        ("scorer_version", oracle.identity.scorer_version + 1, "different scorer versions"),
        ("dataset", "mscxr", "different datasets"),
    ]:
        other = dataclasses.replace(center, identity=dataclasses.replace(center.identity, **{field: value}))
        with pytest.raises(CxrbenchError, match=message) as error:
            breakdown([oracle, other], "class", n_resamples=100)
        assert "\n" not in str(error.value)


def test_formats_show_the_cells_counts_and_cut_points(demo_runs):
    frame = breakdown(_demo(demo_runs), "box-size", metrics=("cnr", "miou"), n_resamples=100)
    q1, q2 = (f"{100 * q:.3g} %" for q in frame.attrs["cuts"])
    markdown = format_breakdown(frame).splitlines()
    header = "| Box size | N | oracle-gaussian CNR | oracle-gaussian mIoU (%) | center-gaussian CNR | center-gaussian"
    assert markdown[0] == header + " mIoU (%) |"
    small = frame[(frame["stratum"] == "small") & (frame["method"] == "center-gaussian") & (frame["metric"] == "miou")]
    cell = f"{100 * small['mean'].iloc[0]:.1f} [{100 * small['low'].iloc[0]:.1f}, {100 * small['high'].iloc[0]:.1f}]"
    assert markdown[2].startswith(f"| small (≤ {q1}) | {frame.attrs['counts']['small']} | ")
    assert markdown[2].endswith(f" | {cell} |")
    assert f"cut at {q1} and {q2} for every method" in markdown[-1]
    csv = pd.read_csv(StringIO(format_breakdown(frame, "csv")))
    assert len(csv) == len(frame)
    np.testing.assert_allclose(csv["mean"], frame["mean"] * frame["metric"].map({"cnr": 1, "miou": 100}), rtol=1e-5)
    assert set(csv["protocol"]) == {"cxrbench"} and list(csv["pairs"][:4]) == [frame.attrs["counts"]["small"]] * 4
    latex = format_breakdown(frame, "latex")
    assert f"cut at {q1} and {q2}".replace("%", "\\%") in latex and "\\label{tab:breakdown-box-size}" in latex
    assert "small ($\\leq$ " in latex


@pytest.mark.latex
def test_latex_compiles(demo_runs, tmp_path):
    require_latex("booktabs.sty")
    tex = format_breakdown(breakdown(_demo(demo_runs), "box-size", metrics=("cnr",), n_resamples=100), "latex")
    rng = np.random.default_rng(4)
    names = {"ours_v2+x": _scores(rng), "base@published": _scores(rng)}  # characters run names may hold
    tex += format_breakdown(breakdown_scores(names, "n-boxes", metrics=("miou",), n_resamples=100), "latex")
    assert "{ours\\_v2+x}" in tex
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "Overfull" not in result.stdout


def test_cli_breakdown(demo_runs, tmp_path, cli):
    runner = CliRunner()
    args = ["breakdown", str(demo_runs), "-d", "demo", "--by", "prompt-length", "--metrics", "cnr"]
    result = runner.invoke(cxrbench_cli, [*args, "--n-resamples", "100", "--seed", "3", "--format", "csv"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(StringIO(result.stdout))
    frame = breakdown(_demo(demo_runs)[::-1], "prompt-length", metrics=("cnr",), n_resamples=100, seed=3)
    assert list(table["method"].unique()) == ["center-gaussian", "oracle-gaussian"]  # all runs, by name
    merged = table.merge(frame, on=["stratum", "method", "metric"], suffixes=("", "_api"))
    assert len(merged) == len(frame)
    np.testing.assert_allclose(merged[["mean", "low", "high"]], merged[["mean_api", "low_api", "high_api"]], rtol=1e-5)
    result = runner.invoke(cxrbench_cli, [*args, "--n-resamples", "100", "--output", str(tmp_path / "b" / "t.md")])
    assert result.exit_code == 0 and (tmp_path / "b" / "t.md").read_text().startswith("| Prompt words | N |")
    missing = cli("breakdown", str(demo_runs), "-d", "demo", "--by", "side", "--methods", "oracle-gaussian,lut-prior")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: no stored run of lut-prior on 'demo'; runs exist for center-gaussian, oracle-gaussian"
    ]
