"""Bring a method's heatmap into the original image frame (docs/protocol.md sections 1-2).

square map (any size) --resize--> min(H, W) square --NaN pad, centred--> H x W [--min-max over valid--> [0, 1]]

The last step belongs to the `cxrbench` scoring protocol only; under `published` the map is scored as the
method returned it, as the published evaluation code does (docs/protocol.md section 2.3).
"""

from __future__ import annotations

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


def resize(heatmap: np.ndarray, height: int, width: int, interpolation: Interpolation = "bilinear") -> np.ndarray:
    """Separable resize of a 2-D map to (height, width), float32 out (bilinear computed in float64)."""
    out = np.asarray(heatmap, dtype=np.float64)
    if interpolation == "nearest":
        return out[nearest_index(out.shape[0], height)][:, nearest_index(out.shape[1], width)].astype(np.float32)
    if interpolation != "bilinear":
        raise UnknownNameError(f"interpolation must be 'bilinear' or 'nearest', not {interpolation!r}")
    r0, r1, rw = _bilinear_index(out.shape[0], height)
    out = out[r0] * (1.0 - rw)[:, None] + out[r1] * rw[:, None]
    c0, c1, cw = _bilinear_index(out.shape[1], width)
    return (out[:, c0] * (1.0 - cw) + out[:, c1] * cw).astype(np.float32)


def pad_to_frame(square: np.ndarray, height: int, width: int) -> np.ndarray:
    """Place a min(H, W) square map centred in an H x W frame of NaN (floor before, ceil after)."""
    side = min(height, width)
    if square.shape != (side, side):
        raise ValueError(f"expected a {side} x {side} square, got {square.shape}")
    frame = np.full((height, width), np.nan, dtype=np.float32)
    top, left = (height - side) // 2, (width - side) // 2
    frame[top : top + side, left : left + side] = square
    return frame


def normalise(frame: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] over the non-NaN pixels; a constant map becomes all 0 (NaN kept)."""
    out = np.asarray(frame, dtype=np.float32)
    lo, hi = np.nanmin(out), np.nanmax(out)
    if hi > lo:
        out = ((out.astype(np.float64) - lo) / (float(hi) - float(lo))).astype(np.float32)
    else:
        out = np.where(np.isnan(out), np.float32(np.nan), np.float32(0.0))
    return out


def check_heatmap(heatmap: object, what: str = "heatmap") -> np.ndarray:
    """Validate a method's output: a 2-D real array with at least one non-NaN value and no infinity."""
    try:
        given = np.asarray(heatmap)
        with np.errstate(over="ignore"):  # values beyond float32 become inf: reported below
            arr = given.astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise MethodOutputError(f"{what} is not a numeric array ({type(heatmap).__name__})") from exc
    if arr.ndim != 2 or 0 in arr.shape:
        raise MethodOutputError(f"{what} must be a non-empty 2-D array (H, W), got shape {arr.shape}")
    if np.isinf(arr).any():
        if not np.isinf(given).any():
            raise MethodOutputError(f"{what} holds values beyond float32's range (+-3.4e38); rescale it")
        raise MethodOutputError(f"{what} contains infinite values")
    if np.isnan(arr).all():
        raise MethodOutputError(f"{what} is NaN everywhere: the method looked at no pixel")
    return arr


def _finish(frame: np.ndarray, protocol: ScoringProtocol) -> np.ndarray:
    """docs/protocol.md section 2.3: min-max under `cxrbench`, the map as it is under `published`."""
    return normalise(frame) if protocol == "cxrbench" else frame


def to_image_frame(
    heatmap: np.ndarray,
    height: int,
    width: int,
    interpolation: Interpolation = "bilinear",
    protocol: ScoringProtocol = "cxrbench",
) -> np.ndarray:
    """docs/protocol.md section 2: resize the square map to min(H, W), NaN-pad to H x W, then (cxrbench only)
    min-max normalise.

    Returns float32 (H, W) with NaN where the method did not look; in [0, 1] under `cxrbench`.
    """
    check_protocol(protocol)
    arr = check_heatmap(heatmap)
    side = min(height, width)
    square = arr if arr.shape == (side, side) else resize(arr, side, side, interpolation)
    return _finish(pad_to_frame(square, height, width), protocol)


def full_frame(heatmap: np.ndarray, height: int, width: int, protocol: ScoringProtocol = "cxrbench") -> np.ndarray:
    """docs/protocol.md section 2 for methods that return H x W maps: check the shape, then (cxrbench only)
    min-max normalise."""
    check_protocol(protocol)
    arr = check_heatmap(heatmap)
    if arr.shape != (height, width):
        raise MethodOutputError(f"full-frame heatmap has shape {arr.shape}, the image is ({height}, {width})")
    return _finish(arr, protocol)
