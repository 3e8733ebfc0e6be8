import math
import struct

import numpy as np
import pytest
from skimage.transform import resize as skimage_resize

from cxrbench.benchmark.protocol import (
    PROTOCOLS,
    check_heatmap,
    full_frame,
    nearest_index,
    normalise,
    pad_to_frame,
    resize,
    to_image_frame,
)
from cxrbench.errors import CxrbenchError, MethodOutputError, UnknownNameError

from . import naive


def _f32(x: float) -> float:
    """Round a Python float to the nearest float32 (exact for +, -, *, / of float32 operands: 53 >= 2 * 24 + 2)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _torch_nearest_source(i, n_in, n_out):
    """PyTorch's nearest rule as docs/protocol.md section 2.1 states it, one index at a time in plain Python."""
    return min(math.floor(_f32(i * _f32(n_in / n_out))), n_in - 1)


def _naive_nearest(x, height, width):
    out = np.empty((height, width))
    for i in range(height):
        for j in range(width):
            out[i, j] = x[_torch_nearest_source(i, x.shape[0], height), _torch_nearest_source(j, x.shape[1], width)]
    return out


@pytest.mark.parametrize(("height", "width"), [(40, 40), (7, 7), (13, 29), (64, 3), (5, 9)])
def test_bilinear_resize_equals_skimage_without_antialiasing(height, width):
    x = np.random.default_rng(height * width).random((9, 12))
    expected = skimage_resize(x, (height, width), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    np.testing.assert_allclose(resize(x, height, width), expected, atol=1e-6)


@pytest.mark.parametrize(("height", "width"), [(40, 40), (7, 5), (512, 3), (2544, 5)])
def test_nearest_resize_equals_torch_float32_rule(height, width):
    x = np.random.default_rng(0).random((16, 11))
    expected = _naive_nearest(x, height, width).astype(np.float32)
    np.testing.assert_array_equal(resize(x, height, width, "nearest"), expected)


def test_nearest_index_is_float32_not_exact_arithmetic():
    """512 -> 2544: i * 512 / 2544 is a whole number at every multiple of 159; the float32 product lands just
    below it at these seven rows, so PyTorch (and cxrbench) pick the row before; elsewhere floor(i * in / out)."""
    below = [159, 318, 636, 1113, 1272, 2226, 2385]
    exact = np.arange(2544) * 512 // 2544
    expected = exact.copy()
    expected[below] -= 1
    np.testing.assert_array_equal(nearest_index(512, 2544), expected)


@pytest.mark.parametrize(("n_in", "n_out"), [(1, 1), (1, 4096), (4096, 1), (4096, 4096), (3, 7), (4096, 4095)])
def test_nearest_index_edges(n_in, n_out):
    index = nearest_index(n_in, n_out)
    assert index.shape == (n_out,)
    assert index[0] == 0
    assert index.max() <= n_in - 1
    assert (np.diff(index) >= 0).all()
    assert [int(v) for v in index] == [_torch_nearest_source(i, n_in, n_out) for i in range(n_out)]


def test_bilinear_does_not_leak_nan_through_zero_weights():
    x = np.ones((4, 4))
    x[:, 3] = np.nan
    out = resize(x, 4, 4)  # identity size: every weight is 0
    np.testing.assert_array_equal(np.isnan(out), np.isnan(x))


@pytest.mark.parametrize(("height", "width"), [(30, 20), (20, 30), (21, 30), (30, 21), (25, 25)])
def test_pad_is_centred_floor_before_ceil_after(height, width):
    side = min(height, width)
    frame = pad_to_frame(np.ones((side, side), dtype=np.float32), height, width)
    valid_rows = np.flatnonzero(~np.isnan(frame).all(axis=1))
    valid_cols = np.flatnonzero(~np.isnan(frame).all(axis=0))
    assert valid_rows[0] == math.floor((height - side) / 2)
    assert height - 1 - valid_rows[-1] == math.ceil((height - side) / 2)
    assert valid_cols[0] == math.floor((width - side) / 2)
    assert width - 1 - valid_cols[-1] == math.ceil((width - side) / 2)
    assert np.count_nonzero(~np.isnan(frame)) == side * side


@pytest.mark.parametrize("source", [(8, 8), (512, 512), (3, 3)])
@pytest.mark.parametrize(("height", "width"), [(60, 45), (45, 60), (50, 50)])
def test_to_image_frame_smaller_and_larger_maps(source, height, width):
    heatmap = np.random.default_rng(1).random(source) * 5 - 2
    frame = to_image_frame(heatmap, height, width)
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    assert frame.shape == (height, width)
    assert frame.dtype == np.float32
    assert np.nanmin(frame) == 0.0
    assert np.nanmax(frame) == 1.0
    square = frame[top : top + side, left : left + side]
    assert not np.isnan(square).any()
    assert np.isnan(frame).sum() == height * width - side * side
    expected = skimage_resize(heatmap, (side, side), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(square, expected, atol=1e-5)


def test_nan_inside_the_map_stays_excluded():
    heatmap = np.random.default_rng(2).random((10, 10))
    heatmap[:, :2] = np.nan  # the method did not look there
    frame = to_image_frame(heatmap, 10, 14)
    assert np.isnan(frame[:, :4]).all()
    assert np.nanmin(frame) == 0.0
    assert np.nanmax(frame) == 1.0


def test_normalise_constant_map_is_zero_and_keeps_nan():
    out = normalise(np.array([[2.0, np.nan], [2.0, 2.0]], dtype=np.float32))
    np.testing.assert_array_equal(out, np.array([[0.0, np.nan], [0.0, 0.0]], dtype=np.float32))


def test_published_frame_is_not_rescaled():
    """docs/protocol.md section 2.3: the published code scores the map as the method returned it."""
    heatmap = (np.random.default_rng(4).random((8, 8)) * 4 - 1.5).astype(np.float32)
    for interpolation in ("nearest", "bilinear"):
        raw = to_image_frame(heatmap, 30, 20, interpolation, protocol="published")
        np.testing.assert_array_equal(raw, pad_to_frame(resize(heatmap, 20, 20, interpolation), 30, 20))
        np.testing.assert_array_equal(to_image_frame(heatmap, 30, 20, interpolation), normalise(raw))
    assert np.nanmin(raw) < 0 < 1 < np.nanmax(raw)
    full = np.array([[-2.0, np.nan], [0.5, 7.0]])
    np.testing.assert_array_equal(full_frame(full, 2, 2, protocol="published"), full.astype(np.float32))
    np.testing.assert_array_equal(full_frame(full, 2, 2), np.float32([[0, np.nan], [2.5 / 9, 1]]))


def test_published_constant_map_stays_constant():
    frame = to_image_frame(np.full((4, 4), 0.3), 6, 4, protocol="published")
    np.testing.assert_array_equal(frame[1:5], np.full((4, 4), np.float32(0.3)))
    assert np.isnan(frame[[0, 5]]).all()


def test_protocol_names():
    assert PROTOCOLS == ("cxrbench", "published")
    heatmap = np.ones((4, 4))
    for call in (
        lambda p: to_image_frame(heatmap, 4, 4, protocol=p),
        lambda p: full_frame(heatmap, 4, 4, protocol=p),
    ):
        with pytest.raises(CxrbenchError, match=r"unknown scoring protocol 'Published'.*cxrbench, published"):
            call("Published")


def test_unknown_interpolation_is_a_clear_error():
    with pytest.raises(UnknownNameError, match="'bicubic'"):
        to_image_frame(np.ones((4, 4)), 8, 8, "bicubic")


def test_full_frame_checks_shape():
    assert full_frame(np.ones((4, 6)), 4, 6).shape == (4, 6)
    with pytest.raises(MethodOutputError, match=r"\(4, 5\)"):
        full_frame(np.ones((4, 6)), 4, 5)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.full((4, 4), np.nan), "NaN everywhere"),
        (np.array([[1.0, np.inf]]), "infinite"),
        (np.zeros((2, 2, 3)), "2-D"),
        (np.zeros((0, 4)), "2-D"),
        ("not a map", "numeric"),
    ],
)
def test_bad_heatmaps_raise_clear_errors(bad, message):
    with pytest.raises(MethodOutputError, match=message):
        to_image_frame(bad, 10, 10)


def _bits(a):
    """Float32 values as their bit patterns: equality below is bit for bit, NaN included."""
    return np.asarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize(("n_in", "height", "width"), [((9, 12), 70, 45), ((40, 7), 33, 101), ((5, 5), 17, 2)])
def test_bilinear_resize_is_the_documented_formula_bit_for_bit(n_in, height, width):
    """The row-blocked resize (several blocks of rows here) against the formula evaluated pixel by pixel."""
    x = np.random.default_rng(height).random(n_in, dtype=np.float32) * 3 - 1
    np.testing.assert_array_equal(_bits(resize(x, height, width)), _bits(naive.bilinear(x, height, width)))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize(("height", "width"), [(75, 41), (41, 75), (50, 50), (36, 35)])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_to_image_frame_equals_its_steps_bit_for_bit(interpolation, height, width, protocol):
    """Resized straight into the frame's square (a strided view when the image is landscape) and normalised in
    place: the same bits as resizing, padding and min-max normalising one step at a time, per pixel."""
    heatmap = np.random.default_rng(height * width).random((13, 13), dtype=np.float32)
    heatmap[3:5, 7:9] = np.nan
    side = min(height, width)
    square = naive.bilinear(heatmap, side, side) if interpolation == "bilinear" else _naive_nearest(heatmap, side, side)
    expected = pad_to_frame(square.astype(np.float32), height, width)
    if protocol == "cxrbench":
        expected = naive.min_max(expected)
    got = to_image_frame(heatmap, height, width, interpolation, protocol=protocol)
    np.testing.assert_array_equal(_bits(got), _bits(expected))


def test_normalise_is_the_documented_formula_bit_for_bit():
    frame = np.random.default_rng(6).random((70, 9), dtype=np.float32) * 7 - 3  # several blocks of rows
    frame[::5, 2] = np.nan
    np.testing.assert_array_equal(_bits(normalise(frame)), _bits(naive.min_max(frame)))


def test_check_heatmap_copies_only_to_convert_and_full_frame_keeps_the_input():
    heatmap = np.random.default_rng(2).random((6, 5), dtype=np.float32)
    assert check_heatmap(heatmap) is heatmap
    assert check_heatmap(heatmap.astype(np.float64)).dtype == np.float32
    before = heatmap.copy()
    full_frame(heatmap, 6, 5)
    np.testing.assert_array_equal(heatmap, before)
