"""A tiny Chest ImaGenome gold box file in the release's column layout."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

COLUMNS = (
    "image_id",
    "bbox_name",
    "x1",
    "y1",
    "x2",
    "y2",
    "width",
    "height",
    "original_x1",
    "original_y1",
    "original_x2",
    "original_y2",
    "original_width",
    "original_height",
)


def write_gold_csv(path: Path, rows: Iterable[tuple[str, str, tuple[float, float, float, float], int, int]]) -> Path:
    """rows: (image_id, bbox_name, (x1, y1, x2, y2) in original pixels, width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for image_id, name, (x1, y1, x2, y2), width, height in rows:
            s = 224 / max(width, height)
            writer.writerow(
                [
                    f"{image_id}.dcm",
                    name,
                    round(x1 * s),
                    round(y1 * s),
                    round(x2 * s),
                    round(y2 * s),
                    round((x2 - x1) * s),
                    round((y2 - y1) * s),
                    x1,
                    y1,
                    x2,
                    y2,
                    width,
                    height,
                ]
            )
    return path


def anatomy_boxes(width: int, height: int) -> dict[str, tuple[float, float, float, float]]:
    """Plausible ImaGenome boxes for a W x H frontal image (patient right = image left)."""
    boxes = {"cardiac silhouette": (0.42 * width, 0.50 * height, 0.72 * width, 0.80 * height)}
    for side, (x0, x1) in (("right", (0.15, 0.47)), ("left", (0.53, 0.85))):
        lx0, lx1, ly0, ly1 = x0 * width, x1 * width, 0.15 * height, 0.80 * height
        h = ly1 - ly0
        lateral = (lx0, lx0 + 0.4 * (lx1 - lx0)) if side == "right" else (lx1 - 0.4 * (lx1 - lx0), lx1)
        boxes.update(
            {
                f"{side} lung": (lx0, ly0, lx1, ly1),
                f"{side} apical zone": (lx0, ly0, lx1, ly0 + 0.2 * h),
                f"{side} upper lung zone": (lx0, ly0, lx1, ly0 + h / 3),
                f"{side} mid lung zone": (lx0, ly0 + h / 3, lx1, ly0 + 2 * h / 3),
                f"{side} lower lung zone": (lx0, ly0 + 2 * h / 3, lx1, ly1),
                f"{side} costophrenic angle": (lateral[0], ly1 - 0.15 * h, lateral[1], ly1),
            }
        )
    return boxes
