"""Scoring predictions made elsewhere: box CSVs and heatmap files, malformed ones included."""

import math

import numpy as np
import pandas as pd
import pytest

from cxrbench.benchmark.metrics import boxes_to_mask, score_boxes
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.datasets.demo import DemoDataset
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.tables import build_leaderboard, to_markdown

SAMPLES = list(DemoDataset())[:16]


def _run(method, tmp_path, **kwargs):
    return run_benchmark(method, "demo", out=tmp_path / "runs", limit=16, n_resamples=100, progress=False, **kwargs)


def test_box_iou_against_the_naive_definition():
    gt = [(10, 10, 30, 40), (50, 5, 60, 15)]
    pred = [(15, 12, 35, 38)]
    p, t = boxes_to_mask(pred, 64, 80), boxes_to_mask(gt, 64, 80)
    expected = (p & t).sum() / (p | t).sum()
    scores = score_boxes(pred, gt, 64, 80)
    assert scores.miou == pytest.approx(expected)
    assert scores.iou == (pytest.approx(expected),) * 5
    assert math.isnan(scores.cnr) and math.isnan(scores.auc)
    assert score_boxes([], gt, 64, 80).miou == 0.0


def test_box_predictions_scored_with_misses(cli, tmp_path):
    rows = []
    for s in SAMPLES[:12]:  # the last 4 pairs get no prediction
        for b in s.boxes:
            rows.append({"pair_id": s.pair_id, "x_min": b.x_min, "y_min": b.y_min, "x_max": b.x_max, "y_max": b.y_max})
    pd.DataFrame(rows).to_csv(tmp_path / "preds.csv", index=False)
    result = cli("run", "-m", "boxes:preds.csv", "-d", "demo", "--limit", "16", "--no-progress", "--n-resamples", "50")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "demo" / "boxes-preds"
    scores = pd.read_csv(run / "scores.csv", dtype={"pair_id": str})
    assert scores["miou"].tolist() == [1.0] * 12 + [0.0] * 4
    assert scores["no_prediction"].tolist() == [False] * 12 + [True] * 4
    assert scores["cnr"].isna().all()
    table = cli("table", "runs", "--dataset", "demo")
    header = table.stdout.splitlines()[0]
    assert header == "| Class | N | boxes-preds CNR | boxes-preds mIoU (%) | boxes-preds no box |"
    average = table.stdout.strip().splitlines()[-1]
    assert average.startswith("| **Average** | 16 | -- | 75.0 [")
    assert average.endswith("] | 4 |")


def test_malformed_box_file(cli, tmp_path):
    (tmp_path / "bad.csv").write_text("pair_id,x_min,y_min,x_max\ndemo-000,1,2,3\n")
    result = cli("run", "-m", "boxes:bad.csv", "-d", "demo", "--no-progress")
    assert result.returncode == 2
    assert "box prediction file bad.csv lacks the column(s) y_max" in result.stderr
    (tmp_path / "bad.csv").write_text("pair_id,x_min,y_min,x_max,y_max\ndemo-000,1,2,3,\ndemo-001,5,5,50,60\n")
    skipped = cli(
        "run",
        "-m",
        "boxes:bad.csv",
        "-d",
        "demo",
        "--limit",
        "2",
        "--on-error",
        "skip",
        "--no-progress",
        "--n-resamples",
        "20",
    )
    assert skipped.returncode == 0, skipped.stderr
    errors = pd.read_csv(tmp_path / "runs" / "demo" / "boxes-bad" / "errors.csv")
    assert errors["error"][0].startswith("bad.csv, line 2: box is partly missing")


@pytest.mark.parametrize("layout", ["npy", "npz"])
def test_heatmap_files_equal_the_method_that_made_them(tmp_path, layout):
    oracle = _run("oracle-gaussian", tmp_path)
    from cxrbench.baselines.gaussians import OracleGaussian
    from cxrbench.baselines.predictions import heatmap_file_name

    maps = {s.pair_id: OracleGaussian().heatmap_for_sample(s) for s in SAMPLES}
    if layout == "npy":
        (tmp_path / "maps").mkdir()
        for pair_id, m in maps.items():
            np.save(tmp_path / "maps" / heatmap_file_name(pair_id), m)
        path = tmp_path / "maps"
    else:
        path = tmp_path / "maps.npz"
        np.savez(path, **maps)
    imported = _run(f"heatmaps:{path}", tmp_path)
    columns = ["cnr", "miou", "auc", "auc_binned"]
    pd.testing.assert_frame_equal(oracle.scores[columns], imported.scores[columns])


def test_square_heatmap_files_go_through_the_protocol(tmp_path):
    from cxrbench.baselines.gaussians import CenterGaussian

    center = _run("center-gaussian", tmp_path)
    (tmp_path / "maps").mkdir()
    for s in SAMPLES:
        np.save(tmp_path / "maps" / f"{s.pair_id}.npy", CenterGaussian().heatmap(None, s.prompt))
    imported = _run(f"heatmaps:{tmp_path / 'maps'}", tmp_path)
    pd.testing.assert_frame_equal(center.scores[["cnr", "miou", "auc"]], imported.scores[["cnr", "miou", "auc"]])


def test_malformed_heatmap_files_are_reported_per_file(tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    np.save(folder / "demo-000.npy", np.zeros((3, 4, 5)))
    np.save(folder / "demo-001.npy", np.full((8, 8), np.nan))
    np.save(folder / "demo-002.npy", np.zeros((7, 9)))
    (folder / "demo-003.npy").write_bytes(b"not numpy")
    np.save(folder / "demo-004.npy", np.array([["a", "b"], ["c", "d"]]))
    result = _run(f"heatmaps:{folder}", tmp_path, on_error="skip")
    errors = result.errors.set_index("pair_id")["error"]
    assert "must be 2-D" in errors["demo-000"]
    assert "NaN everywhere" in errors["demo-001"]
    assert "neither square" in errors["demo-002"]
    assert "cannot read" in errors["demo-003"]
    assert "not a real number type" in errors["demo-004"]
    assert "no heatmap file for pair demo-005" in errors["demo-005"]
    assert all(str(folder) in errors[p] for p in ["demo-000", "demo-001", "demo-003"])
    with pytest.raises(CxrbenchError, match="pair demo-000"):
        _run(f"heatmaps:{folder}", tmp_path / "again")


def test_export_pairs(cli, tmp_path):
    result = cli("export-pairs", "--dataset", "demo", "--output", "pairs.csv")
    assert result.returncode == 0, result.stderr
    pairs = pd.read_csv(tmp_path / "pairs.csv", dtype=str)
    assert list(pairs.columns) == [
        "pair_id",
        "image_id",
        "class_name",
        "prompt",
        "image_path",
        "height",
        "width",
        "heatmap_file",
    ]
    assert len(pairs) == 64
    assert pairs["heatmap_file"][0] == "demo-000.npy"


def test_prefixed_name_needs_a_path():
    from cxrbench.registry import load_method

    with pytest.raises(CxrbenchError, match="needs a path after the colon"):
        load_method("boxes:")
    board = build_leaderboard([{"dataset": "d", "method": "m", "classes": {}, "config": {}}])
    assert "m CNR" in to_markdown(board)
