"""SPEC section 2, steps 1-3: bring a method's heatmap into the original image frame.

square map (any size) --resize--> min(H, W) square --NaN pad, centred--> H x W --min-max over valid--> [0, 1]
"""

from __future__ import annotations

import numpy as np

from cxrbench.errors import MethodOutputError
from cxrbench.types import Interpolation


def _source_index(n_in: int, n_out: int, interpolation: Interpolation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: two source indices and the weight of the second.

    bilinear: half-pixel centres, src = (i + 0.5) * n_in / n_out - 0.5 clamped to [0, n_in - 1], no antialias
    (PyTorch's `interpolate(mode="bilinear", align_corners=False)`); nearest: src = floor(i * n_in / n_out)
    (PyTorch's mode="nearest"), computed in exact integer arithmetic.
    Where the weight is 0 both indices are equal, so a NaN neighbour with weight 0 does not leak in.
    """
    i = np.arange(n_out, dtype=np.int64)
    if interpolation == "nearest":
        i0 = np.minimum(i * n_in // n_out, n_in - 1)
        return i0, i0, np.zeros(n_out)
    src = np.clip((i + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    weight = src - i0
    i1 = np.where(weight > 0, np.minimum(i0 + 1, n_in - 1), i0)
    return i0, i1, weight


def resize(heatmap: np.ndarray, height: int, width: int, interpolation: Interpolation = "bilinear") -> np.ndarray:
    """Separable resize of a 2-D map to (height, width), float32 out, computed in float64."""
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest', not {interpolation!r}")
    out = np.asarray(heatmap, dtype=np.float64)
    r0, r1, rw = _source_index(out.shape[0], height, interpolation)
    out = out[r0] if interpolation == "nearest" else out[r0] * (1.0 - rw)[:, None] + out[r1] * rw[:, None]
    c0, c1, cw = _source_index(out.shape[1], width, interpolation)
    out = out[:, c0] if interpolation == "nearest" else out[:, c0] * (1.0 - cw) + out[:, c1] * cw
    return out.astype(np.float32)


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
        arr = np.asarray(heatmap, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise MethodOutputError(f"{what} is not a numeric array ({type(heatmap).__name__})") from exc
    if arr.ndim != 2 or 0 in arr.shape:
        raise MethodOutputError(f"{what} must be a non-empty 2-D array (H, W), got shape {arr.shape}")
    if np.isinf(arr).any():
        raise MethodOutputError(f"{what} contains infinite values")
    if np.isnan(arr).all():
        raise MethodOutputError(f"{what} is NaN everywhere: the method looked at no pixel")
    return arr


def to_image_frame(
    heatmap: np.ndarray, height: int, width: int, interpolation: Interpolation = "bilinear"
) -> np.ndarray:
    """SPEC 2 steps 2-3: resize the square map to min(H, W), NaN-pad to H x W, min-max normalise.

    Returns float32 (H, W) with values in [0, 1] and NaN where the method did not look.
    """
    arr = check_heatmap(heatmap)
    side = min(height, width)
    square = arr if arr.shape == (side, side) else resize(arr, side, side, interpolation)
    return normalise(pad_to_frame(square, height, width))


def full_frame(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """SPEC 2 step 1 for methods that return H x W maps: only check the shape and normalise."""
    arr = check_heatmap(heatmap)
    if arr.shape != (height, width):
        raise MethodOutputError(f"full-frame heatmap has shape {arr.shape}, the image is ({height}, {width})")
    return normalise(arr)
