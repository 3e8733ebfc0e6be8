"""Chest ImaGenome gold boxes (gold_bbox_coordinate_annotations_1000images.csv), used to build the LUT
(docs/datasets.md, "imagenome")."""

from __future__ import annotations

from pathlib import Path

from cxrbench.anatomy.lut import NamedBox
from cxrbench.datasets.tables import parse_box, parse_int, read_table
from cxrbench.errors import DataError

GOLD_CSV = "gold_bbox_coordinate_annotations_1000images.csv"
GOLD_BOX_COLUMNS = ("original_x1", "original_y1", "original_x2", "original_y2")
SIZE_COLUMNS = (("original_width", "original_height"), ("image_width", "image_height"))


def find_gold_csv(path: str | Path) -> Path:
    """The gold CSV itself, or the file of that name inside a folder."""
    path = Path(path)
    if path.is_dir():
        hits = sorted(path.rglob(GOLD_CSV))
        if not hits:
            raise DataError(f"{path} holds no {GOLD_CSV} (Chest ImaGenome 1.0.0, silver_dataset/../gold_dataset)")
        return hits[0]
    return path


def read_gold_boxes(path: str | Path) -> list[NamedBox]:
    """Every gold box with its name and image size; rows without a box are skipped."""
    csv = find_gold_csv(path)
    frame = read_table(csv, ("image_id", "bbox_name", *GOLD_BOX_COLUMNS), "ImaGenome gold box file")
    size_columns = next((pair for pair in SIZE_COLUMNS if all(c in frame.columns for c in pair)), None)
    if size_columns is None:
        raise DataError(f"{csv} has no image size columns (one of {SIZE_COLUMNS}); it has: {', '.join(frame.columns)}")
    boxes = []
    for row in frame.to_dict("records"):
        line = row["_line"]
        width = parse_int(row[size_columns[0]], size_columns[0], csv, line)
        height = parse_int(row[size_columns[1]], size_columns[1], csv, line)
        box = parse_box([row[c] for c in GOLD_BOX_COLUMNS], GOLD_BOX_COLUMNS, csv, line, height, width, clip=False)
        if box is not None:
            image_id = row["image_id"].removesuffix(".dcm")
            boxes.append(NamedBox(image_id, row["bbox_name"], box, height, width))
    return boxes
