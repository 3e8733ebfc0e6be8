"""Independent, deliberately plain per-pixel references for the metrics (docs/protocol.md), used only by tests."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np


def covers(box, i, j, height, width, protocol="cxrbench"):
    """Whether pixel (row i, column j) lies in the box: cxrbench's floor/ceil rule, or the published code's
    `[int(y0):int(y1), int(x0):int(x1)]` slice (a Python range sliced the same way)."""
    x0, y0, x1, y1 = box
    if protocol == "published":
        return i in range(height)[int(y0) : int(y1)] and j in range(width)[int(x0) : int(x1)]
    return math.floor(x0) <= j <= math.ceil(x1) - 1 and math.floor(y0) <= i <= math.ceil(y1) - 1


def mask(boxes, height, width, protocol="cxrbench"):
    out = np.zeros((height, width), dtype=bool)
    for i in range(height):
        for j in range(width):
            out[i, j] = any(covers(b, i, j, height, width, protocol) for b in boxes)
    return out


def _values(heatmap, region, inside):
    h, w = heatmap.shape
    return [
        float(heatmap[i, j])
        for i in range(h)
        for j in range(w)
        if bool(region[i, j]) == inside and not math.isnan(heatmap[i, j])
    ]


def cnr(heatmap, region, signed=False):
    inside, outside = _values(heatmap, region, True), _values(heatmap, region, False)
    if not inside or not outside:
        return math.nan
    denominator = math.sqrt(statistics.pvariance(inside) + statistics.pvariance(outside))
    if denominator == 0:
        return math.nan
    diff = statistics.fmean(inside) - statistics.fmean(outside)
    return (diff if signed else abs(diff)) / denominator


def iou(heatmap, target, threshold):
    t = np.float32(threshold)
    h, w = heatmap.shape
    inter = union = 0
    for i in range(h):
        for j in range(w):
            pred = (not math.isnan(heatmap[i, j])) and heatmap[i, j] > t
            inter += pred and target[i, j]
            union += pred or target[i, j]
    return inter / union if union else math.nan


def auc_binned(heatmap, target, thresholds=(0.0, 0.25, 0.5, 0.75, 1.0)):
    """torcheval's binary_binned_auroc as its docs state it: ROC points (0, 0), then (false, true positive
    counts of value >= t) from the highest t down, trapezoid area over the two counts at the lowest t."""
    pos, neg = _values(heatmap, target, True), _values(heatmap, target, False)
    points = [(0, 0)]
    for t in sorted(thresholds, reverse=True):
        t = np.float32(t)
        points.append((sum(v >= t for v in neg), sum(v >= t for v in pos)))
    n_neg, n_pos = points[-1]
    if n_neg * n_pos == 0:
        return 0.5
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(points)) / (n_neg * n_pos)


def pair_cnr(heatmap, boxes, signed=False):
    h, w = heatmap.shape
    values = [cnr(heatmap, mask([b], h, w), signed=True) for b in boxes]
    values = [0.0 if math.isnan(v) else v for v in values]
    return statistics.fmean(values if signed else [abs(v) for v in values])


def published_box_cnrs(heatmap, boxes):
    """The published CNR loop (metrics/eval_metrics.py, CNR): one working copy; per box in order, "in" = the
    box's pixels that are not NaN yet, then the box is set to NaN and "out" = every pixel still not NaN.
    Signed values; NaN where undefined (the published code's nan_to_num happens in the caller)."""
    work = np.array(heatmap, dtype=np.float64)
    h, w = work.shape
    out = []
    for box in boxes:
        pixels = [(i, j) for i in range(h) for j in range(w) if covers(box, i, j, h, w, "published")]
        inside = [work[i, j] for i, j in pixels if not math.isnan(work[i, j])]
        for i, j in pixels:
            work[i, j] = math.nan
        outside = [v for v in work.ravel() if not math.isnan(v)]
        if not inside or not outside:
            out.append(math.nan)
            continue
        pooled = statistics.pvariance(inside) + statistics.pvariance(outside)
        diff = statistics.fmean(inside) - statistics.fmean(outside)
        out.append(diff / math.sqrt(pooled) if pooled > 0 else math.nan)
    return out


def published_pair_cnr(heatmap, boxes, signed=False):
    values = [0.0 if math.isnan(v) else v for v in published_box_cnrs(heatmap, boxes)]
    return statistics.fmean(values if signed else [abs(v) for v in values])


def _bilinear_taps(i, n_in, n_out):
    """docs/protocol.md section 2.1, one output index: source (i + 0.5) * n_in / n_out - 0.5 clamped to
    [0, n_in - 1], its floor, the next index (the same one where the weight is 0) and the weight of the next."""
    src = min(max((i + 0.5) * (n_in / n_out) - 0.5, 0.0), n_in - 1)
    i0 = math.floor(src)
    weight = src - i0
    return i0, (min(i0 + 1, n_in - 1) if weight > 0 else i0), weight


def bilinear(x, height, width):
    """The bilinear resize pixel by pixel in Python floats (IEEE float64): rows first, then columns, cast to
    float32 at the end, as docs/protocol.md section 2.1 states it."""
    x = np.asarray(x, dtype=np.float64)
    rows = []
    for i in range(height):
        r0, r1, rw = _bilinear_taps(i, x.shape[0], height)
        rows.append([float(x[r0, j]) * (1.0 - rw) + float(x[r1, j]) * rw for j in range(x.shape[1])])
    out = np.empty((height, width), dtype=np.float32)
    for j in range(width):
        c0, c1, cw = _bilinear_taps(j, x.shape[1], width)
        for i in range(height):
            out[i, j] = rows[i][c0] * (1.0 - cw) + rows[i][c1] * cw
    return out


def min_max(frame):
    """(v - min) / (max - min) over the non-NaN pixels in Python floats, cast to float32; a constant map is 0."""
    values = [float(v) for v in np.asarray(frame).ravel() if not math.isnan(v)]
    lo, hi = min(values), max(values)
    out = np.full(frame.shape, np.nan, dtype=np.float32)
    for index, v in np.ndenumerate(frame):
        if not math.isnan(v):
            out[index] = (float(v) - lo) / (hi - lo) if hi > lo else 0.0
    return out
