"""A tiny VinDr-CXR release in the real layout: annotations/annotations_test.csv and test/<id>.dicom."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pydicom.uid import JPEG2000Lossless

from cxrbench.testing.dicom import write_dicom

# image_id -> (rows, columns, photometric, transfer syntax or None)
IMAGES = {
    "00a1b2c3d4e5f60718293a4b5c6d7e8f": (400, 320, "MONOCHROME1", None),
    "0123456789abcdef0123456789abcdef": (360, 420, "MONOCHROME2", None),
    "fedcba9876543210fedcba9876543210": (380, 380, "MONOCHROME2", JPEG2000Lossless),
}
ROWS = [
    # image, radiologist, class, box
    ("00a1b2c3d4e5f60718293a4b5c6d7e8f", "R8", "Pleural effusion", (20.5, 250.0, 110.0, 330.25)),
    ("00a1b2c3d4e5f60718293a4b5c6d7e8f", "R8", "Pleural effusion", (200.0, 260.0, 300.0, 335.0)),
    ("00a1b2c3d4e5f60718293a4b5c6d7e8f", "R9", "Nodule/Mass", (60.0, 100.0, 80.0, 120.0)),
    ("00a1b2c3d4e5f60718293a4b5c6d7e8f", "R9", "Cardiomegaly", (110.0, 190.0, 250.0, 290.0)),
    ("0123456789abcdef0123456789abcdef", "R10", "Atelectasis", (90.0, 200.0, 180.0, 290.0)),
    ("0123456789abcdef0123456789abcdef", "R10", "Pneumothorax", (250.0, 20.0, 330.0, 90.0)),
    ("fedcba9876543210fedcba9876543210", "R8", "No finding", None),
]


def chest_like(rows: int, columns: int, seed: int) -> np.ndarray:
    """A smooth 12-bit image: bright body, two darker lung fields."""
    yy, xx = np.mgrid[0:rows, 0:columns]
    body = np.exp(-(((xx - columns / 2) / (0.45 * columns)) ** 4 + ((yy - rows / 2) / (0.55 * rows)) ** 4))
    lungs = sum(
        np.exp(-(((xx - cx * columns) / (0.13 * columns)) ** 2 + ((yy - 0.45 * rows) / (0.25 * rows)) ** 2))
        for cx in (0.32, 0.68)
    )
    noise = np.random.default_rng(seed).normal(0, 0.01, (rows, columns))
    return np.clip((0.2 + 0.7 * body - 0.4 * lungs + noise) * 4000, 0, 4095).astype(np.uint16)


def write_vindr(root: Path, rows: list = ROWS, images: dict = IMAGES) -> Path:
    """Write the release under `root`; MONOCHROME1 files store inverted values (4095 - v)."""
    for seed, (image_id, (height, width, photometric, syntax)) in enumerate(images.items()):
        stored = chest_like(height, width, seed)
        if photometric == "MONOCHROME1":
            stored = (4095 - stored).astype(np.uint16)
        kwargs = {"syntax": syntax} if syntax else {}
        write_dicom(root / "test" / f"{image_id}.dicom", stored, photometric, **kwargs)
    path = root / "annotations" / "annotations_test.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max"])
        for image_id, rad, name, box in rows:
            writer.writerow([image_id, rad, name, *(box if box else ("", "", "", ""))])
    return root
