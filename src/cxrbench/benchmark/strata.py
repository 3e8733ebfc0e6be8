"""Per-pair descriptors stored in scores.csv for breakdowns (docs/results.md, "Per-pair columns").

- `box_fraction`: the area of the union of the pair's boxes, rasterised as the protocol scores them,
  over the image area H * W (0 when no box covers a pixel).
- `box_side`: where the boxes lie on the patient, from their centres. Radiographs are stored in the
  radiological convention (the patient's right on the image's left), so a box centred left of the
  vertical midline is on the patient's *right*: "right", "left", "bilateral" (boxes on both sides) or
  "none" (no box).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrbench.benchmark.metrics import box_slices
from cxrbench.benchmark.protocol import ScoringProtocol
from cxrbench.types import Box

BOX_SIDES = ("right", "left", "bilateral", "none")


def box_fraction(boxes: Sequence[Box], height: int, width: int, protocol: ScoringProtocol = "cxrbench") -> float:
    """Union area of the rasterised boxes / (height * width), on the grid of the boxes' own edges."""
    spans = [box_slices(box, height, width, protocol) for box in boxes]
    spans = [(r, c) for r, c in spans if r.stop > r.start and c.stop > c.start]
    if not spans or height * width == 0:
        return 0.0
    rows = np.unique([e for r, _ in spans for e in (r.start, r.stop)])
    cols = np.unique([e for _, c in spans for e in (c.start, c.stop)])
    covered = np.zeros((len(rows) - 1, len(cols) - 1), dtype=bool)
    for r, c in spans:
        covered[np.searchsorted(rows, r.start) : np.searchsorted(rows, r.stop),
                np.searchsorted(cols, c.start) : np.searchsorted(cols, c.stop)] = True  # fmt: skip
    area = np.outer(np.diff(rows), np.diff(cols))
    return float(area[covered].sum()) / (height * width)


def box_side(boxes: Sequence[Box], width: int) -> str:
    """The patient side of the boxes' centres (radiological convention: image left = patient right)."""
    if not boxes:
        return "none"
    centres = [(box.x_min + box.x_max) / 2 for box in boxes]
    sides = {"right" if x < width / 2 else "left" for x in centres}
    return sides.pop() if len(sides) == 1 else "bilateral"
