"""Gaussian baselines: the oracle upper bound and the image-independent centre floor (docs/methods.md)."""

from __future__ import annotations

import math

import numpy as np

from cxrbench.errors import CxrbenchError
from cxrbench.types import Box, Sample


def gaussian_map(height: int, width: int, mu_x: float, mu_y: float, sigma_x: float, sigma_y: float) -> np.ndarray:
    """exp(-(x - mu_x)^2 / (2 sigma_x^2) - (y - mu_y)^2 / (2 sigma_y^2)) at pixel centres (j + 0.5, i + 0.5),
    in the coordinates where a box (x_min, ..., y_max) spans [x_min, x_max) x [y_min, y_max); float32 (H, W)."""
    gx = np.exp(-0.5 * ((np.arange(width) + 0.5 - mu_x) / sigma_x) ** 2)
    gy = np.exp(-0.5 * ((np.arange(height) + 0.5 - mu_y) / sigma_y) ** 2)
    return np.outer(gy, gx).astype(np.float32)


def gaussian_on_box(box: Box, height: int, width: int, k: float = 3.0) -> np.ndarray:
    """Gaussian centred on the box with sigma = box extent / k per axis."""
    return gaussian_map(
        height,
        width,
        (box.x_min + box.x_max) / 2,
        (box.y_min + box.y_max) / 2,
        (box.x_max - box.x_min) / k,
        (box.y_max - box.y_min) / k,
    )


class OracleGaussian:
    """Upper bound: one Gaussian per ground-truth box (sigma = extent / 3), combined by max (docs/methods.md).

    The one method that sees the ground truth; it returns full-frame H x W maps.
    """

    name = "oracle-gaussian"
    bound = True  # a reference, not a competitor (docs/results.md, "Tables")
    frame = "full"
    cacheable = False

    def __init__(self, k: float = 3.0):
        self.k = float(k)
        if not (math.isfinite(self.k) and self.k > 0):
            raise CxrbenchError(f"oracle-gaussian: option k must be a positive number, got {k!r}")

    def config(self) -> dict[str, float]:
        return {"k": self.k}

    def heatmap_for_sample(self, sample: Sample) -> np.ndarray:
        maps = [gaussian_on_box(b, sample.height, sample.width, self.k) for b in sample.boxes]
        return np.maximum.reduce(maps)


class CenterGaussian:
    """Floor: one Gaussian at the centre of the image's centred square, sigma = side / 4, ignoring image and
    prompt. Any method that reads the image should beat it."""

    name = "center-gaussian"
    bound = True  # a reference, not a competitor (docs/results.md, "Tables")
    cacheable = False

    def __init__(self, size: int = 256):
        self.size = int(size)
        if self.size < 1:
            raise CxrbenchError(f"center-gaussian: option size must be a positive integer, got {size!r}")

    def config(self) -> dict[str, int]:
        return {"size": self.size}

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        side = self.size
        return gaussian_map(side, side, side / 2, side / 2, side / 4, side / 4)
