"""Exact scoring of a nearest-resized map on its own grid (docs/protocol.md section 8).

`to_image_frame` with nearest interpolation repeats source pixel (i, j) over the block of image rows whose
nearest index is i times the columns whose index is j (none where the map is shrunk). `score_pair` depends on the
frame only through how many pixels of each value lie in the target, in each box's CNR region and in the rest, so
the same formulas on the source values, each weighted by its block's pixel counts, give the same scores. Box
edges cut the image's rows and columns into bands; each region is all in or all out of a band x band cell, so its
block counts are the sum over its cells of rows[b] x cols[c], with rows[b, i] the rows of band b showing source row
i (likewise columns). The source values are sorted once (a radix sort); every IoU threshold, binned-AUC bin and
the exact AUC's tie groups are then read from running sums of the target and background counts in that order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrbench.benchmark.metrics import (
    IOU_THRESHOLDS,
    BoxLike,
    Moments,
    PairScores,
    ThresholdCounts,
    box_contrasts,
    box_slices,
    pair_scores,
    score_pair,
)
from cxrbench.benchmark.protocol import (
    ScoringProtocol,
    check_heatmap,
    check_protocol,
    nearest_index,
    normalise,
    to_image_frame,
)
from cxrbench.types import Interpolation


def score_square(
    heatmap: np.ndarray,
    height: int,
    width: int,
    boxes: Sequence[BoxLike],
    interpolation: Interpolation = "bilinear",
    thresholds: Sequence[float] = IOU_THRESHOLDS,
    protocol: ScoringProtocol = "cxrbench",
) -> PairScores:
    """`score_pair(to_image_frame(heatmap, height, width, interpolation, protocol), boxes, thresholds, protocol)`,
    on the map's own grid (`score_nearest`) when it is resized by nearest and has fewer pixels than the square."""
    check_protocol(protocol)
    arr = check_heatmap(heatmap)
    side = min(height, width)
    if interpolation == "nearest" and arr.size < side * side:
        return score_nearest(arr, height, width, boxes, thresholds, protocol)
    return score_pair(to_image_frame(arr, height, width, interpolation, protocol), boxes, thresholds, protocol)


def score_nearest(
    heatmap: np.ndarray,
    height: int,
    width: int,
    boxes: Sequence[BoxLike],
    thresholds: Sequence[float] = IOU_THRESHOLDS,
    protocol: ScoringProtocol = "cxrbench",
) -> PairScores:
    """`score_pair` of the nearest-resized, padded (and, under cxrbench, normalised) frame, from block counts.

    Integer counts (IoU, exact and binned AUC, undefined CNRs) are the frame's exactly; the CNR moments are sums
    in another order, equal to floating-point rounding.
    """
    check_protocol(protocol)
    arr = check_heatmap(heatmap)
    side = min(height, width)
    spans = [box_slices(box, height, width, protocol) for box in boxes]
    row_edges = _edges([(rows.start, rows.stop) for rows, _ in spans], height)
    col_edges = _edges([(cols.start, cols.stop) for _, cols in spans], width)
    rows = _band_counts(nearest_index(arr.shape[0], side), (height - side) // 2, row_edges, arr.shape[0])
    cols = _band_counts(nearest_index(arr.shape[1], side), (width - side) // 2, col_edges, arr.shape[1])
    shown_rows, shown_cols = rows.sum(axis=0) > 0, cols.sum(axis=0) > 0
    grid = _Grid(rows[:, shown_rows], cols[:, shown_cols], arr[shown_rows][:, shown_cols], protocol)

    box_cells = [np.outer(_covers(r, row_edges), _covers(c, col_edges)) for r, c in spans]
    union = np.logical_or.reduce(box_cells) if box_cells else np.zeros((len(rows), len(cols)), dtype=bool)
    everything = np.outer(grid.rows.sum(axis=0), grid.cols.sum(axis=0)) * grid.valid
    target = np.zeros_like(everything)
    where, counts = grid.region(union)
    target[where] = counts
    n_target = int(np.outer(np.diff(row_edges), np.diff(col_edges))[union].sum())
    split = SortedCounts.of(grid.values.ravel(), target.ravel(), everything.ravel(), n_target)
    frame = grid.moments((slice(None), slice(None)), everything)
    insides = (grid.moments(*grid.region(cells)) for cells in _cnr_cells(box_cells, protocol))
    return pair_scores(split, box_contrasts(insides, frame, protocol), thresholds)


@dataclass(frozen=True)
class SortedCounts(ThresholdCounts):
    """The grid's values sorted once, with the target and background pixels among the first k of them (k = 0 ..
    n, int64): every IoU threshold and binned-AUC bin is one binary search, the exact AUC one pass over the ties.
    Blocks that show no pixel of a part (NaN blocks: none at all) add 0 to its counts."""

    values: np.ndarray
    target: np.ndarray
    background: np.ndarray
    n_target: int

    @classmethod
    def of(cls, values: np.ndarray, target: np.ndarray, everything: np.ndarray, n_target: int) -> SortedCounts:
        """Values (float32, no NaN), each standing for `target` valid target pixels out of `everything` valid
        pixels; `n_target` counts every target pixel, NaN ones too."""
        order = _ascending_order(values)
        below_target, below = _cumulative(target[order]), _cumulative(everything[order])
        return cls(values[order], below_target, np.subtract(below, below_target, out=below), n_target)

    def count_above(self, part: np.ndarray, thresholds: Sequence[float], inclusive: bool = False) -> np.ndarray:
        keys = np.asarray(thresholds, dtype=np.float32)
        return part[-1] - part[np.searchsorted(self.values, keys, side="left" if inclusive else "right")]

    def auc(self) -> float:
        """Mann-Whitney U with ties 1/2, as `metrics.Split.auc`: 2U = sum over the groups of equal values of
        target pixels x (background pixels below the group + those below its end), an exact integer."""
        n_pos, n_neg = int(self.target[-1]), int(self.background[-1])
        if n_pos == 0 or n_neg == 0:
            return math.nan
        target, background = self.target, self.background
        tied = self.values[1:] == self.values[:-1]
        if tied.any():  # running sums at the group bounds only
            bounds = np.flatnonzero(np.concatenate([[True], ~tied, [True]]))
            target, background = target[bounds], background[bounds]
        return int(np.dot(np.diff(target), background[:-1] + background[1:])) / (2 * n_pos * n_neg)


def _cumulative(counts: np.ndarray) -> np.ndarray:
    """0 and the running sums of `counts` (int64): pixels among the first k entries, k = 0 .. len(counts)."""
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _ascending_order(values: np.ndarray) -> np.ndarray:
    """Indices that sort float32 values (no NaN) ascending, ties by index: a least-significant-digit radix sort of
    order-preserving 32-bit keys (value bits, negatives reversed below positives) in two stable 16-bit passes,
    NumPy's stable argsort of uint16 being a radix sort (2-5x faster here than NumPy's argsort of the values, the
    most on maps with many ties)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    keys = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
    by_low = np.argsort(keys.astype(np.uint16), kind="stable")
    return by_low[np.argsort((keys >> 16).astype(np.uint16)[by_low], kind="stable")]


class _Grid:
    """The shown source pixels (normalised under cxrbench) and the band x source counts of both axes."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, protocol: ScoringProtocol) -> None:
        self.rows, self.cols = rows, cols
        values = normalise(values) if protocol == "cxrbench" else values  # min-max over the frame's pixels
        self.valid = ~np.isnan(values)
        self.values = np.where(self.valid, values, np.float32(0))  # NaN blocks weigh 0 wherever they are counted
        self.row_spans, self.col_spans = _nonzero_spans(rows), _nonzero_spans(cols)

    def region(self, cells: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
        """The blocks a region made of these band x band cells touches (a rectangle of the grid) and how many of
        each block's valid pixels lie in it (int64, 0 on NaN blocks). Each cell adds rows[b] x cols[c]."""
        shown = [(r, c) for r, c in zip(*np.nonzero(cells), strict=True) if self.row_spans[r] and self.col_spans[c]]
        if not shown:
            return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), dtype=np.int64)
        top, left = min(self.row_spans[r].start for r, _ in shown), min(self.col_spans[c].start for _, c in shown)
        bottom, right = max(self.row_spans[r].stop for r, _ in shown), max(self.col_spans[c].stop for _, c in shown)
        out = np.zeros((bottom - top, right - left), dtype=np.int64)
        for r, c in shown:
            rows, cols = self.row_spans[r], self.col_spans[c]
            block = np.multiply.outer(self.rows[r, rows.start : rows.stop], self.cols[c, cols.start : cols.stop])
            out[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] += block
        where = slice(top, bottom), slice(left, right)
        return where, out * self.valid[where]

    def moments(self, where: tuple[slice, slice], counts: np.ndarray) -> Moments:
        """Moments of the blocks at `where`: each block's value, `counts` times."""
        return Moments.weighted(self.values[where].ravel(), counts.ravel())


def _edges(spans: list[tuple[int, int]], size: int) -> np.ndarray:
    """Band edges along one axis: 0, the axis length and every box start and stop (sorted, distinct)."""
    return np.unique(np.array([0, size, *itertools.chain.from_iterable(spans)], dtype=np.int64))


def _band_counts(index: np.ndarray, offset: int, edges: np.ndarray, n_source: int) -> np.ndarray:
    """(bands, n_source) counts: image rows (or columns) of each band showing each source row. The square starts
    at `offset` and image row offset + k shows source row index[k]; the NaN padding around it shows none."""
    bounds = np.clip(edges - offset, 0, index.size)
    return np.stack([np.bincount(index[a:b], minlength=n_source) for a, b in itertools.pairwise(bounds)])


def _nonzero_spans(counts: np.ndarray) -> list[range]:
    """Per band, the source indices it shows: a contiguous run (nearest indices ascend), empty in the padding."""
    spans = []
    for row in counts:
        shown = np.flatnonzero(row)
        spans.append(range(int(shown[0]), int(shown[-1]) + 1) if shown.size else range(0))
    return spans


def _covers(span: slice, edges: np.ndarray) -> np.ndarray:
    """Which bands lie inside the half-open pixel range of a box along one axis."""
    return (span.start <= edges[:-1]) & (edges[1:] <= span.stop)


def _cnr_cells(box_cells: list[np.ndarray], protocol: ScoringProtocol) -> list[np.ndarray]:
    """Each box's CNR "in" region as cells: the box, less (published) the boxes scored before it (section 4.1)."""
    if protocol == "cxrbench":
        return box_cells
    return [cells & ~np.any(box_cells[:k], axis=0) if k else cells for k, cells in enumerate(box_cells)]
