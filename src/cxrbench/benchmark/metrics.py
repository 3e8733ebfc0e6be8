"""SPEC section 2, steps 4-5: per-pair metrics on a heatmap in the image frame.

Heatmaps are float32 (H, W) in [0, 1] with NaN where the method did not look (`protocol.to_image_frame`).
NaN pixels are excluded from CNR and AUC and never predicted positive; a target pixel lying in the NaN
padding still counts in the IoU union. Thresholds are compared in the heatmap's float32, as
`heatmap > t` does in NumPy and PyTorch.

The public one-metric functions and the all-metrics `score_pair` share one core: the valid pixels are split
into target / background and each part is sorted once; exact AUC (Mann-Whitney U with mid-ranks for ties)
and every IoU threshold are then counts from binary searches, and CNR per box uses box sums plus the
frame's moments (Chan et al. pairwise update), so no metric rescans the frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cxrbench.types import Box

IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
BINNED_AUC_THRESHOLDS = 5
# Pooled variances at or below this fraction of the frame's variance are floating-point noise: CNR undefined.
_VARIANCE_FLOOR = 1e-12

BoxLike = Box | Sequence[float]


def _pixel_span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Half-open pixel range [floor(lo), ceil(hi)) clipped to [0, size) (SPEC 2.4)."""
    return min(max(math.floor(lo), 0), size), min(max(math.ceil(hi), 0), size)


def box_slices(box: BoxLike, height: int, width: int) -> tuple[slice, slice]:
    """Row and column slices of the pixels a box covers, clipped to the image (may be empty)."""
    x_min, y_min, x_max, y_max = box.as_tuple() if isinstance(box, Box) else box
    r0, r1 = _pixel_span(y_min, y_max, height)
    c0, c1 = _pixel_span(x_min, x_max, width)
    return slice(r0, r1), slice(c0, c1)


def boxes_to_mask(boxes: Iterable[BoxLike], height: int, width: int) -> np.ndarray:
    """Union of the boxes as a bool (H, W) mask: columns floor(x_min)..ceil(x_max)-1, rows likewise."""
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        mask[box_slices(box, height, width)] = True
    return mask


@dataclass(frozen=True)
class _Split:
    """Valid pixels split by the target mask, each part sorted; `n_target` counts NaN target pixels too."""

    target: np.ndarray
    background: np.ndarray
    n_target: int

    @classmethod
    def of(cls, heatmap: np.ndarray, mask: np.ndarray) -> _Split:
        heatmap = np.asarray(heatmap, dtype=np.float32)
        mask = np.asarray(mask, dtype=bool)
        if heatmap.shape != mask.shape:
            raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ in shape")
        valid = ~np.isnan(heatmap)
        return cls(
            target=np.sort(heatmap[mask & valid]),
            background=np.sort(heatmap[~mask & valid]),
            n_target=int(np.count_nonzero(mask)),
        )

    def count_above(self, part: np.ndarray, threshold: float, inclusive: bool = False) -> int:
        side = "left" if inclusive else "right"
        return part.size - int(np.searchsorted(part, np.float32(threshold), side=side))

    def iou_at(self, thresholds: Sequence[float]) -> np.ndarray:
        out = np.empty(len(thresholds))
        for k, t in enumerate(thresholds):
            tp = self.count_above(self.target, t)
            union = self.n_target + self.count_above(self.background, t)
            out[k] = tp / union if union else np.nan
        return out

    def auc(self) -> float:
        pos, neg = self.target, self.background
        if pos.size == 0 or neg.size == 0:
            return float("nan")
        below = np.searchsorted(neg, pos, side="left").sum(dtype=np.int64)
        below_or_tied = np.searchsorted(neg, pos, side="right").sum(dtype=np.int64)
        return float((int(below) + int(below_or_tied)) / (2 * pos.size * neg.size))

    def auc_binned(self, n_thresholds: int) -> float:
        pos, neg = self.target, self.background
        if pos.size == 0 or neg.size == 0:
            return float("nan")
        thresholds = np.linspace(0.0, 1.0, n_thresholds, dtype=np.float32)[::-1]
        tpr = np.array([self.count_above(pos, t, inclusive=True) for t in thresholds]) / pos.size
        fpr = np.array([self.count_above(neg, t, inclusive=True) for t in thresholds]) / neg.size
        return float(np.trapezoid(tpr, fpr))


@dataclass(frozen=True)
class _Moments:
    """Count, mean and sum of squared deviations (M2) of a set of values."""

    n: int
    mean: float
    m2: float

    @classmethod
    def of(cls, values: np.ndarray) -> _Moments:
        values = values[~np.isnan(values)].astype(np.float64)
        if values.size == 0:
            return cls(0, math.nan, 0.0)
        mean = float(values.mean())
        return cls(values.size, mean, float(np.square(values - mean).sum()))

    def plus(self, other: _Moments) -> _Moments:
        """Moments of the union of two disjoint sets (Chan et al.'s pairwise update)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return _Moments(n, self.mean + delta * other.n / n, self.m2 + other.m2 + delta**2 * self.n * other.n / n)

    def minus(self, part: _Moments) -> _Moments:
        """Moments of this set without `part` (Chan et al.'s pairwise update, solved for the rest)."""
        n = self.n - part.n
        if n <= 0:
            return _Moments(0, math.nan, 0.0)
        if part.n == 0:
            return self
        mean = (self.n * self.mean - part.n * part.mean) / n
        m2 = self.m2 - part.m2 - (part.mean - mean) ** 2 * part.n * n / self.n
        return _Moments(n, mean, max(m2, 0.0))


def _cnr_from_moments(inside: _Moments, frame: _Moments, signed: bool) -> float:
    """|mean_in - mean_out| / sqrt(var_in + var_out), population variances; NaN when undefined."""
    outside = frame.minus(inside)
    if inside.n == 0 or outside.n == 0:
        return math.nan
    pooled = inside.m2 / inside.n + outside.m2 / outside.n
    if pooled <= _VARIANCE_FLOOR * (frame.m2 / frame.n):
        return math.nan
    diff = inside.mean - outside.mean
    return (diff if signed else abs(diff)) / math.sqrt(pooled)


def cnr(heatmap: np.ndarray, mask: np.ndarray, signed: bool = False) -> float:
    """Contrast-to-noise ratio of one region: |mu_in - mu_out| / sqrt(var_in + var_out) (SPEC 2.5).

    "in" = mask pixels, "out" = every other pixel, NaN ignored on both sides, population variances.
    Undefined (NaN) when either side has no valid pixel or the pooled variance is zero.
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    return _cnr_from_moments(_Moments.of(heatmap[mask]), _Moments.of(heatmap), signed)


def iou_at(heatmap: np.ndarray, mask: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS) -> np.ndarray:
    """IoU of (heatmap > t) with the mask for each threshold t; NaN never predicted; NaN when both are empty."""
    return _Split.of(heatmap, mask).iou_at(thresholds)


def miou(heatmap: np.ndarray, mask: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS) -> float:
    """Mean IoU over the thresholds, a fraction in [0, 1]."""
    return float(np.mean(iou_at(heatmap, mask, thresholds)))


def auc_roc(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Exact area under the ROC curve of the valid pixels as a classifier of the mask (ties count 1/2).

    Equals sklearn.metrics.roc_auc_score; NaN when the valid pixels hold only one class.
    """
    return _Split.of(heatmap, mask).auc()


def auc_roc_binned(heatmap: np.ndarray, mask: np.ndarray, n_thresholds: int = BINNED_AUC_THRESHOLDS) -> float:
    """The published code's binned AUROC (torchmetrics BinaryAUROC(thresholds=n)): positive = value >= t for
    t in linspace(0, 1, n), trapezoid over those n ROC points only. For comparison with published numbers."""
    return _Split.of(heatmap, mask).auc_binned(n_thresholds)


@dataclass(frozen=True)
class PairScores:
    """All metrics of one (heatmap, boxes) pair. `cnr_undefined` counts boxes whose CNR was NaN (counted 0)."""

    cnr: float
    cnr_signed: float
    iou: tuple[float, ...]
    miou: float
    auc: float
    auc_binned: float
    cnr_undefined: int


def score_pair(
    heatmap: np.ndarray, boxes: Sequence[BoxLike], thresholds: Sequence[float] = IOU_THRESHOLDS
) -> PairScores:
    """Every metric of SPEC 2.5 for one pair; `heatmap` is the normalised image-frame map.

    The pair's CNR is the mean of its boxes' CNRs ("out" = every other valid pixel, other boxes included);
    a NaN box CNR counts as 0, as the published code does, and is counted in `cnr_undefined`.
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    height, width = heatmap.shape
    split = _Split.of(heatmap, boxes_to_mask(boxes, height, width))
    frame = _Moments.of(split.target).plus(_Moments.of(split.background))
    per_box = [_cnr_from_moments(_Moments.of(heatmap[box_slices(b, height, width)]), frame, True) for b in boxes]
    undefined = sum(math.isnan(c) for c in per_box)
    signed = [0.0 if math.isnan(c) else c for c in per_box]
    iou = split.iou_at(thresholds)
    return PairScores(
        cnr=float(np.mean(np.abs(signed))) if signed else math.nan,
        cnr_signed=float(np.mean(signed)) if signed else math.nan,
        iou=tuple(float(v) for v in iou),
        miou=float(iou.mean()),
        auc=split.auc(),
        auc_binned=split.auc_binned(BINNED_AUC_THRESHOLDS),
        cnr_undefined=undefined,
    )


def score_boxes(predicted: Sequence[BoxLike], boxes: Sequence[BoxLike], height: int, width: int) -> PairScores:
    """SPEC 2.5 for box-only methods: IoU of the union of predicted boxes with the union of target boxes (the
    same at every threshold); no box predicted = empty mask = IoU 0. CNR and AUC are undefined (NaN)."""
    pred = boxes_to_mask(predicted, height, width)
    target = boxes_to_mask(boxes, height, width)
    union = int(np.count_nonzero(pred | target))
    iou = np.count_nonzero(pred & target) / union if union else math.nan
    return PairScores(math.nan, math.nan, (iou,) * len(IOU_THRESHOLDS), iou, math.nan, math.nan, 0)
