"""The reduction of recorded cross-attention probabilities to one 512 x 512 heatmap (docs/methods.md, "The LDM
heatmap").

Per (layer, step): keep the prompt's real tokens (positions 1 .. n-2 of its unpadded ids; with the option
`tokens=pathology` the pathology's, docs/ldm.md section 5), average them,
reshape to the layer's square grid, min-max over space, resize to 512 x 512 bilinearly. Then: mean over
layers and steps, Gaussian blur sigma 2.5 (scipy `gaussian_filter`, reflect mode), min-max; the zero-shot
method keeps only pixels above the map's 2-class Otsu threshold, zero elsewhere, computed as the published
sampler does (`skimage.filters.threshold_multiotsu(classes=2)`, which can pick a threshold one histogram bin
away from `threshold_otsu`).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.filters import threshold_multiotsu

from cxrbench.benchmark.protocol import resize

SIZE = 512
BLUR_SIGMA = 2.5


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def real_tokens(n_ids: int) -> slice:
    """The prompt's real tokens: positions 1 .. n_ids - 2 of its unpadded ids (<bos> and <eos> left out)."""
    return slice(1, n_ids - 1)


def grid_map(probs: np.ndarray, span: slice) -> np.ndarray:
    """One (layer, step) map on the layer's grid, min-maxed: probs is (queries, 77) for one image (heads
    averaged); the token positions `span` are averaged."""
    tokens = probs[:, span].mean(axis=1)
    side = round(len(tokens) ** 0.5)
    return _minmax(tokens.reshape(side, side).astype(np.float64))


def token_map(probs: np.ndarray, span: slice) -> np.ndarray:
    """The (layer, step) map resized to 512 x 512 (bilinear), as docs/methods.md states it."""
    return resize(grid_map(probs, span), SIZE, SIZE).astype(np.float64)


def finish(mean_map: np.ndarray, otsu: bool) -> np.ndarray:
    """Blur, min-max and (zero-shot) Otsu mask of the mean of the per-(layer, step) maps."""
    heat = _minmax(gaussian_filter(mean_map, BLUR_SIGMA))
    if otsu and heat.max() > heat.min():
        heat = np.where(heat > threshold_multiotsu(heat, classes=2)[0], heat, 0.0)
    return heat.astype(np.float32)
