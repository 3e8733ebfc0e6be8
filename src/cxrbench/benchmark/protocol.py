"""Bring a method's heatmap into the original image frame (docs/protocol.md sections 1-2).

square map (any size) --resize--> min(H, W) square --NaN pad, centred--> H x W [--min-max over valid--> [0, 1]]

The last step belongs to the `cxrbench` scoring protocol only; under `published` the map is scored as the
method returned it, as the published evaluation code does (docs/protocol.md section 2.3).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Literal, cast, get_args

import numpy as np

from cxrbench.errors import MethodOutputError, UnknownNameError
from cxrbench.types import Interpolation

ScoringProtocol = Literal["cxrbench", "published"]
PROTOCOLS: tuple[str, ...] = get_args(ScoringProtocol)
# Part of every run's identity: raised whenever a change to the scorer changes any protocol's numbers, so runs
# scored before it are never tabulated with runs scored after it (docs/results.md).
SCORER_VERSION = 2


def check_protocol(protocol: object) -> ScoringProtocol:
    """The protocol name itself, or UnknownNameError naming the valid ones (docs/protocol.md section 1)."""
    if protocol not in PROTOCOLS:
        raise UnknownNameError(f"unknown scoring protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    return cast(ScoringProtocol, protocol)


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output index for PyTorch's `interpolate(mode="nearest")` on a float32 map.

    PyTorch computes, in float32 (docs/protocol.md section 2.1): scale = float32(n_in) / float32(n_out),
    index(i) = min(floor(float32(i) * scale), n_in - 1); NumPy's float32 operations are the same IEEE
    operations, so the indices are PyTorch's exactly (not floor(i * n_in / n_out) in exact arithmetic,
    which differs at some sizes, e.g. 512 -> 2544 at rows 159, 318, ...).
    """
    scale = np.float32(n_in) / np.float32(n_out)
    index = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(index, n_in - 1)


def _bilinear_index(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: two source indices and the weight of the second (docs/protocol.md section 2.1).

    Half-pixel centres, src = (i + 0.5) * n_in / n_out - 0.5 clamped to [0, n_in - 1], no antialias: the rule of
    PyTorch's `interpolate(mode="bilinear", align_corners=False)`, computed here in float64 (PyTorch computes in
    float32, so values agree to float32 rounding, not bit for bit). Where the weight is 0 both indices are
    equal, so a NaN neighbour with weight 0 does not leak in.
    """
    i = np.arange(n_out, dtype=np.int64)
    src = np.clip((i + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    weight = src - i0
    i1 = np.where(weight > 0, np.minimum(i0 + 1, n_in - 1), i0)
    return i0, i1, weight


# Rows per block of the chunked frame transforms: a few float64 rows of a 2544-wide frame stay in the CPU cache.
_CHUNK_ROWS = 16


def _row_blocks(n_rows: int) -> Iterator[slice]:
    """Consecutive row blocks of at most _CHUNK_ROWS rows covering n_rows."""
    return (slice(start, min(start + _CHUNK_ROWS, n_rows)) for start in range(0, n_rows, _CHUNK_ROWS))


def resize(
    heatmap: np.ndarray,
    height: int,
    width: int,
    interpolation: Interpolation = "bilinear",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Separable resize of a 2-D map to (height, width), float32 out (docs/protocol.md section 2.1), written into
    `out` (a float32 (height, width) array or view) when given.

    nearest: index arithmetic (`nearest_index`), copying float32 values: columns by `np.repeat` (the indices
    ascend, so each source column repeats as often as it is picked), then rows by one gather. bilinear: the row
    pass, then the column pass, in float64 and cast once, computed a block of output rows at a time (the same
    operations per pixel as on whole arrays, so the same bits, without frame-sized float64 temporaries).
    """
    src = np.asarray(heatmap)
    if out is None:
        out = np.empty((height, width), dtype=np.float32)
    if interpolation == "nearest":
        counts = np.bincount(nearest_index(src.shape[1], width), minlength=src.shape[1])
        wide = np.repeat(src.astype(np.float32, copy=False), counts, axis=1)
        rows = nearest_index(src.shape[0], height)
        for block in _row_blocks(height):
            out[block] = wide[rows[block]]
        return out
    if interpolation != "bilinear":
        raise UnknownNameError(f"interpolation must be 'bilinear' or 'nearest', not {interpolation!r}")
    src = src.astype(np.float64)
    r0, r1, rw = _bilinear_index(src.shape[0], height)
    c0, c1, cw = _bilinear_index(src.shape[1], width)
    left, right = np.empty((2, min(_CHUNK_ROWS, height), width))
    for block in _row_blocks(height):
        rows = src[r0[block]] * (1.0 - rw[block])[:, None] + src[r1[block]] * rw[block][:, None]
        n = rows.shape[0]
        np.multiply(np.take(rows, c0, axis=1, out=left[:n]), 1.0 - cw, out=left[:n])
        np.multiply(np.take(rows, c1, axis=1, out=right[:n]), cw, out=right[:n])
        np.add(left[:n], right[:n], out=out[block], casting="same_kind")  # float64 sum, cast once to float32
    return out


def _square_view(frame: np.ndarray) -> np.ndarray:
    """The centred min(H, W) square of an H x W frame (floor before, ceil after), as a view."""
    height, width = frame.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return frame[top : top + side, left : left + side]


def _nan_frame(height: int, width: int) -> np.ndarray:
    """An H x W float32 frame whose pixels outside the centred square are NaN (the square is left to fill)."""
    frame = np.empty((height, width), dtype=np.float32)
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    frame[:top], frame[top + side :] = np.nan, np.nan
    frame[:, :left], frame[:, left + side :] = np.nan, np.nan
    return frame


def pad_to_frame(square: np.ndarray, height: int, width: int) -> np.ndarray:
    """Place a min(H, W) square map centred in an H x W frame of NaN (floor before, ceil after)."""
    side = min(height, width)
    if square.shape != (side, side):
        raise ValueError(f"expected a {side} x {side} square, got {square.shape}")
    frame = _nan_frame(height, width)
    _square_view(frame)[...] = square
    return frame


def _min_max(frame: np.ndarray) -> tuple[np.float32, np.float32]:
    """Minimum and maximum of the non-NaN pixels (NaN when there is none, as np.nanmin warns)."""
    return np.nanmin(frame), np.nanmax(frame)


def _normalise_into(frame: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`normalise` written into `out` (may be `frame` itself): (v - min) / (max - min) in float64, cast to
    float32, a block of rows at a time; a constant map becomes 0 (NaN kept)."""
    lo, hi = _min_max(frame)
    if not hi > lo:
        np.copyto(out, np.where(np.isnan(frame), np.float32(np.nan), np.float32(0.0)))
        return out
    scale = float(hi) - float(lo)
    for block in _row_blocks(frame.shape[0]):
        out[block] = (frame[block].astype(np.float64) - lo) / scale
    return out


def normalise(frame: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] over the non-NaN pixels; a constant map becomes all 0 (NaN kept).

    (v - min) / (max - min) computed in float64 and cast to float32 (docs/protocol.md section 2.3); a new array.
    """
    frame = np.asarray(frame, dtype=np.float32)
    return _normalise_into(frame, np.empty_like(frame))


def check_heatmap(heatmap: object, what: str = "heatmap") -> np.ndarray:
    """Validate a method's output: a 2-D real array with at least one non-NaN value and no infinity.

    Returns it as float32, without a copy when it is one already.
    """
    try:
        given = np.asarray(heatmap)
        with np.errstate(over="ignore"):  # values beyond float32 become inf: reported below
            arr = given.astype(np.float32, copy=False)
    except (TypeError, ValueError) as exc:
        raise MethodOutputError(f"{what} is not a numeric array ({type(heatmap).__name__})") from exc
    if arr.ndim != 2 or 0 in arr.shape:
        raise MethodOutputError(f"{what} must be a non-empty 2-D array (H, W), got shape {arr.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmin of no value: NaN, reported below
        lo, hi = _min_max(arr)
    if np.isinf(lo) or np.isinf(hi):
        if not np.isinf(given).any():
            raise MethodOutputError(f"{what} holds values beyond float32's range (+-3.4e38); rescale it")
        raise MethodOutputError(f"{what} contains infinite values")
    if np.isnan(hi):
        raise MethodOutputError(f"{what} is NaN everywhere: the method looked at no pixel")
    return arr


def to_image_frame(
    heatmap: np.ndarray,
    height: int,
    width: int,
    interpolation: Interpolation = "bilinear",
    protocol: ScoringProtocol = "cxrbench",
) -> np.ndarray:
    """docs/protocol.md section 2: resize the square map to min(H, W), NaN-pad to H x W, then (cxrbench only)
    min-max normalise.

    Returns float32 (H, W) with NaN where the method did not look; in [0, 1] under `cxrbench`. The map is resized
    straight into the frame's square and normalised in place: one frame-sized array, no other.
    """
    check_protocol(protocol)
    arr = check_heatmap(heatmap)
    side = min(height, width)
    frame = _nan_frame(height, width)
    square = _square_view(frame)
    if arr.shape == (side, side):
        square[...] = arr
    else:
        resize(arr, side, side, interpolation, out=square)
    return _normalise_into(frame, frame) if protocol == "cxrbench" else frame


def full_frame(heatmap: np.ndarray, height: int, width: int, protocol: ScoringProtocol = "cxrbench") -> np.ndarray:
    """docs/protocol.md section 2 for methods that return H x W maps: check the shape, then (cxrbench only)
    min-max normalise (into a new array: the method's own is never written to)."""
    check_protocol(protocol)
    arr = check_heatmap(heatmap)
    if arr.shape != (height, width):
        raise MethodOutputError(f"full-frame heatmap has shape {arr.shape}, the image is ({height}, {width})")
    return normalise(arr) if protocol == "cxrbench" else arr
