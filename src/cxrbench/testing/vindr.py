"""A tiny VinDr-CXR 1.0.0 test split in the release's layout: annotations/annotations_test.csv,
annotations/image_labels_test.csv and test/<image_id>.dicom (docs/datasets.md, "vindr").

The rows exercise the published class rule: ILD/Infiltration boxes in images with and without a non-zero label
among the 8 pathologies (and in an image the label file does not list), rows without a box, several boxes of one
class, and labels the rule leaves out (Nodule/Mass, No finding).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pydicom.uid import JPEG2000Lossless

from cxrbench.testing.dicom import write_dicom

A, B, C = "00a1b2c3d4e5f60718293a4b5c6d7e8f", "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
D, E = "1111aaaa2222bbbb3333cccc4444dddd", "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
# image_id -> (rows, columns, photometric, transfer syntax or None)
IMAGES = {
    A: (400, 320, "MONOCHROME1", None),
    B: (360, 420, "MONOCHROME2", None),
    C: (380, 380, "MONOCHROME2", JPEG2000Lossless),
    D: (320, 320, "MONOCHROME1", None),
    E: (300, 260, "MONOCHROME2", None),
}
ROWS = [
    # image, radiologist, class, box (x_min, y_min, x_max, y_max) or None
    (A, "R8", "Pleural effusion", (20.5, 250.0, 110.0, 330.25)),
    (A, "R8", "Pleural effusion", (200.0, 260.0, 300.0, 335.0)),
    (A, "R9", "Nodule/Mass", (60.0, 100.0, 80.0, 120.0)),
    (A, "R9", "Cardiomegaly", (110.0, 190.0, 250.0, 290.0)),
    (A, "R10", "ILD", (40.0, 60.0, 120.0, 200.0)),
    (B, "R10", "Atelectasis", (90.0, 200.0, 180.0, 290.0)),
    (B, "R10", "Pneumothorax", (250.0, 20.0, 330.0, 90.0)),
    (B, "R8", "Infiltration", (60.0, 80.0, 160.0, 190.0)),
    (B, "R9", "ILD", (240.0, 120.0, 340.0, 230.0)),
    (C, "R8", "No finding", None),
    (C, "R9", "Infiltration", None),
    (D, "R8", "Infiltration", (40.0, 50.0, 130.0, 150.0)),
    (D, "R8", "Infiltration", (190.0, 60.0, 280.0, 170.0)),
    (D, "R9", "Nodule/Mass", (150.0, 150.0, 170.0, 170.0)),
    (E, "R10", "Lung Opacity", (30.0, 60.0, 120.0, 160.0)),
    (E, "R10", "Infiltration", (150.0, 70.0, 240.0, 170.0)),
    (E, "R10", "Edema", (20.0, 40.0, 240.0, 200.0)),
]
ANNOTATION_COLUMNS = ("image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max")
# The release's image-level label columns: the 22 local labels, then the 6 global ones
LABEL_COLUMNS = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Lung cavity",
    "Lung cyst",
    "Mediastinal shift",
    "Nodule/Mass",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
    "Other lesion",
    "COPD",
    "Lung tumor",
    "Pneumonia",
    "Tuberculosis",
    "Other diseases",
    "No finding",
)
# image_id -> the labels set to 1 (every other column 0); E has no row in the label file
IMAGE_LABELS = {
    A: ("Cardiomegaly", "ILD", "Nodule/Mass", "Pleural effusion"),  # two of the 8: its ILD box is Pneumonia
    B: ("Atelectasis", "ILD", "Infiltration", "Pneumothorax", "Pneumonia"),
    C: ("Infiltration", "Pneumonia"),  # its Infiltration row has no box: no pair
    D: ("Infiltration", "Nodule/Mass", "Other diseases"),  # none of the 8: its Infiltration boxes are left out
}


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


def _write_csv(path: Path, header: tuple[str, ...], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_vindr(root: Path, rows: list = ROWS, images: dict = IMAGES, labels: dict = IMAGE_LABELS) -> Path:
    """Write the release under `root`; MONOCHROME1 files store inverted values (4095 - v)."""
    for seed, (image_id, (height, width, photometric, syntax)) in enumerate(images.items()):
        stored = chest_like(height, width, seed)
        if photometric == "MONOCHROME1":
            stored = (4095 - stored).astype(np.uint16)
        kwargs = {"syntax": syntax} if syntax else {}
        write_dicom(root / "test" / f"{image_id}.dicom", stored, photometric, **kwargs)
    annotations = [[i, rad, name, *(box if box else ("", "", "", ""))] for i, rad, name, box in rows]
    _write_csv(root / "annotations" / "annotations_test.csv", ANNOTATION_COLUMNS, annotations)
    flags = [[i, "R8", *(int(c in on) for c in LABEL_COLUMNS)] for i, on in labels.items()]
    _write_csv(root / "annotations" / "image_labels_test.csv", ("image_id", "rad_id", *LABEL_COLUMNS), flags)
    return root


def write_physionet_vindr(mirror: Path, version: str = "1.0.0") -> Path:
    """The release as `wget -r` leaves it under `mirror` (`physionet.org/files/vindr-cxr/<version>/`): the test
    split of `write_vindr`, the training annotations' headers, a license and SHA256SUMS.txt. Returns the
    version root."""
    from cxrbench.testing.physionet import version_root, write_sums

    root = write_vindr(version_root(mirror, "vindr-cxr", version))
    _write_csv(root / "annotations" / "annotations_train.csv", ANNOTATION_COLUMNS, [])
    (root / "LICENSE.txt").write_text("PhysioNet Credentialed Health Data License 1.5.0\n", encoding="utf-8")
    write_sums(root)
    return root
