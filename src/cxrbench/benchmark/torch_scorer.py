"""Optional torch scorer: `metrics.score_pair` on a torch device, for full-frame maps (docs/protocol.md
section 9).

The same algorithm as the NumPy scorer, run where the map is (a GPU): the valid pixels split by the target mask,
each part sorted once (`torch.sort`), IoU and binned-AUC counts by binary search at the thresholds (float32
compares), the exact AUC's Mann-Whitney U as an integer sum of searches, and CNR moments as float64 two-pass sums.
Only the counts and the moments come back to the CPU, where the formulas are metrics' own, so IoU, exact and
binned AUC and `cnr_undefined` equal the NumPy scorer's and CNR agrees to float64 rounding (tested to 1e-6 on CPU
tensors, tests/benchmark/test_torch_scorer.py). torch is imported on the first call, never with cxrbench.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxrbench.benchmark.metrics import (
    EMPTY_COUNTS,
    IOU_THRESHOLDS,
    BoxLike,
    Moments,
    PairScores,
    ThresholdCounts,
    box_contrasts,
    box_slices,
    pair_scores,
)
from cxrbench.benchmark.protocol import ScoringProtocol, check_protocol
from cxrbench.errors import MethodOutputError


def score_frame(
    heatmap: Any,
    boxes: Sequence[BoxLike],
    thresholds: Sequence[float] = IOU_THRESHOLDS,
    protocol: ScoringProtocol = "cxrbench",
    device: Any = None,
) -> PairScores:
    """`metrics.score_pair(heatmap, boxes, thresholds, protocol)` computed with torch on `device` (a torch device
    or its name; the heatmap's own device when None, the CPU for a NumPy array).

    `heatmap` is the image-frame map of the same protocol (`protocol.to_image_frame` or `full_frame`), a NumPy
    array or a torch tensor; it is scored in float32.
    """
    import torch

    check_protocol(protocol)
    frame = torch.as_tensor(heatmap).to(device=device, dtype=torch.float32)
    if frame.ndim != 2:
        raise MethodOutputError(f"the torch scorer needs a 2-D image-frame map, got shape {tuple(frame.shape)}")
    height, width = frame.shape
    mask = torch.zeros((height, width), dtype=torch.bool, device=frame.device)
    for box in boxes:
        mask[box_slices(box, height, width, protocol)] = True
    valid = ~torch.isnan(frame)
    split = _TorchSplit(
        torch.sort(frame[mask & valid]).values, torch.sort(frame[~mask & valid]).values, int(mask.sum())
    )
    moments = _moments(split.target).plus(_moments(split.background))
    insides = _box_insides(frame, boxes, protocol)
    return pair_scores(split, box_contrasts(insides, moments, protocol), thresholds)


@dataclass(frozen=True)
class _TorchSplit(ThresholdCounts):
    """Sorted valid target and background values (1-D float32 tensors without NaN) on one device."""

    target: Any
    background: Any
    n_target: int

    def count_above(self, part: Any, thresholds: Sequence[float], inclusive: bool = False) -> np.ndarray:
        import torch

        keys = torch.from_numpy(np.array(thresholds, dtype=np.float32)).to(part.device)
        below = torch.searchsorted(part, keys, right=not inclusive)
        return part.numel() - below.cpu().numpy().astype(np.int64)

    def auc(self) -> float:
        """Mann-Whitney U: per target pixel, (background < v) + (background <= v), summed as an integer on the
        device; the same value as `metrics.Split.auc`."""
        import torch

        pos, neg = self.target, self.background
        n_pos, n_neg = pos.numel(), neg.numel()
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        below = torch.searchsorted(neg, pos).sum() + torch.searchsorted(neg, pos, right=True).sum()
        return int(below) / (2 * n_pos * n_neg)


def _moments(values: Any) -> Moments:
    """Count, mean and M2 of a 1-D tensor without NaN: two passes in float64, as `Moments.of_valid`."""
    import torch

    if values.numel() == 0:
        return EMPTY_COUNTS
    deviations = values.to(dtype=torch.float64, copy=True)
    mean = float(deviations.mean())
    return Moments(values.numel(), mean, float(deviations.sub_(mean).square_().sum()))


def _box_insides(frame: Any, boxes: Sequence[BoxLike], protocol: ScoringProtocol) -> Iterator[Moments]:
    """Moments of each box's "in" pixels (docs/protocol.md section 4.1): its valid pixels, less (published) the
    pixels of the boxes before it, as `metrics._box_insides`."""
    import torch

    height, width = frame.shape
    scored = torch.zeros_like(frame, dtype=torch.bool) if protocol == "published" else None
    for box in boxes:
        region = box_slices(box, height, width, protocol)
        pixels = frame[region]
        if scored is not None:
            pixels = pixels[~scored[region]]
            scored[region] = True
        yield _moments(pixels[~torch.isnan(pixels)])
