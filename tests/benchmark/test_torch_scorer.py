"""The optional torch scorer (cxrbench.benchmark.torch_scorer) against the NumPy scorer and the naive per-pixel
references, on CPU tensors. Torch-family tests: skipped without torch unless CXRBENCH_REQUIRE_TORCH=1."""

import math
import subprocess
import sys

import numpy as np
import pytest

from cxrbench.benchmark import metrics
from cxrbench.benchmark.protocol import to_image_frame
from cxrbench.benchmark.torch_scorer import score_frame
from cxrbench.errors import CxrbenchError, MethodOutputError
from cxrbench.types import Box

from ..conftest import require
from . import naive
from .test_metrics import CASES, _expected_pair_cnr, _expected_undefined, _frame

torch = require("torch")
PROTOCOLS = ("cxrbench", "published")


def _assert_equal_scores(got, expected):
    """Counts-derived scores equal bit for bit; CNR (float64 sums in another order) to 1e-6 relative."""
    np.testing.assert_equal(
        (got.iou, got.miou, got.auc, got.auc_binned, got.cnr_undefined),
        (expected.iou, expected.miou, expected.auc, expected.auc_binned, expected.cnr_undefined),
    )
    for name in ("cnr", "cnr_signed"):
        assert getattr(got, name) == pytest.approx(getattr(expected, name), rel=1e-6, abs=1e-9, nan_ok=True)


def _random_frame(rng, height, width):
    frame = rng.random((height, width), dtype=np.float32)
    kind = rng.integers(5)
    if kind == 1:  # heavy ties, on the IoU and binned-AUC thresholds too
        frame = rng.choice(np.float32([0, 0.1, 0.25, 0.5, 0.75, 1]), size=(height, width))
    elif kind == 2:  # raw scale, as `published` scores it
        frame = frame * 4 - 1.5
    elif kind == 3:  # zero below a threshold (an LDM map after Otsu)
        frame[frame < 0.6] = 0
    elif kind == 4:  # constant
        frame[:] = np.float32(0.4)
    nan_cols, nan_rows = int(rng.integers(0, width // 3 + 1)), int(rng.integers(0, height // 3 + 1))
    frame[:nan_rows], frame[height - nan_rows :] = np.nan, np.nan  # NaN padding
    frame[:, :nan_cols] = np.nan
    frame[rng.random((height, width)) < rng.choice([0.0, 0.05])] = np.nan  # pixels the method did not look at
    return frame


def _random_box(rng, height, width):
    """One pixel, sub-pixel, across the borders, wholly outside, negative (published slices from the far edge)."""
    kind = rng.integers(4)
    if kind == 0:
        x, y = int(rng.integers(-1, width + 1)), int(rng.integers(-1, height + 1))
        return Box(x, y, x + 1, y + 1)
    if kind == 1:
        x, y = rng.uniform(-1, width), rng.uniform(-1, height)
        return Box(x, y, x + rng.uniform(0.05, 1.5), y + rng.uniform(0.05, 1.5))
    x, y = rng.uniform(-0.4 * width, 1.1 * width), rng.uniform(-0.4 * height, 1.1 * height)
    return Box(x, y, x + rng.uniform(0.5, width), y + rng.uniform(0.5, height))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_equals_numpy_scorer_on_random_frames(protocol):
    rng = np.random.default_rng(29)
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(1, 48, size=2))
        frame = _random_frame(rng, height, width)
        boxes = [_random_box(rng, height, width) for _ in range(rng.integers(0, 5))]
        expected = metrics.score_pair(frame, boxes, protocol=protocol)
        _assert_equal_scores(score_frame(torch.from_numpy(frame), boxes, protocol=protocol), expected)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_equals_naive_references(case, protocol):
    """The adversarial layouts of test_metrics (borders, padding, nested, repeated, one-pixel, sub-pixel boxes)
    against the per-pixel references, and the NumPy scorer."""
    height, width, nan_rows, nan_cols, boxes = case
    frame = _frame(np.random.default_rng(height * width), height, width, nan_rows, nan_cols, levels=7)
    got = score_frame(frame, [Box(*b) for b in boxes], protocol=protocol, device="cpu")
    target = naive.mask(boxes, height, width, protocol)
    assert got.iou == pytest.approx([naive.iou(frame, target, t) for t in metrics.IOU_THRESHOLDS], abs=1e-12)
    assert got.auc_binned == pytest.approx(naive.auc_binned(frame, target), abs=1e-12)
    assert got.cnr == pytest.approx(_expected_pair_cnr(frame, boxes, protocol), abs=1e-9)
    assert got.cnr_signed == pytest.approx(_expected_pair_cnr(frame, boxes, protocol, signed=True), abs=1e-9)
    assert got.cnr_undefined == _expected_undefined(frame, boxes, protocol)
    _assert_equal_scores(got, metrics.score_pair(frame, [Box(*b) for b in boxes], protocol=protocol))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_equals_numpy_scorer_at_an_image_size(protocol):
    """A nearest-resized, NaN-padded frame (portrait, odd margins) with boxes at the borders and inside a block."""
    rng = np.random.default_rng(31)
    heatmap = rng.random((64, 64), dtype=np.float32)
    heatmap[heatmap < 0.5] = 0
    frame = to_image_frame(heatmap, 701, 533, "nearest", protocol=protocol)
    boxes = [Box(0, 0, 533, 1), Box(100.5, 80.2, 400.7, 650.9), Box(500, 600, 560, 720), Box(3.2, 91.1, 4.0, 92.9)]
    _assert_equal_scores(
        score_frame(frame, boxes, protocol=protocol), metrics.score_pair(frame, boxes, protocol=protocol)
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_degenerate_pairs(protocol):
    """Constant map, no box, a box wholly outside, a map with one valid pixel: as the NumPy scorer."""
    one = np.full((6, 7), np.nan, dtype=np.float32)
    one[2, 3] = 0.5
    for frame in (np.full((6, 7), 0.4, dtype=np.float32), one):
        for boxes in ([], [Box(40, 40, 50, 50)], [Box(3, 2, 4, 3)], [Box(0, 0, 7, 6)], [Box(1, 1, 5, 5)] * 2):
            got = score_frame(frame, boxes, protocol=protocol)
            _assert_equal_scores(got, metrics.score_pair(frame, boxes, protocol=protocol))
            assert got.cnr_undefined == len(boxes)
            assert math.isnan(got.cnr) == (not boxes)


def test_keeps_the_input_and_its_device():
    frame = torch.rand(20, 30)
    frame[:, :4] = float("nan")
    before = frame.clone()
    got = score_frame(frame, [Box(5, 5, 15, 12)], device=torch.device("cpu"))
    assert torch.equal(frame.nan_to_num(-1), before.nan_to_num(-1))
    _assert_equal_scores(got, metrics.score_pair(frame.numpy(), [Box(5, 5, 15, 12)]))


def test_bad_input_is_an_error():
    with pytest.raises(MethodOutputError, match="2-D"):
        score_frame(np.zeros((2, 3, 4)), [])
    with pytest.raises(CxrbenchError, match="unknown scoring protocol 'paper'"):
        score_frame(np.zeros((3, 3)), [], protocol="paper")


def test_importing_does_not_import_torch():
    code = "import sys, cxrbench.benchmark.torch_scorer; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


class _Bilinear:
    """A square map resized bilinearly, so the runner scores it in the image frame (where torch applies)."""

    name = "bilinear-test"

    def heatmap(self, image, prompt):
        side = min(image.shape)
        return np.cbrt(image[:side, :side][::7, ::7] + len(prompt) / 100)


class _Full:
    """A full-frame map."""

    name = "full-test"
    frame = "full"

    def heatmap(self, image, prompt):
        return image**2 + len(prompt) / 100


@pytest.mark.parametrize("method", [_Bilinear, _Full])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_run_scored_with_torch_equals_the_numpy_run(method, protocol, tmp_path, monkeypatch):
    from cxrbench.benchmark import torch_scorer
    from cxrbench.benchmark.runner import run_benchmark

    devices = []
    real = torch_scorer.score_frame
    monkeypatch.setattr(torch_scorer, "score_frame", lambda *a, **k: devices.append(k["device"]) or real(*a, **k))

    def run(out, **options):
        return run_benchmark(method(), "demo", out=out, protocol=protocol, n_resamples=100, progress=False, **options)

    numpy_run, torch_run = run(tmp_path / "numpy", score_workers=0), run(tmp_path / "torch", score_device="cpu")
    a, b = numpy_run.scores, torch_run.scores
    exact = [c for c in a.columns if not c.startswith("cnr") or c == "cnr_undefined"]
    assert a[exact].equals(b[exact])
    np.testing.assert_allclose(b[["cnr", "cnr_signed"]], a[["cnr", "cnr_signed"]], rtol=1e-6, atol=1e-12)
    assert torch_run.summary.settings["score_device"] == "cpu"
    assert torch_run.summary.settings["score_workers"] == 0  # the pool is off: torch scores in the run's process
    assert devices == ["cpu"] * len(b)  # every pair of the torch run, none of the NumPy run


def test_bad_score_device_is_an_error_before_any_work(tmp_path):
    from cxrbench.benchmark.runner import run_benchmark

    with pytest.raises(CxrbenchError, match=r"--score-device 'nope': torch cannot use it"):
        run_benchmark(_Full(), "demo", out=tmp_path, score_device="nope", progress=False)
    with pytest.raises(CxrbenchError, match=r"leave out --score-workers"):
        run_benchmark(_Full(), "demo", out=tmp_path, score_device="cpu", score_workers=2, progress=False)
    assert not (tmp_path / "demo").exists()
