"""The scorer against the libraries the published evaluation code runs on (docs/protocol.md): PyTorch's
nearest interpolation and slicing, and torcheval's binned AUROC. Torch-family tests: skipped without torch
unless CXRBENCH_REQUIRE_TORCH=1.

Set CXRBENCH_EXHAUSTIVE=1 to compare the nearest indices for every (in, out) pair up to 4096 (half an hour
on a shared 2-core machine); by default every pair up to 128, and every output size up to 4096 for the common
map sizes, run.
"""

import os
import warnings

import numpy as np
import pytest

from cxrbench.benchmark import metrics
from cxrbench.benchmark.protocol import nearest_index, resize, to_image_frame
from cxrbench.types import Box

from ..conftest import require

torch = require("torch")
F = torch.nn.functional

MAX_SIDE = 4096
EXHAUSTIVE = os.environ.get("CXRBENCH_EXHAUSTIVE") == "1"
MAP_SIDES = (7, 14, 15, 16, 24, 32, 64, 224, 448, 480, 512, 1024)  # method grids and maps


def _torch_rows(n_in: int, n_outs) -> np.ndarray:
    """Source rows PyTorch's F.interpolate(mode="nearest") picks, for each output size, concatenated: the
    published code's call on a float32 (1, 1, n_in, 1) map of row numbers."""
    rows = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, n_in, 1)
    return torch.cat([F.interpolate(rows, size=(int(n), 1), mode="nearest").reshape(-1) for n in n_outs]).numpy()


def _assert_nearest_equal(n_ins, n_outs) -> None:
    for n_in in n_ins:
        ours = np.concatenate([nearest_index(n_in, n) for n in n_outs])
        mismatch = np.flatnonzero(ours != _torch_rows(n_in, n_outs))
        assert mismatch.size == 0, f"n_in={n_in}: first differing output element {mismatch[:1]}"


def test_nearest_indices_equal_torch_for_every_small_pair():
    _assert_nearest_equal(range(1, 129), range(1, 129))


def test_nearest_indices_equal_torch_for_map_sizes_to_every_side():
    n_ins = range(1, MAX_SIDE + 1) if EXHAUSTIVE else MAP_SIDES
    _assert_nearest_equal(n_ins, range(1, MAX_SIDE + 1))


@pytest.mark.parametrize("n_out", [2544, 3000, 4096])
def test_nearest_indices_equal_torch_from_every_size_to_image_sides(n_out):
    for n_in in range(1, MAX_SIDE + 1):
        ours = nearest_index(n_in, n_out)
        np.testing.assert_array_equal(ours, _torch_rows(n_in, [n_out]), err_msg=f"{n_in} -> {n_out}")


def test_published_frame_equals_torch_interpolate_and_pad():
    """The published LDM pipeline: nearest resize of the 512 map to min(H, W), NaN pad floor/ceil, no rescale."""
    heatmap = np.random.default_rng(3).random((512, 512), dtype=np.float32) * 3 - 1
    for height, width in [(2544, 3056), (3000, 2500), (1000, 1000), (333, 517)]:
        side = min(height, width)
        square = F.interpolate(torch.from_numpy(heatmap)[None, None], size=(side, side), mode="nearest")[0, 0]
        mw, mh = width - side, height - side
        expected = F.pad(square, (mw // 2, mw - mw // 2, mh // 2, mh - mh // 2), value=float("nan")).numpy()
        got = to_image_frame(heatmap, height, width, "nearest", protocol="published")
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("n_in", "n_out"), [(9, 40), (16, 7), (24, 512), (512, 333), (512, 2544), (37, 37)])
def test_bilinear_agrees_with_torch_to_float32_rounding(n_in, n_out):
    """Not bit for bit: PyTorch computes the source coordinate (i + 0.5) * n_in / n_out - 0.5 in float32, whose
    rounding (up to n_in * 2**-24) moves the weights; cxrbench computes in float64. On a map in [0, 1] the
    values then differ by at most about that much."""
    heatmap = np.random.default_rng(n_in * n_out).random((n_in, n_in), dtype=np.float32)
    expected = F.interpolate(
        torch.from_numpy(heatmap)[None, None], size=(n_out, n_out), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(resize(heatmap, n_out, n_out), expected, rtol=0, atol=max(n_in * 2.0**-22, 1e-6))


def _torch_box_mask(boxes, height, width):
    """The published code's rasterisation: int() of each coordinate, then a PyTorch slice assignment."""
    mask = torch.zeros((height, width), dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        mask[int(y0) : int(y1), int(x0) : int(x1)] = True
    return mask.numpy()


def test_published_rasterisation_equals_torch_slicing():
    rng = np.random.default_rng(5)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(1, 40, size=2))
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = rng.uniform(-45, 45, size=2)
            x1, y1 = x0 + rng.uniform(0.01, 30), y0 + rng.uniform(0.01, 30)
            boxes.append(Box(x0, y0, x1, y1))
        expected = _torch_box_mask([b.as_tuple() for b in boxes], height, width)
        np.testing.assert_array_equal(metrics.boxes_to_mask(boxes, height, width, protocol="published"), expected)


def _torcheval(heatmap, mask, thresholds=5):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torcheval's torch.jit.script, on import
        torcheval = require("torcheval.metrics.functional")
        value, _ = torcheval.binary_binned_auroc(
            torch.from_numpy(np.asarray(heatmap, dtype=np.float32)).flatten(),
            torch.from_numpy(np.asarray(mask)).long().flatten(),
            threshold=thresholds,
        )
    return float(value.reshape(-1)[0])


def _random_case(rng):
    height, width = (int(v) for v in rng.integers(2, 60, size=2))
    heatmap = rng.random((height, width), dtype=np.float32)
    kind = rng.integers(4)
    if kind == 1:  # raw scores, as `published` scores them: negatives and values above 1
        heatmap = heatmap * 3 - 1
    elif kind == 2:  # heavy ties
        heatmap = (np.round(heatmap * 4) / 4).astype(np.float32)
    elif kind == 3:  # exactly on the bin edges
        heatmap = rng.choice(np.float32([0, 0.25, 0.5, 0.75, 1]), size=(height, width))
    nan_cols = int(rng.integers(0, width // 2 + 1))
    heatmap[:, :nan_cols] = np.nan
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(int(rng.integers(0, 3))):
        r, c = int(rng.integers(0, height)), int(rng.integers(0, width))
        mask[r : r + int(rng.integers(1, height + 1)), c : c + int(rng.integers(1, width + 1))] = True
    return heatmap, mask


def test_binned_auc_equals_torcheval_on_random_maps():
    rng = np.random.default_rng(11)
    for _ in range(400):
        heatmap, mask = _random_case(rng)
        assert metrics.auc_roc_binned(heatmap, mask) == _torcheval(heatmap, mask)


def test_binned_auc_equals_torcheval_with_other_thresholds():
    rng = np.random.default_rng(12)
    for _ in range(100):
        heatmap, mask = _random_case(rng)
        thresholds = sorted({0.0, 1.0, *rng.random(int(rng.integers(0, 6))).astype(np.float32).tolist()})
        assert metrics.auc_roc_binned(heatmap, mask, thresholds) == _torcheval(heatmap, mask, thresholds)


def test_binned_auc_equals_torcheval_at_vindr_size():
    """Counts above 2**24: torcheval halves its integer trapezoid sum in float32, and so does cxrbench."""
    rng = np.random.default_rng(13)
    heatmap = rng.random((3000, 2500), dtype=np.float32)
    heatmap[:, :250] = np.nan
    mask = metrics.boxes_to_mask([Box(400, 300, 1500, 2100), Box(1700, 900, 2400, 2600)], 3000, 2500)
    assert metrics.auc_roc_binned(heatmap, mask) == _torcheval(heatmap, mask)


EDGE_CASES = {
    "issue_example": ([[1, 1, 0.2, 0]], [[1, 0, 0, 0]]),
    "no_target": ([[0.3, 0.9], [0.1, 0.5]], [[0, 0], [0, 0]]),
    "all_target": ([[0.3, 0.9], [0.1, 0.5]], [[1, 1], [1, 1]]),
    "target_only_nan": ([[np.nan, 0.9], [0.1, 0.5]], [[1, 0], [0, 0]]),
    "constant": ([[0.5, 0.5], [0.5, 0.5]], [[1, 0], [0, 0]]),
    "all_negative": ([[-0.5, -0.1], [-0.2, -0.9]], [[1, 0], [0, 0]]),
    "one_pixel_target": ([[0.2, 0.9, 0.4], [0.1, 0.5, 0.8]], [[0, 0, 0], [0, 1, 0]]),
    "perfect": ([[1, 0], [0, 0]], [[1, 0], [0, 0]]),
    "inverted": ([[0, 1], [1, 1]], [[1, 0], [0, 0]]),
}


@pytest.mark.parametrize(("heatmap", "mask"), EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_binned_auc_equals_torcheval_on_edge_cases(heatmap, mask):
    heatmap, mask = np.array(heatmap, dtype=np.float32), np.array(mask, dtype=bool)
    assert metrics.auc_roc_binned(heatmap, mask) == _torcheval(heatmap, mask)
    for protocol in ("cxrbench", "published"):
        boxes = [Box(c, r, c + 1, r + 1) for r, c in zip(*np.nonzero(mask), strict=True)]
        pair = metrics.score_pair(heatmap, boxes, protocol=protocol)
        assert pair.auc_binned == _torcheval(heatmap, mask)
