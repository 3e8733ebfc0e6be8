import math
from dataclasses import astuple

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrbench.benchmark import metrics
from cxrbench.benchmark.protocol import to_image_frame
from cxrbench.errors import CxrbenchError
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
    "three_overlapping_float": (24, 31, 0, 0, [(2.5, 2.2, 12.9, 10.1), (8.7, 6.5, 20.2, 18.8), (1, 1, 9.5, 7)]),
    "nested": (24, 31, 0, 0, [(5, 5, 9, 9), (2, 2, 20, 20)]),
    "repeated": (24, 31, 0, 0, [(5, 5, 15, 12), (5, 5, 15, 12)]),
    "touching_border": (20, 26, 0, 0, [(0, 0, 5, 7), (21, 13, 26, 20)]),
    "crossing_border": (20, 26, 0, 0, [(-4.5, -2, 6, 5), (22, 15, 31.7, 27)]),
    "crossing_border_by_under_one": (20, 26, 0, 0, [(-0.5, -0.9, 6, 5)]),
    "wholly_outside": (20, 26, 0, 0, [(3, 2, 9, 8), (-9, -7, -2, -1)]),
    "one_pixel": (20, 26, 0, 0, [(7, 9, 8, 10)]),
    "sub_pixel": (20, 26, 0, 0, [(7.2, 9.1, 7.4, 9.3), (3, 4, 9, 11)]),
    "whole_image": (18, 22, 0, 0, [(0, 0, 22, 18)]),
    "portrait_padding": (30, 20, 5, 0, [(2, 1, 9, 12), (12, 20, 19, 29)]),
    "landscape_padding": (20, 30, 0, 5, [(0, 3, 8, 12), (14, 4, 22, 17)]),
    "box_in_padding": (20, 30, 0, 5, [(0, 3, 4, 12), (14, 4, 22, 17)]),
    "box_wholly_in_padding": (20, 30, 0, 5, [(0, 3, 4, 12)]),
}
PROTOCOLS = ("cxrbench", "published")


def _expected_pair_cnr(heatmap, boxes, protocol, signed=False):
    if protocol == "published":
        return naive.published_pair_cnr(heatmap, boxes, signed)
    return naive.pair_cnr(heatmap, boxes, signed)


def _expected_undefined(heatmap, boxes, protocol):
    height, width = heatmap.shape
    if protocol == "published":
        return sum(math.isnan(v) for v in naive.published_box_cnrs(heatmap, boxes))
    return sum(math.isnan(naive.cnr(heatmap, naive.mask([b], height, width))) for b in boxes)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("levels", [None, 7])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metrics_equal_naive_references(case, levels, protocol):
    height, width, nan_rows, nan_cols, boxes = case
    rng = np.random.default_rng(hash((height, width, len(boxes))) % 2**32)
    heatmap = _frame(rng, height, width, nan_rows, nan_cols, levels)
    target = naive.mask(boxes, height, width, protocol)
    np.testing.assert_array_equal(metrics.boxes_to_mask(boxes, height, width, protocol), target)

    valid = ~np.isnan(heatmap)
    labels, scores = target[valid], heatmap[valid]
    expected_auc = roc_auc_score(labels, scores) if 0 < labels.sum() < labels.size else math.nan
    expected_iou = [naive.iou(heatmap, target, t) for t in THRESHOLDS]
    got_auc = metrics.auc_roc(heatmap, target)
    assert got_auc == pytest.approx(expected_auc, abs=1e-12, nan_ok=True)
    np.testing.assert_allclose(metrics.iou_at(heatmap, target, THRESHOLDS), expected_iou, atol=1e-12)
    assert metrics.miou(heatmap, target) == pytest.approx(np.mean(expected_iou), abs=1e-12, nan_ok=True)
    assert metrics.auc_roc_binned(heatmap, target) == pytest.approx(naive.auc_binned(heatmap, target), abs=1e-12)
    for signed in (False, True):
        assert metrics.cnr(heatmap, target, signed) == pytest.approx(
            naive.cnr(heatmap, target, signed), abs=1e-9, nan_ok=True
        )

    pair = metrics.score_pair(heatmap, [Box(*b) for b in boxes], protocol=protocol)
    assert pair.cnr == pytest.approx(_expected_pair_cnr(heatmap, boxes, protocol), abs=1e-9)
    assert pair.cnr_signed == pytest.approx(_expected_pair_cnr(heatmap, boxes, protocol, signed=True), abs=1e-9)
    assert pair.cnr_undefined == _expected_undefined(heatmap, boxes, protocol)
    assert pair.miou == pytest.approx(np.mean(expected_iou), abs=1e-12, nan_ok=True)
    assert pair.auc == pytest.approx(expected_auc, abs=1e-12, nan_ok=True)
    np.testing.assert_allclose(pair.iou, expected_iou, atol=1e-12)
    assert pair.auc_binned == pytest.approx(naive.auc_binned(heatmap, target), abs=1e-12)


def test_protocols_differ_only_where_documented():
    """One box with integer corners: both rasterisations and both CNR rules coincide, so every metric does."""
    rng = np.random.default_rng(9)
    for _ in range(50):
        heatmap = _frame(rng, 23, 29, 0, int(rng.integers(0, 5)), levels=9 if rng.random() < 0.5 else None)
        x0, y0 = (int(v) for v in rng.integers(-3, 20, size=2))
        box = Box(x0, y0, x0 + int(rng.integers(1, 12)), y0 + int(rng.integers(1, 12)))
        if box.x_min < 0 or box.y_min < 0:  # published slicing counts a negative start from the far edge
            continue
        ours, theirs = (astuple(metrics.score_pair(heatmap, [box], protocol=p)) for p in PROTOCOLS)
        np.testing.assert_equal(ours, theirs)


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


# docs/protocol.md section 4.1, worked example: column 0 holds {0, 1}, column 2 holds {2, 3}, the rest {6..9}.
TWO_COLUMNS = np.array([[0, 6, 2, 7], [1, 8, 3, 9]], dtype=np.float32) / 9
COLUMN_0, COLUMN_2 = Box(0, 0, 1, 2), Box(2, 0, 3, 2)


def test_cnr_of_two_boxes_by_hand():
    # Box A = {0, 1}: mean 0.5, variance 0.25; box B = {2, 3}: mean 2.5, variance 0.25 (units of 1/9: CNR is
    # scale-free). cxrbench: A against {2, 3, 6, 7, 8, 9} (mean 35/6, variance 233/36): 32 / sqrt(242);
    # B against {0, 1, 6, 7, 8, 9} (mean 31/6, variance 425/36): 16 / sqrt(434).
    # published, A first: A as above; B against {6, 7, 8, 9} (mean 7.5, variance 1.25): 5 / sqrt(1.5).
    # published, B first: B as in cxrbench; A against {6, 7, 8, 9}: 7 / sqrt(1.5).
    a_all, b_all = 32 / math.sqrt(242), 16 / math.sqrt(434)
    a_rest, b_rest = 7 / math.sqrt(1.5), 5 / math.sqrt(1.5)
    cases = [
        ("cxrbench", [COLUMN_0, COLUMN_2], (a_all + b_all) / 2, 1.4125),
        ("cxrbench", [COLUMN_2, COLUMN_0], (a_all + b_all) / 2, 1.4125),
        ("published", [COLUMN_0, COLUMN_2], (a_all + b_rest) / 2, 3.0698),
        ("published", [COLUMN_2, COLUMN_0], (b_all + a_rest) / 2, 3.2418),
    ]
    for protocol, boxes, expected, rounded in cases:
        pair = metrics.score_pair(TWO_COLUMNS, boxes, protocol=protocol)
        assert pair.cnr == pytest.approx(expected, rel=1e-6)
        assert round(pair.cnr, 4) == rounded
        assert pair.cnr_signed == pytest.approx(-expected, rel=1e-6)  # both boxes are darker than the rest
        assert pair.cnr_undefined == 0


def test_published_cnr_drops_a_box_already_scored():
    """The same box twice: the second copy has no pixel left (all NaN in the published working copy)."""
    once = metrics.score_pair(TWO_COLUMNS, [COLUMN_0], protocol="published")
    twice = metrics.score_pair(TWO_COLUMNS, [COLUMN_0, COLUMN_0], protocol="published")
    assert twice.cnr == pytest.approx(once.cnr / 2)
    assert (once.cnr_undefined, twice.cnr_undefined) == (0, 1)
    assert metrics.score_pair(TWO_COLUMNS, [COLUMN_0, COLUMN_0]).cnr == pytest.approx(once.cnr)


@pytest.mark.parametrize(
    ("box", "cxrbench_cols", "published_cols"),
    [
        ((2.7, 0, 5.9, 1), [2, 3, 4, 5], [2, 3, 4]),  # int() truncates; cxrbench takes every touched pixel
        ((3, 0, 6, 1), [3, 4, 5], [3, 4, 5]),  # integer corners: MS-CXR's x .. x + w - 1 in both
        ((7.2, 0, 7.4, 1), [7], []),  # sub-pixel: int(7.2) == int(7.4), an empty slice
        ((-0.5, 0, 2.5, 1), [0, 1, 2], [0, 1]),  # int(-0.5) == 0
        ((-1.5, 0, 2.5, 1), [0, 1, 2], []),  # slice [-1:2] starts at the last column: empty
        ((-1.5, 0, 10.0, 1), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [9]),  # [-1:10]: the last column only
        ((-4, 0, -1, 1), [], [6, 7, 8]),  # [-4:-1] counts from the right edge
        ((8, 0, 40, 1), [8, 9], [8, 9]),  # past the right edge: cut at the border in both
    ],
)
def test_box_rasterisation_by_hand(box, cxrbench_cols, published_cols):
    for protocol, cols in (("cxrbench", cxrbench_cols), ("published", published_cols)):
        mask = metrics.boxes_to_mask([box], 3, 10, protocol)
        assert np.flatnonzero(mask[0]).tolist() == cols
        assert not mask[1:].any()


def test_binned_auc_by_hand():
    # pos {1}, neg {1, .2, 0}: from t = 1 down, (fp, tp) = (1, 1) four times, then (3, 1) at t = 0; with (0, 0):
    # area = 1 * (0 + 1) / 2 + 2 * (1 + 1) / 2 = 2.5 over 1 * 3 = 5/6 (2/3 without the (0, 0) point).
    heatmap = np.array([[1, 1, 0.2, 0]], dtype=np.float32)
    target = np.array([[True, False, False, False]])
    assert metrics.auc_roc_binned(heatmap, target) == pytest.approx(5 / 6, abs=1e-15)
    for protocol in PROTOCOLS:
        assert metrics.score_pair(heatmap, [Box(0, 0, 1, 1)], protocol=protocol).auc_binned == pytest.approx(5 / 6)
    assert metrics.auc_roc(heatmap, target) == pytest.approx(5 / 6)  # exact too: beats 2 of 3, ties 1


def test_binned_auc_is_half_when_a_class_has_no_valid_pixel():
    heatmap = np.array([[np.nan, 0.8, 0.2, 0.1]], dtype=np.float32)
    assert metrics.auc_roc_binned(heatmap, np.array([[True, False, False, False]])) == 0.5  # target only NaN
    assert metrics.auc_roc_binned(heatmap, np.zeros((1, 4), dtype=bool)) == 0.5
    assert metrics.auc_roc_binned(heatmap, np.ones((1, 4), dtype=bool)) == 0.5
    assert math.isnan(metrics.auc_roc(heatmap, np.zeros((1, 4), dtype=bool)))
    # below the lowest threshold is never counted: a raw map with negative background
    raw = np.array([[0.4, -0.2, -0.3, -1.0]], dtype=np.float32)
    assert metrics.auc_roc_binned(raw, np.array([[True, False, False, False]])) == 0.5


def test_binned_auc_thresholds_are_checked():
    heatmap, target = np.zeros((2, 2), dtype=np.float32), np.eye(2, dtype=bool)
    for bad in ([], [0.5, 0.25], [-0.1, 1.0], [0.0, 1.5]):
        with pytest.raises(ValueError, match="ascend within"):
            metrics.auc_roc_binned(heatmap, target, bad)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_zero_pooled_variance_is_undefined_and_flagged(protocol):
    """The one deliberate difference (docs/protocol.md section 5): the published code reports 3.4e38 here."""
    heatmap = np.zeros((6, 8), dtype=np.float32)
    heatmap[1:3, 2:5] = 1.0  # a perfect binary map: both sides constant
    pair = metrics.score_pair(heatmap, [Box(2, 1, 5, 3)], protocol=protocol)
    assert (pair.cnr, pair.cnr_signed, pair.cnr_undefined) == (0.0, 0.0, 1)
    assert pair.miou == 1.0
    assert pair.auc == 1.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_adversarial_pairs_do_not_crash(protocol):
    heatmap = _frame(np.random.default_rng(3), 12, 16, 0, 3)
    empty = metrics.score_pair(heatmap, [], protocol=protocol)
    assert math.isnan(empty.cnr) and math.isnan(empty.auc) and empty.auc_binned == 0.5
    assert empty.miou == 0.0 and empty.cnr_undefined == 0
    outside = metrics.score_pair(heatmap, [Box(40, 40, 50, 50)], protocol=protocol)
    assert (outside.cnr, outside.cnr_undefined, outside.miou) == (0.0, 1, 0.0)
    constant = np.where(np.isnan(heatmap), np.nan, np.float32(0.4))
    flat = metrics.score_pair(constant, [Box(4, 2, 9, 8)], protocol=protocol)
    assert (flat.cnr, flat.cnr_undefined, flat.auc, flat.auc_binned) == (0.0, 1, 0.5, 0.5)
    corner = metrics.score_pair(heatmap, [Box(12, 11, 13, 12)], protocol=protocol)  # last valid column and row
    assert corner.cnr_undefined == 0 and corner.cnr > 0


def test_score_boxes_rasterises_by_protocol():
    predicted, target = [Box(1.5, 0, 4.5, 1)], [Box(2, 0, 5, 1)]
    # cxrbench: columns 1..4 vs 2..4 -> 3 / 4; published: columns 1..3 vs 2..4 -> 2 / 4
    assert metrics.score_boxes(predicted, target, 1, 10).miou == pytest.approx(3 / 4)
    assert metrics.score_boxes(predicted, target, 1, 10, protocol="published").miou == pytest.approx(2 / 4)


def test_unknown_protocol_is_a_clear_error():
    for call in (
        lambda: metrics.score_pair(TWO_COLUMNS, [COLUMN_0], protocol="paper"),
        lambda: metrics.boxes_to_mask([COLUMN_0], 2, 4, protocol="paper"),
        lambda: metrics.score_boxes([COLUMN_0], [COLUMN_0], 2, 4, protocol="paper"),
    ):
        with pytest.raises(CxrbenchError, match="unknown scoring protocol 'paper'"):
            call()


@pytest.mark.parametrize("levels", [None, 3, 50])
def test_auc_matches_sklearn_whichever_part_is_larger(levels):
    """The exact AUC searches from the part with fewer values: a target smaller and larger than the background,
    with and without ties across the two parts."""
    rng = np.random.default_rng(levels or 0)
    heatmap = _frame(rng, 120, 90, 0, 7, levels)
    for boxes in ([(10, 10, 30, 40)], [(0, 0, 85, 110)], [(0, 0, 90, 60)]):
        target = metrics.boxes_to_mask(boxes, 120, 90)
        valid = ~np.isnan(heatmap)
        expected = roc_auc_score(target[valid], heatmap[valid])
        assert metrics.auc_roc(heatmap, target) == pytest.approx(expected, abs=1e-12)
        assert metrics.score_pair(heatmap, [Box(*b) for b in boxes]).auc == pytest.approx(expected, abs=1e-12)
