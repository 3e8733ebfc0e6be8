"""Scoring predictions made elsewhere: box CSVs and heatmap files, malformed ones included."""

import math

import numpy as np
import pandas as pd
import pytest

from cxrbench.benchmark.metrics import boxes_to_mask, score_boxes
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.datasets.demo import DemoDataset
from cxrbench.errors import CxrbenchError, DataError, MethodOutputError

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
    result = cli("run", "-m", "boxes:preds.csv", "-d", "demo", "--limit", "16", "--no-progress", "--n-resamples", "100")
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "runs" / "demo").glob("boxes-preds-*")
    name = run.name
    scores = pd.read_csv(run / "scores.csv", dtype={"pair_id": str})
    assert scores["miou"].tolist() == [1.0] * 12 + [0.0] * 4
    assert scores["no_prediction"].tolist() == [False] * 12 + [True] * 4
    assert scores["cnr"].isna().all()
    table = cli("table", "runs", "--dataset", "demo")
    header = table.stdout.splitlines()[0]
    assert header == f"| Class | N | {name} CNR | {name} mIoU (%) | {name} AUC (%) | {name} no box |"
    average = next(line for line in table.stdout.splitlines() if line.startswith("| **Average**"))
    assert average.startswith("| **Average** | 16 | -- | 75.0 [")
    assert average.endswith("] | -- | 4 |")  # no AUC for boxes; 4 misses


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
        "100",
    )
    assert skipped.returncode == 0, skipped.stderr
    (run,) = (tmp_path / "runs" / "demo").glob("boxes-bad-*")
    errors = pd.read_csv(run / "errors.csv")
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
    for s in SAMPLES[6:]:  # the rest are usable
        np.save(folder / f"{s.pair_id}.npy", np.ones((8, 8)))
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


def test_imported_predictions_with_one_folder_name_never_share_a_run(tmp_path):
    from cxrbench.baselines.predictions import HeatmapFiles

    a, b = tmp_path / "modelA" / "preds", tmp_path / "modelB" / "preds"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    names = {
        HeatmapFiles(a).name,
        HeatmapFiles(b).name,
        HeatmapFiles(tmp_path / "modelA" / ".." / "modelA" / "preds").name,
    }
    assert len(names) == 2 and all(n.startswith("heatmaps-preds-") for n in names)


def _sample(pair_id):
    from cxrbench.types import Box, ImageSource, Sample

    return Sample(pair_id, "img", "Pneumonia", "p", (Box(1, 1, 4, 4),), 8, 8, ImageSource(lambda: None, lambda: "x"))


def test_heatmap_files_are_never_read_outside_their_folder(tmp_path):
    from cxrbench.baselines.predictions import HeatmapFiles

    folder = tmp_path / "maps"
    (folder / "sub").mkdir(parents=True)
    np.save(tmp_path / "outside.npy", np.ones((8, 8)))
    (folder / "linked.npy").symlink_to(tmp_path / "outside.npy")
    (folder / "loop.npy").symlink_to(folder / "loop.npy")
    np.save(folder / ".._inside.npy", np.full((8, 8), 2.0))  # the spelling export-pairs gives "../inside"
    np.save(folder / "sub" / "x.npy", np.full((8, 8), 3.0))
    importer = HeatmapFiles(folder)
    for pair_id, leaves in [
        ("../outside", folder / "../outside.npy"),
        (str(tmp_path / "outside"), tmp_path / "outside.npy"),
        ("linked", folder / "linked.npy"),
        ("loop", folder / "loop.npy"),
        ("nul\0byte", folder / "nul\0byte.npy"),
    ]:
        with pytest.raises(MethodOutputError, match=r"lies outside .* refused") as info:
            importer.heatmap_for_sample(_sample(pair_id))
        assert str(leaves) in str(info.value) and str(folder) in str(info.value)
    assert importer.heatmap_for_sample(_sample("../inside")).max() == 2.0
    assert importer.heatmap_for_sample(_sample("sub/x")).max() == 3.0


def _box_rows(samples, spell=lambda s: s.pair_id):
    return [
        {"pair_id": spell(s), "x_min": b.x_min, "y_min": b.y_min, "x_max": b.x_max, "y_max": b.y_max}
        for s in samples
        for b in s.boxes
    ]


def test_box_ids_may_use_the_heatmap_file_spelling_of_export_pairs(tmp_path):
    from cxrbench.baselines.predictions import heatmap_file_name

    pd.DataFrame(_box_rows(SAMPLES, lambda s: heatmap_file_name(s.pair_id))).to_csv(tmp_path / "p.csv", index=False)
    result = _run(f"boxes:{tmp_path / 'p.csv'}", tmp_path)
    assert result.scores["miou"].tolist() == [1.0] * 16  # not 16 misses


def test_box_ids_match_pairs_under_every_spelling_without_ambiguity(tmp_path):
    from cxrbench.baselines.predictions import BoxPredictions

    rows = "pair_id,x_min,y_min,x_max,y_max\nimg1_aa.npy,1,1,3,3\nimg1_bb,2,2,5,5\nimg1:cc,1,1,2,2\nimg1_cc,4,4,6,6\n"
    (tmp_path / "p.csv").write_text(rows)
    boxes = BoxPredictions(tmp_path / "p.csv")
    assert boxes.check_pairs(["img1:aa", "img1:bb", "img1:cc", "img1_cc"]) is None
    as_tuples = {p: [b.as_tuple() for b in boxes.boxes_for_sample(_sample(p))] for p in ["img1:aa", "img1:bb"]}
    assert as_tuples == {"img1:aa": [(1, 1, 3, 3)], "img1:bb": [(2, 2, 5, 5)]}
    # "img1_cc" is a pair id of its own: its row is not also given to "img1:cc"
    assert [b.as_tuple() for b in boxes.boxes_for_sample(_sample("img1:cc"))] == [(1, 1, 2, 2)]
    assert [b.as_tuple() for b in boxes.boxes_for_sample(_sample("img1_cc"))] == [(4, 4, 6, 6)]
    with pytest.raises(DataError, match=r"p\.csv, line 3: id 'img1_bb' could mean pair img1/bb or img1:bb"):
        boxes.check_pairs(["img1:aa", "img1:bb", "img1/bb", "img1:cc", "img1_cc"])


def test_box_ids_that_match_no_pair_are_an_error_or_a_count(tmp_path):
    from cxrbench.baselines.predictions import BoxPredictions

    rows = _box_rows(SAMPLES[:4]) + [
        {"pair_id": f"typo-{i}", "x_min": 1, "y_min": 1, "x_max": 2, "y_max": 2} for i in range(7)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "p.csv", index=False)
    boxes = BoxPredictions(tmp_path / "p.csv")
    ids = [s.pair_id for s in DemoDataset()]
    first = len(_box_rows(SAMPLES[:4])) + 2  # the line of "typo-0"
    with pytest.raises(DataError) as info:
        boxes.check_pairs(ids, "fail")
    assert str(info.value) == (
        f"7 of the 11 ids in {tmp_path / 'p.csv'} name no pair of the dataset: "
        + ", ".join(f"'typo-{i}' (line {first + i})" for i in range(5))
        + ", ...; write the pair_id or heatmap_file column of `cxrbench export-pairs` (--on-error skip ignores them)"
    )
    assert boxes.check_pairs(ids, "skip") == (
        f"7 of the 11 ids in {tmp_path / 'p.csv'} name no pair of the dataset; their rows are ignored"
    )
    assert BoxPredictions(tmp_path / "p.csv").check_pairs(ids + [f"typo-{i}" for i in range(7)], "fail") is None


def test_a_run_checks_box_ids_against_every_pair_of_the_dataset(tmp_path):
    from cxrbench.benchmark.runner import run_benchmark

    rows = [*_box_rows(SAMPLES[:16]), {"pair_id": "demo-999", "x_min": 1, "y_min": 1, "x_max": 2, "y_max": 2}]
    rows += _box_rows(list(DemoDataset())[40:41])  # a real pair beyond --limit: not an unmatched id
    pd.DataFrame(rows).to_csv(tmp_path / "p.csv", index=False)
    kwargs = {"out": tmp_path / "runs", "limit": 16, "n_resamples": 100, "progress": False}
    with pytest.raises(CxrbenchError, match=r"1 of the 18 ids .* name no pair.*'demo-999' \(line"):
        run_benchmark(f"boxes:{tmp_path / 'p.csv'}", "demo", **kwargs)
    result = run_benchmark(f"boxes:{tmp_path / 'p.csv'}", "demo", on_error="skip", **kwargs)
    assert result.summary.classes["Average"]["miou"]["mean"] == 1.0
    assert result.summary.notes == [
        f"1 of the 18 ids in {tmp_path / 'p.csv'} name no pair of the dataset; their rows are ignored"
    ]


def test_a_pair_never_reads_another_pairs_heatmap_file(tmp_path):
    from cxrbench.baselines.predictions import HeatmapFiles, export_pairs

    folder = tmp_path / "maps"
    folder.mkdir()
    np.save(folder / "a_b.npy", np.ones((4, 4), dtype=np.float32))
    files = HeatmapFiles(folder)
    files.check_pairs(["a:b", "a_b"])
    assert files.heatmap_for_sample(_sample("a_b")).shape == (4, 4)
    with pytest.raises(MethodOutputError, match="no heatmap file for pair a:b"):
        files.heatmap_for_sample(_sample("a:b"))
    alone = HeatmapFiles(folder)
    alone.check_pairs(["a:b"])  # no pair a_b: the export spelling of a:b is its own file
    assert alone.heatmap_for_sample(_sample("a:b")).shape == (4, 4)
    with pytest.raises(DataError, match=r"pairs 'a:b' and 'a_b' would share the heatmap file a_b\.npy"):
        export_pairs([_sample("a:b"), _sample("a_b")])


def test_heatmap_identity_is_the_content_of_the_files(tmp_path):
    from cxrbench.baselines.predictions import HeatmapFiles

    folder = tmp_path / "maps"
    folder.mkdir()
    np.save(folder / "p.npy", np.ones((4, 4), dtype=np.float32))
    before = HeatmapFiles(folder).config()
    np.save(folder / "p.npy", np.zeros((4, 4), dtype=np.float32))
    assert HeatmapFiles(folder).config() != before
    moved = tmp_path / "moved"
    folder.rename(moved)
    assert HeatmapFiles(moved).config() == HeatmapFiles(moved).config()
    assert "path" not in HeatmapFiles(moved).config()
