"""Independent, deliberately plain per-pixel references for the metrics (SPEC 2), used only by tests."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np


def mask(boxes, height, width):
    out = np.zeros((height, width), dtype=bool)
    for i in range(height):
        for j in range(width):
            for x0, y0, x1, y1 in boxes:
                if math.floor(x0) <= j <= math.ceil(x1) - 1 and math.floor(y0) <= i <= math.ceil(y1) - 1:
                    out[i, j] = True
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


def auc_binned(heatmap, target, n=5):
    pos, neg = _values(heatmap, target, True), _values(heatmap, target, False)
    points = []
    for k in range(n - 1, -1, -1):
        t = k / (n - 1)
        points.append((sum(v >= t for v in neg) / len(neg), sum(v >= t for v in pos) / len(pos)))
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(points))


def pair_cnr(heatmap, boxes, signed=False):
    h, w = heatmap.shape
    values = [cnr(heatmap, mask([b], h, w), signed=True) for b in boxes]
    values = [0.0 if math.isnan(v) else v for v in values]
    return statistics.fmean(values if signed else [abs(v) for v in values])
