"""Per-pair metrics on a heatmap in the image frame (docs/protocol.md sections 3-4).

Heatmaps are float32 (H, W) with NaN where the method did not look (`protocol.to_image_frame`); in [0, 1]
under the `cxrbench` protocol, as the method returned them under `published`. NaN pixels are excluded from
CNR and AUC and never predicted positive; a target pixel lying in the NaN padding still counts in the IoU
union. Thresholds are compared in the heatmap's float32, as `heatmap > t` does in NumPy and PyTorch.

The two protocols differ in how a box becomes pixels (section 3) and in the CNR of a pair with several boxes
(section 4.1); everything else is shared. The public one-metric functions and the all-metrics `score_pair`
share one core: the valid pixels are split into target / background and each part is sorted once; exact AUC
(Mann-Whitney U with mid-ranks for ties, an exact integer from one search per distinct value of one part),
the binned AUC and every IoU threshold are then counts from binary searches, and CNR per box uses box sums plus
the frame's moments (Chan et al. pairwise update), so no metric rescans the frame (docs/protocol.md section 9).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxrbench.benchmark.protocol import ScoringProtocol, check_protocol
from cxrbench.types import Box

IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
# torcheval's binary_binned_auroc(threshold=5) bins at torch.linspace(0, 1, 5), these five float32 values.
BINNED_AUC_THRESHOLDS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
# Pooled variances at or below this fraction of the frame's variance are floating-point noise: CNR undefined.
_VARIANCE_FLOOR = 1e-12

BoxLike = Box | Sequence[float]


def _pixel_span(lo: float, hi: float, size: int, protocol: ScoringProtocol) -> tuple[int, int]:
    """Half-open pixel range of [lo, hi) on an axis of `size` pixels (docs/protocol.md section 3).

    cxrbench: [floor(lo), ceil(hi)) clipped to [0, size). published: the slice [int(lo):int(hi)] with Python's
    (and PyTorch's) slice rules: int() truncates toward zero and a negative index counts from the far edge.
    """
    if protocol == "published":
        start, stop, _ = slice(int(lo), int(hi)).indices(size)
        return start, max(start, stop)
    return min(max(math.floor(lo), 0), size), min(max(math.ceil(hi), 0), size)


def box_slices(box: BoxLike, height: int, width: int, protocol: ScoringProtocol = "cxrbench") -> tuple[slice, slice]:
    """Row and column slices of the pixels a box (x_min, y_min, x_max, y_max) covers (may be empty)."""
    x_min, y_min, x_max, y_max = box.as_tuple() if isinstance(box, Box) else box
    r0, r1 = _pixel_span(y_min, y_max, height, protocol)
    c0, c1 = _pixel_span(x_min, x_max, width, protocol)
    return slice(r0, r1), slice(c0, c1)


def boxes_to_mask(
    boxes: Iterable[BoxLike], height: int, width: int, protocol: ScoringProtocol = "cxrbench"
) -> np.ndarray:
    """Union of the boxes as a bool (H, W) mask, each box rasterised as `box_slices` says."""
    check_protocol(protocol)
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        mask[box_slices(box, height, width, protocol)] = True
    return mask


@dataclass(frozen=True)
class _Part:
    """Valid pixel values of one class, sorted."""

    values: np.ndarray

    @property
    def total(self) -> int:
        return self.values.size

    def below(self, keys: np.ndarray, inclusive: bool = False) -> np.ndarray:
        """Pixels of this part with value < key (<= key with `inclusive`), per key, compared in float32."""
        return np.searchsorted(self.values, keys, side="right" if inclusive else "left")

    def distinct(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct values, ascending, and how many pixels hold each."""
        starts = np.flatnonzero(np.concatenate([[True], self.values[1:] != self.values[:-1]]))
        return self.values[starts], np.diff(np.append(starts, self.values.size))

    def below_twice(self, keys: np.ndarray) -> np.ndarray:
        """Per key (no NaN), pixels < key plus pixels <= key: twice the pixels below it, ties counted 1/2. One
        binary search per key; a second, for the upper end of the tie, only for keys some value equals."""
        left = np.searchsorted(self.values, keys)
        right = left.copy()
        tied = np.take(self.values, left, mode="clip") == keys  # left == size: every value is below the key
        right[tied] = np.searchsorted(self.values, keys[tied], side="right")
        return left + right


class ThresholdCounts:
    """IoU and binned AUC from the counts of target and background pixels above thresholds (shared by the NumPy
    split and the torch scorer's); a subclass says how to count."""

    target: Any
    background: Any
    n_target: int

    def count_above(self, part: Any, thresholds: Sequence[float], inclusive: bool = False) -> np.ndarray:
        """How many pixels of a part are > t (>= t with `inclusive`), per threshold, compared in float32."""
        raise NotImplementedError

    def iou_at(self, thresholds: Sequence[float]) -> np.ndarray:
        tp = self.count_above(self.target, thresholds)
        union = self.n_target + self.count_above(self.background, thresholds)
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def auc_binned(self, thresholds: Sequence[float]) -> float:
        """torcheval's binary_binned_auroc (docs/protocol.md section 4.4): ROC points (0, 0) and (fp, tp) counts of
        value >= t for t from the highest threshold down, trapezoid area over tp(t_min) * fp(t_min); 0.5 when
        either count is 0. Its trapezoid sums integer counts and halves the sum in float32: so does this."""
        order = np.asarray(thresholds, dtype=np.float32)[::-1]
        if order.size == 0 or (np.diff(order) > 0).any() or order[-1] < 0 or order[0] > 1:
            raise ValueError(f"binned AUC thresholds must ascend within [0, 1], got {thresholds}")
        tp = np.concatenate([[0], self.count_above(self.target, order, inclusive=True)])
        fp = np.concatenate([[0], self.count_above(self.background, order, inclusive=True)])
        factor = int(tp[-1]) * int(fp[-1])
        if factor == 0:
            return 0.5
        twice_area = int((np.diff(fp) * (tp[1:] + tp[:-1])).sum(dtype=np.int64))
        return float(np.float32(twice_area)) / 2 / factor


@dataclass(frozen=True)
class Split(ThresholdCounts):
    """Valid pixels split by the target mask, each part sorted; `n_target` counts NaN target pixels too."""

    target: _Part
    background: _Part
    n_target: int

    @classmethod
    def of(cls, heatmap: np.ndarray, mask: np.ndarray) -> Split:
        heatmap = np.asarray(heatmap, dtype=np.float32)
        mask = np.asarray(mask, dtype=bool)
        if heatmap.shape != mask.shape:
            raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ in shape")
        valid = ~np.isnan(heatmap)
        return cls(
            target=_Part(np.sort(heatmap[mask & valid])),
            background=_Part(np.sort(heatmap[~mask & valid])),
            n_target=int(np.count_nonzero(mask)),
        )

    def count_above(self, part: _Part, thresholds: Sequence[float], inclusive: bool = False) -> np.ndarray:
        return part.total - part.below(np.asarray(thresholds, dtype=np.float32), inclusive=not inclusive)

    def auc(self) -> float:
        """Mann-Whitney U over the valid pixels: per target pixel, the background pixels below it, ties 1/2.

        Searched from the part with fewer values: 2U = sum over targets of (bg < v) + (bg <= v)
        = 2 n_pos n_neg - sum over background of (targets < v) + (targets <= v), an exact integer either way.
        """
        pos, neg = self.target, self.background
        n_pos, n_neg = pos.total, neg.total
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        if pos.values.size <= neg.values.size:
            twice_u = _twice_below(pos, neg)
        else:
            twice_u = 2 * n_pos * n_neg - _twice_below(neg, pos)
        return twice_u / (2 * n_pos * n_neg)


def _twice_below(keys: _Part, part: _Part) -> int:
    """Sum over the pixels of `keys` of (pixels of `part` < value) + (pixels of `part` <= value), searching each
    distinct value once (a piecewise-constant frame has few)."""
    values, pixels = keys.distinct()
    return int((part.below_twice(values) * pixels).sum(dtype=np.int64))


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (M2) of a set of values."""

    n: int
    mean: float
    m2: float

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        return cls.of_valid(values[~np.isnan(values)])

    @classmethod
    def of_valid(cls, values: np.ndarray) -> Moments:
        """Moments of values without NaN: two-pass mean and M2 in float64 (one float64 copy, updated in place)."""
        if values.size == 0:
            return EMPTY_COUNTS
        deviations = values.astype(np.float64)
        mean = float(deviations.mean())
        deviations -= mean
        return cls(values.size, mean, float(np.square(deviations, out=deviations).sum()))

    @classmethod
    def weighted(cls, values: np.ndarray, weights: np.ndarray) -> Moments:
        """Moments of a set holding each (non-NaN) value `weights` times: two-pass weighted mean and M2."""
        n = int(weights.sum(dtype=np.int64))
        if n == 0:
            return EMPTY_COUNTS
        values = values.astype(np.float64)
        mean = float((weights * values).sum() / n)
        return cls(n, mean, float((weights * np.square(values - mean)).sum()))

    def plus(self, other: Moments) -> Moments:
        """Moments of the union of two disjoint sets (Chan et al.'s pairwise update)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * other.n / n, self.m2 + other.m2 + delta**2 * self.n * other.n / n)

    def minus(self, part: Moments) -> Moments:
        """Moments of this set without `part` (Chan et al.'s pairwise update, solved for the rest)."""
        n = self.n - part.n
        if n <= 0:
            return Moments(0, math.nan, 0.0)
        if part.n == 0:
            return self
        mean = (self.n * self.mean - part.n * part.mean) / n
        m2 = self.m2 - part.m2 - (part.mean - mean) ** 2 * part.n * n / self.n
        return Moments(n, mean, max(m2, 0.0))


EMPTY_COUNTS = Moments(0, math.nan, 0.0)


def _contrast(inside: Moments, outside: Moments, frame: Moments) -> float:
    """(mu_in - mu_out) / sqrt(var_in + var_out), population variances (docs/protocol.md section 4.1).

    NaN (undefined) when either side has no valid pixel or the pooled variance is zero, i.e. at most
    1e-12 of the frame's variance (floating-point noise): section 5, the one deliberate difference.
    """
    if inside.n == 0 or outside.n == 0:
        return math.nan
    pooled = inside.m2 / inside.n + outside.m2 / outside.n
    if pooled <= _VARIANCE_FLOOR * (frame.m2 / frame.n):
        return math.nan
    return (inside.mean - outside.mean) / math.sqrt(pooled)


def box_contrasts(insides: Iterable[Moments], frame: Moments, protocol: ScoringProtocol) -> list[float]:
    """Signed CNR of each box from the moments of its "in" pixels (docs/protocol.md section 4.1).

    cxrbench: out = every valid pixel not in the box. published: the boxes are scored in order on one working
    copy whose scored pixels are then removed (set to NaN in the published code), so box k's "in" excludes boxes
    1..k-1 (the caller's `insides` say so) and its "out" excludes boxes 1..k.
    """
    out, removed = [], EMPTY_COUNTS
    for inside in insides:
        removed = removed.plus(inside)
        out.append(_contrast(inside, frame.minus(inside if protocol == "cxrbench" else removed), frame))
    return out


def _box_insides(heatmap: np.ndarray, boxes: Sequence[BoxLike], protocol: ScoringProtocol) -> Iterator[Moments]:
    """Moments of each box's "in" pixels on the full frame: the box's valid pixels, less (published) the pixels
    of the boxes before it."""
    height, width = heatmap.shape
    scored = np.zeros(heatmap.shape, dtype=bool) if protocol == "published" else None
    for box in boxes:
        rows, cols = box_slices(box, height, width, protocol)
        if scored is None:
            yield Moments.of(heatmap[rows, cols])
            continue
        yield Moments.of(heatmap[rows, cols][~scored[rows, cols]])
        scored[rows, cols] = True


def cnr(heatmap: np.ndarray, mask: np.ndarray, signed: bool = False) -> float:
    """Contrast-to-noise ratio of one region: |mu_in - mu_out| / sqrt(var_in + var_out) (docs/protocol.md 4.1).

    "in" = mask pixels, "out" = every other pixel, NaN ignored on both sides, population variances.
    Undefined (NaN) when either side has no valid pixel or the pooled variance is zero. The same in both
    protocols: they differ only in how a pair's boxes become regions (`score_pair`).
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    inside, frame = Moments.of(heatmap[mask]), Moments.of(heatmap)
    value = _contrast(inside, frame.minus(inside), frame)
    return value if signed else abs(value)


def iou_at(heatmap: np.ndarray, mask: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS) -> np.ndarray:
    """IoU of (heatmap > t) with the mask for each threshold t; NaN never predicted; NaN when both are empty."""
    return Split.of(heatmap, mask).iou_at(thresholds)


def miou(heatmap: np.ndarray, mask: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS) -> float:
    """Mean IoU over the thresholds, a fraction in [0, 1] (docs/protocol.md section 4.2)."""
    return float(np.mean(iou_at(heatmap, mask, thresholds)))


def auc_roc(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Exact area under the ROC curve of the valid pixels as a classifier of the mask (ties count 1/2).

    Equals sklearn.metrics.roc_auc_score; NaN when the valid pixels hold only one class (docs/protocol.md 4.3).
    """
    return Split.of(heatmap, mask).auc()


def auc_roc_binned(heatmap: np.ndarray, mask: np.ndarray, thresholds: Sequence[float] = BINNED_AUC_THRESHOLDS) -> float:
    """The published code's binned AUROC, torcheval's `binary_binned_auroc(input, target, threshold=...)` on the
    flattened map (docs/protocol.md section 4.4), in both protocols: positive = value >= t, the ROC point (0, 0)
    included, 0.5 when no valid pixel reaches the lowest threshold in one of the two classes."""
    return Split.of(heatmap, mask).auc_binned(thresholds)


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
    heatmap: np.ndarray,
    boxes: Sequence[BoxLike],
    thresholds: Sequence[float] = IOU_THRESHOLDS,
    protocol: ScoringProtocol = "cxrbench",
) -> PairScores:
    """Every metric of docs/protocol.md section 4 for one pair; `heatmap` is the image-frame map of the same
    protocol (`to_image_frame`).

    The pair's CNR is the mean of its boxes' CNRs (section 4.1 says which pixels each box compares, per
    protocol); a NaN box CNR counts as 0, as the published code does, and is counted in `cnr_undefined`.
    """
    check_protocol(protocol)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    height, width = heatmap.shape
    split = Split.of(heatmap, boxes_to_mask(boxes, height, width, protocol))
    frame = Moments.of_valid(split.target.values).plus(Moments.of_valid(split.background.values))
    return pair_scores(split, box_contrasts(_box_insides(heatmap, boxes, protocol), frame, protocol), thresholds)


def pair_scores(split: Split, per_box: list[float], thresholds: Sequence[float]) -> PairScores:
    """Assemble a pair's scores; the pair's CNR is the mean of its boxes' CNRs, a NaN box CNR counted as 0."""
    signed = [0.0 if math.isnan(c) else c for c in per_box]
    iou = split.iou_at(thresholds)
    return PairScores(
        cnr=float(np.mean(np.abs(signed))) if signed else math.nan,
        cnr_signed=float(np.mean(signed)) if signed else math.nan,
        iou=tuple(float(v) for v in iou),
        miou=float(iou.mean()),
        auc=split.auc(),
        auc_binned=split.auc_binned(BINNED_AUC_THRESHOLDS),
        cnr_undefined=sum(math.isnan(c) for c in per_box),
    )


def score_boxes(
    predicted: Sequence[BoxLike],
    boxes: Sequence[BoxLike],
    height: int,
    width: int,
    protocol: ScoringProtocol = "cxrbench",
) -> PairScores:
    """docs/protocol.md section 4.5, box-only methods: IoU of the union of predicted boxes with the union of
    target boxes (the same at every threshold), both rasterised by the protocol's rule; no box predicted =
    empty mask = IoU 0. CNR and AUC are undefined (NaN)."""
    pred = boxes_to_mask(predicted, height, width, protocol)
    target = boxes_to_mask(boxes, height, width, protocol)
    union = int(np.count_nonzero(pred | target))
    iou = np.count_nonzero(pred & target) / union if union else math.nan
    return PairScores(math.nan, math.nan, (iou,) * len(IOU_THRESHOLDS), iou, math.nan, math.nan, 0)
