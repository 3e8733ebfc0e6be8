import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrbench.benchmark import metrics
from cxrbench.benchmark.protocol import to_image_frame
from cxrbench.types import Box

from . import naive

THRESHOLDS = metrics.IOU_THRESHOLDS


def _frame(rng, height, width, nan_rows=0, nan_cols=0, levels=None):
    heatmap = rng.random((height, width)).astype(np.float32)
    if levels:
        heatmap = (np.round(heatmap * levels) / levels).astype(np.float32)
    heatmap[:nan_rows] = np.nan
    heatmap[height - nan_rows :] = np.nan
    heatmap[:, :nan_cols] = np.nan
    heatmap[:, width - nan_cols :] = np.nan
    return heatmap


# (height, width, NaN border rows, NaN border cols, boxes): adversarial layouts.
CASES = {
    "inside": (24, 31, 0, 0, [(3.2, 4.7, 11.1, 13.0)]),
    "two_overlapping": (24, 31, 0, 0, [(2, 2, 12, 10), (8, 6, 20, 18)]),
    "touching_border": (20, 26, 0, 0, [(0, 0, 5, 7), (21, 13, 26, 20)]),
    "crossing_border": (20, 26, 0, 0, [(-4.5, -2, 6, 5), (22, 15, 31.7, 27)]),
    "one_pixel": (20, 26, 0, 0, [(7, 9, 8, 10)]),
    "sub_pixel": (20, 26, 0, 0, [(7.2, 9.1, 7.4, 9.3)]),
    "whole_image": (18, 22, 0, 0, [(0, 0, 22, 18)]),
    "portrait_padding": (30, 20, 5, 0, [(2, 1, 9, 12), (12, 20, 19, 29)]),
    "landscape_padding": (20, 30, 0, 5, [(0, 3, 8, 12), (14, 4, 22, 17)]),
    "box_in_padding": (20, 30, 0, 5, [(0, 3, 4, 12), (14, 4, 22, 17)]),
    "box_wholly_in_padding": (20, 30, 0, 5, [(0, 3, 4, 12)]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("levels", [None, 7])
def test_metrics_equal_naive_references(case, levels):
    height, width, nan_rows, nan_cols, boxes = case
    rng = np.random.default_rng(hash((height, width, len(boxes))) % 2**32)
    heatmap = _frame(rng, height, width, nan_rows, nan_cols, levels)
    target = naive.mask(boxes, height, width)
    np.testing.assert_array_equal(metrics.boxes_to_mask(boxes, height, width), target)

    valid = ~np.isnan(heatmap)
    labels, scores = target[valid], heatmap[valid]
    expected_auc = roc_auc_score(labels, scores) if 0 < labels.sum() < labels.size else math.nan
    expected_iou = [naive.iou(heatmap, target, t) for t in THRESHOLDS]
    got_auc = metrics.auc_roc(heatmap, target)
    assert got_auc == pytest.approx(expected_auc, abs=1e-12, nan_ok=True)
    np.testing.assert_allclose(metrics.iou_at(heatmap, target, THRESHOLDS), expected_iou, atol=1e-12)
    assert metrics.miou(heatmap, target) == pytest.approx(np.mean(expected_iou), abs=1e-12)
    for signed in (False, True):
        assert metrics.cnr(heatmap, target, signed) == pytest.approx(
            naive.cnr(heatmap, target, signed), abs=1e-9, nan_ok=True
        )

    pair = metrics.score_pair(heatmap, [Box(*b) for b in boxes])
    assert pair.cnr == pytest.approx(naive.pair_cnr(heatmap, boxes), abs=1e-9)
    assert pair.cnr_signed == pytest.approx(naive.pair_cnr(heatmap, boxes, signed=True), abs=1e-9)
    assert pair.miou == pytest.approx(np.mean(expected_iou), abs=1e-12)
    assert pair.auc == pytest.approx(expected_auc, abs=1e-12, nan_ok=True)
    np.testing.assert_allclose(pair.iou, expected_iou, atol=1e-12)
    per_box = [naive.cnr(heatmap, naive.mask([b], height, width)) for b in boxes]
    assert pair.cnr_undefined == sum(math.isnan(v) for v in per_box)
    if not math.isnan(expected_auc):
        assert pair.auc_binned == pytest.approx(naive.auc_binned(heatmap, target), abs=1e-12)


def test_box_wholly_in_padding_counts_zero_and_is_flagged():
    heatmap = _frame(np.random.default_rng(1), 20, 30, 0, 5)
    pair = metrics.score_pair(heatmap, [Box(0, 3, 4, 12), Box(14, 4, 22, 17)])
    inside = naive.cnr(heatmap, naive.mask([(14, 4, 22, 17)], 20, 30))
    assert pair.cnr_undefined == 1
    assert pair.cnr == pytest.approx(inside / 2, abs=1e-9)


def test_constant_heatmap():
    heatmap = to_image_frame(np.full((16, 16), 3.0), 40, 30)
    target = metrics.boxes_to_mask([(5, 5, 15, 20)], 40, 30)
    assert np.nanmax(heatmap) == 0.0
    assert math.isnan(metrics.cnr(heatmap, target))
    assert metrics.auc_roc(heatmap, target) == pytest.approx(0.5)
    assert metrics.auc_roc(heatmap, target) == pytest.approx(
        roc_auc_score(target[~np.isnan(heatmap)], heatmap[~np.isnan(heatmap)])
    )
    np.testing.assert_array_equal(metrics.iou_at(heatmap, target), np.zeros(5))
    pair = metrics.score_pair(heatmap, [Box(5, 5, 15, 20)])
    assert (pair.cnr, pair.miou, pair.cnr_undefined) == (0.0, 0.0, 1)


def test_perfect_heatmap_scores_one():
    target = metrics.boxes_to_mask([(4, 6, 12, 15)], 20, 20)
    heatmap = target.astype(np.float32)
    assert metrics.miou(heatmap, target) == 1.0
    assert metrics.auc_roc(heatmap, target) == 1.0
    assert math.isnan(metrics.cnr(heatmap, target))  # zero pooled variance: undefined, not infinite


def test_threshold_is_strict_in_float32():
    target = np.zeros((1, 4), dtype=bool)
    target[0, :2] = True
    heatmap = np.array([[np.float32(0.1), 0.3, 0.1, 1.0]], dtype=np.float32)
    # 0.1 is not > 0.1; 0.3 is; background 0.1 is not, 1.0 is -> IoU(0.1) = 1 / 3
    assert metrics.iou_at(heatmap, target, [0.1])[0] == pytest.approx(1 / 3)
    assert metrics.iou_at(heatmap, target, [0.1])[0] == naive.iou(heatmap, target, 0.1)


def test_empty_target_and_empty_prediction():
    heatmap = np.zeros((5, 5), dtype=np.float32)
    empty = np.zeros((5, 5), dtype=bool)
    assert math.isnan(metrics.iou_at(heatmap, empty, [0.1])[0])
    assert math.isnan(metrics.auc_roc(heatmap, empty))
    assert metrics.boxes_to_mask([(10, 10, 20, 20)], 5, 5).sum() == 0


def test_auc_matches_sklearn_on_large_tied_maps():
    rng = np.random.default_rng(7)
    heatmap = (rng.integers(0, 50, size=(300, 257)) / 49).astype(np.float32)
    heatmap[:, :20] = np.nan
    target = metrics.boxes_to_mask([(30, 40, 200, 120), (10, 200, 90, 290)], 300, 257)
    valid = ~np.isnan(heatmap)
    expected = roc_auc_score(target[valid], heatmap[valid])
    assert metrics.auc_roc(heatmap, target) == pytest.approx(expected, abs=1e-12)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.auc_roc(np.zeros((4, 4)), np.zeros((4, 5), dtype=bool))
