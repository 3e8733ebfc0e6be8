"""The block-weighted scorer (cxrbench.benchmark.weighted) against scoring the full image frame."""

import math
from contextlib import nullcontext

import numpy as np
import pytest

from cxrbench.benchmark import metrics
from cxrbench.benchmark.protocol import to_image_frame
from cxrbench.benchmark.weighted import SortedCounts, _ascending_order, score_nearest, score_square
from cxrbench.errors import CxrbenchError, MethodOutputError
from cxrbench.types import Box

from . import naive

PROTOCOLS = ("cxrbench", "published")


def _full(heatmap, height, width, boxes, protocol, interpolation="nearest"):
    frame = to_image_frame(heatmap, height, width, interpolation, protocol=protocol)
    return frame, metrics.score_pair(frame, boxes, protocol=protocol)


def _assert_same(got, expected):
    """Counts-derived scores equal bit for bit; CNR (float sums in another order) to 1e-12 relative."""
    np.testing.assert_equal(
        (got.iou, got.miou, got.auc, got.auc_binned, got.cnr_undefined),
        (expected.iou, expected.miou, expected.auc, expected.auc_binned, expected.cnr_undefined),
    )
    for name in ("cnr", "cnr_signed"):
        assert getattr(got, name) == pytest.approx(getattr(expected, name), rel=1e-12, abs=1e-12, nan_ok=True)


def _random_map(rng, height, width):
    heatmap = rng.random((height, width)).astype(np.float32)
    kind = rng.integers(4)
    if kind == 1:  # few levels: ties across blocks and across the target boundary
        heatmap = (np.round(heatmap * 3) / 3).astype(np.float32)
    elif kind == 2:  # raw scale, negative values (published scores it as returned)
        heatmap = (heatmap * 4 - 1.5).astype(np.float32)
    elif kind == 3:  # an LDM-like map: zero below a threshold
        heatmap[heatmap < 0.6] = 0
    heatmap[rng.random((height, width)) < rng.choice([0.0, 0.1, 0.5])] = np.nan
    if np.isnan(heatmap).all():
        heatmap[rng.integers(height), rng.integers(width)] = 0.25
    return heatmap


def _random_box(rng, height, width):
    """Boxes inside, across the borders, in the padding, one pixel, sub-pixel, negative (published slices)."""
    kind = rng.integers(4)
    if kind == 0:  # one pixel, integer corners
        x, y = int(rng.integers(width)), int(rng.integers(height))
        return Box(x, y, x + 1, y + 1)
    if kind == 1:  # sub-pixel, float
        x, y = rng.uniform(-1, width), rng.uniform(-1, height)
        return Box(x, y, x + rng.uniform(0.05, 1.5), y + rng.uniform(0.05, 1.5))
    if kind == 2:  # integer corners, as MS-CXR's x, y, w, h
        x, y = (int(v) for v in rng.integers(-width // 3, width, size=2))
        return Box(x, y, x + int(rng.integers(1, width + 1)), y + int(rng.integers(1, height + 1)))
    x, y = rng.uniform(-0.3 * width, width), rng.uniform(-0.3 * height, height)
    return Box(x, y, x + rng.uniform(0.5, width), y + rng.uniform(0.5, height))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_equals_full_frame_on_random_pairs(protocol):
    """Up- and downsampled maps, odd and even margins, portrait and landscape, NaN maps, 0-4 adversarial boxes."""
    rng = np.random.default_rng(19)
    for _ in range(600):
        h0, w0 = (int(v) for v in rng.integers(1, 14, size=2))
        height, width = (int(v) for v in rng.integers(1, 70, size=2))
        heatmap = _random_map(rng, h0, w0)
        boxes = [_random_box(rng, height, width) for _ in range(rng.integers(0, 5))]
        if np.isnan(to_image_frame(heatmap, height, width, "nearest", protocol="published")).all():
            continue  # every shown source pixel is NaN: test_shown_pixels_all_nan
        expected = _full(heatmap, height, width, boxes, protocol)[1]
        _assert_same(score_nearest(heatmap, height, width, boxes, protocol=protocol), expected)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("map_side", "height", "width"),
    [(512, 3056, 2544), (512, 2544, 3056), (64, 2048, 2048), (14, 1001, 640), (37, 300, 513)],
)
def test_equals_full_frame_at_image_sizes(protocol, map_side, height, width):
    """Real sizes: MIMIC-CXR portrait (and landscape), square, a BioViL-sized grid, odd sizes."""
    rng = np.random.default_rng(map_side + height)
    heatmap = _random_map(rng, map_side, map_side)
    side = min(height, width)
    boxes = [Box(0, 0, width, 1), Box(width // 3, height // 4, width // 3 + 700, height // 4 + 800)]
    boxes += [_random_box(rng, height, width) for _ in range(2)]
    boxes += [Box(0.5, 1.5, 0.5 + side / map_side / 2, 1.5 + side / map_side / 3)]  # inside one block
    _assert_same(
        score_nearest(heatmap, height, width, boxes, protocol=protocol),
        _full(heatmap, height, width, boxes, protocol)[1],
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_equals_naive_references_by_hand(protocol):
    """A 2 x 2 map to a 6 x 4 image (blocks of 2 x 2, one padding row above and below), against the per-pixel
    references of tests/benchmark/naive.py on the frame built by hand."""
    heatmap = np.array([[0.1, 0.9], [0.4, np.nan]], dtype=np.float32)
    frame = np.full((6, 4), np.nan, dtype=np.float32)
    frame[1:5] = np.repeat(np.repeat(heatmap, 2, axis=0), 2, axis=1)
    if protocol == "cxrbench":
        frame = (frame - np.float32(0.1)) / np.float32(0.8)  # min-max over the valid pixels
    boxes = [(1, 0, 3, 3), (0, 2, 2, 5), (2.5, 3.5, 2.7, 3.7)]
    got = score_nearest(heatmap, 6, 4, [Box(*b) for b in boxes], protocol=protocol)
    target = naive.mask(boxes, 6, 4, protocol)
    assert got.iou == pytest.approx([naive.iou(frame, target, t) for t in metrics.IOU_THRESHOLDS], abs=1e-15)
    assert got.auc_binned == pytest.approx(naive.auc_binned(frame, target), abs=1e-7)
    reference = naive.published_pair_cnr if protocol == "published" else naive.pair_cnr
    assert got.cnr == pytest.approx(reference(frame, boxes), rel=1e-6)
    assert got.cnr_signed == pytest.approx(reference(frame, boxes, signed=True), rel=1e-6)


def test_ties_across_blocks_by_hand():
    """Map [[0, 1], [1, 0]] to a 4 x 4 image, blocks of 2 x 2; the box covers rows 0-1, columns 0-2:

        0 0 1 | 1        target: four 0s and two 1s; background: four 0s and six 1s
        0 0 1 | 1
        1 1 0   0        AUC: each target 0 ties 4 background 0s (4 x 2), each target 1 beats 4 and ties 6
        1 1 0   0        (2 x 7): 22 / (6 x 10). IoU: the 8 ones are predicted, 2 in the target, union 6 + 6.
    Binned: (fp, tp) = (6, 2) for t = 1 .. 0.25, (10, 6) at 0: area 6 + 16 = 22, over 60 as well.
    CNR: in {0 x 4, 1 x 2} mean 1/3, variance 2/9; out {0 x 4, 1 x 6} mean 3/5, variance 6/25."""
    heatmap = np.array([[0, 1], [1, 0]], dtype=np.float32)
    cnr = (3 / 5 - 1 / 3) / math.sqrt(2 / 9 + 6 / 25)
    for protocol in PROTOCOLS:
        got = score_nearest(heatmap, 4, 4, [Box(0, 0, 3, 2)], protocol=protocol)
        assert got.auc == pytest.approx(22 / 60, abs=1e-15)
        assert got.auc_binned == pytest.approx(22 / 60, abs=1e-7)
        assert got.iou == pytest.approx((2 / 12,) * 5, abs=1e-15)
        assert got.cnr == pytest.approx(cnr, rel=1e-12)
        assert got.cnr_signed == pytest.approx(-cnr, rel=1e-12)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_published_order_and_repeated_boxes(protocol):
    """Overlapping, nested and repeated boxes in both orders: the published rule removes earlier boxes."""
    heatmap = _random_map(np.random.default_rng(5), 7, 7)
    a, b, c = Box(3, 4, 40, 30), Box(20, 10, 55, 50), Box(25, 15, 30, 20)
    for boxes in ([a, b], [b, a], [a, a], [b, c], [c, b], [a, b, c, a]):
        _assert_same(
            score_nearest(heatmap, 60, 50, boxes, protocol=protocol), _full(heatmap, 60, 50, boxes, protocol)[1]
        )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_constant_maps_and_one_valid_value(protocol):
    """Zero pooled variance (section 5) must be flagged exactly as on the frame: constant 0.4 (raw under
    published, 0 after min-max), and a map with one valid value."""
    one = np.full((5, 5), np.nan, dtype=np.float32)
    one[2, 3] = 0.7
    for heatmap in (np.full((9, 9), 0.4, dtype=np.float32), one):
        for boxes in ([Box(10, 20, 200, 150)], [Box(10, 20, 200, 150), Box(0, 0, 250, 300)], []):
            got = score_nearest(heatmap, 300, 250, boxes, protocol=protocol)
            _assert_same(got, _full(heatmap, 300, 250, boxes, protocol)[1])
            assert got.cnr_undefined == len(boxes)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shown_pixels_all_nan(protocol):
    """A shrunk map whose shown source pixels are all NaN: the frame has no valid pixel, and both paths agree
    (under cxrbench both warn in the min-max of no value, as NumPy's nanmin does)."""
    heatmap = np.full((4, 4), np.nan, dtype=np.float32)
    heatmap[1, 1] = 0.5  # nearest 4 -> 2 shows source rows and columns 0 and 2 only
    boxes = [Box(0, 0, 1, 1)]
    warns = (lambda: pytest.warns(RuntimeWarning, match="All-NaN")) if protocol == "cxrbench" else nullcontext
    with warns():
        expected = _full(heatmap, 2, 2, boxes, protocol)[1]
    with warns():
        got = score_nearest(heatmap, 2, 2, boxes, protocol=protocol)
    assert math.isnan(got.auc) and got.cnr_undefined == 1
    _assert_same(got, expected)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_score_square_picks_the_path_and_equals_the_frame(protocol):
    rng = np.random.default_rng(3)
    boxes = [Box(5, 7, 40, 33), Box(30.5, 2.2, 47.9, 20.1)]
    for shape, interpolation in (
        ((8, 8), "nearest"),
        ((8, 11), "nearest"),
        ((8, 8), "bilinear"),
        ((50, 50), "bilinear"),
    ):
        heatmap = _random_map(rng, *shape)
        got = score_square(heatmap, 61, 50, boxes, interpolation, protocol=protocol)
        _assert_same(got, _full(heatmap, 61, 50, boxes, protocol, interpolation)[1])


def test_bad_input_is_a_clear_error():
    with pytest.raises(MethodOutputError, match="2-D"):
        score_square(np.zeros(5), 10, 10, [], "nearest")
    with pytest.raises(MethodOutputError, match="infinite"):
        score_nearest(np.full((2, 2), np.inf), 10, 10, [])
    with pytest.raises(CxrbenchError, match="unknown scoring protocol 'paper'"):
        score_square(np.zeros((2, 2)), 10, 10, [], "nearest", protocol="paper")
    with pytest.raises(CxrbenchError, match="interpolation"):
        score_square(np.zeros((2, 2)), 10, 10, [], "cubic")


def test_ascending_order_sorts_every_float32():
    """The two-pass radix sort of the weighted split: signed zeros, subnormals, negatives, ties, extremes; ties
    keep their index order, as NumPy's stable sort (which orders -0.0 and 0.0 by index: not compared there)."""
    rng = np.random.default_rng(8)
    special = np.array([-0.0, 0.0, 1e-45, -1e-45, 1e-38, -3.4e38, 3.4e38, -1.0, 1.0, 0.5], dtype=np.float32)
    for values in (
        special,
        rng.choice(special, 1000),
        (rng.standard_normal(5000) * 10.0 ** rng.integers(-40, 38, 5000)).astype(np.float32),
        np.zeros(7, dtype=np.float32),
        np.array([], dtype=np.float32),
    ):
        order = _ascending_order(values)
        np.testing.assert_array_equal(np.sort(order), np.arange(values.size))  # a permutation
        np.testing.assert_array_equal(values[order], np.sort(values))  # equal as floats: -0.0 == 0.0
    for values in (
        rng.integers(-3, 4, 3000).astype(np.float32),  # many ties, negative values
        rng.random(70_000).astype(np.float32),  # more than 2 ** 16 values
        np.round(rng.standard_normal(5000), 1).astype(np.float32) + np.float32(0.0),  # no -0.0
    ):
        np.testing.assert_array_equal(_ascending_order(values), np.argsort(values, kind="stable"))


def _naive_counts(values, target, background, thresholds):
    """Per pixel, in plain Python: 2U (each target pixel: background pixels below + those below or equal) and
    the target / background pixels above each threshold (> t and >= t)."""
    pixels = [(float(v), t, b) for v, t, b in zip(values, target, background, strict=True)]
    twice_u = sum(t * b2 * (2 * (v > w) + (v == w)) for v, t, _ in pixels for w, _, b2 in pixels)
    above = {
        (part, inclusive): [
            sum(p[part] for p in pixels if (p[0] >= np.float32(th) if inclusive else p[0] > np.float32(th)))
            for th in thresholds
        ]
        for part in (1, 2)
        for inclusive in (False, True)
    }
    return twice_u, above


@pytest.mark.parametrize(
    "kind", ["distinct", "two values", "few values", "constant", "signed zeros", "one value per part", "no target"]
)
def test_sorted_counts_equal_per_pixel_counts(kind):
    """`SortedCounts` (one sort, running sums, tie groups) against all pixel pairs counted one by one: ties
    within and across the two parts, zero weights (NaN blocks, blocks of one part only), -0.0 tying 0.0."""
    rng = np.random.default_rng(len(kind))
    thresholds = (0.0, 0.1, 0.25, 0.5, 1.0, -0.0, 2.0)
    for _ in range(30):
        n = int(rng.integers(1, 60))
        values = {
            "distinct": rng.random(n),
            "two values": rng.choice([0.0, 1.0], n),
            "few values": rng.choice([-0.5, 0.1, 0.25, 0.7], n),
            "constant": np.full(n, 0.25),
            "signed zeros": rng.choice([-0.0, 0.0, 0.5], n),
            "one value per part": np.full(n, 0.5),
            "no target": rng.random(n),
        }[kind].astype(np.float32)
        everything = rng.integers(0, 30, n)
        target = np.minimum(rng.integers(0, 30, n), everything)
        if kind == "no target":
            target[:] = 0
        background = everything - target
        got = SortedCounts.of(values, target, everything, int(target.sum()) + 3)
        twice_u, above = _naive_counts(values, target, background, thresholds)
        n_pos, n_neg = int(target.sum()), int(background.sum())
        expected_auc = twice_u / (2 * n_pos * n_neg) if n_pos and n_neg else math.nan
        np.testing.assert_equal(got.auc(), expected_auc)
        for inclusive in (False, True):
            np.testing.assert_array_equal(got.count_above(got.target, thresholds, inclusive), above[1, inclusive])
            np.testing.assert_array_equal(got.count_above(got.background, thresholds, inclusive), above[2, inclusive])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tied_and_few_valued_maps_at_mimic_size(protocol):
    """Maps whose values tie across many blocks (two or three levels, an LDM-like map zero below its threshold,
    signed zeros, a constant map) at MIMIC-CXR size, boxes cutting blocks, against the full frame."""
    rng = np.random.default_rng(11)
    raw = rng.random((512, 512)).astype(np.float32)
    maps = [
        (raw > 0.5).astype(np.float32),
        np.round(raw * 2).astype(np.float32) / 2,
        np.where(raw < 0.8, np.float32(0), raw),
        np.where(raw > 0.9, np.float32(1), np.where(raw < 0.5, np.float32(-0.0), np.float32(0.0))),
        np.full((512, 512), 0.3, dtype=np.float32),
    ]
    maps[-2][:, :9] = np.nan
    boxes = [Box(100.5, 200.25, 900.7, 1300.1), Box(1400, 300, 2450, 1700), Box(2543, 0, 2544, 3056)]
    for heatmap in maps:
        _assert_same(
            score_nearest(heatmap, 3056, 2544, boxes, protocol=protocol),
            _full(heatmap, 3056, 2544, boxes, protocol)[1],
        )
