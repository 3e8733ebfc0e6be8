"""A tiny MS-CXR release in the real layout: MS_CXR_Local_Alignment_v*.csv next to the MIMIC-CXR-JPG files/ tree."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

COLUMNS = (
    "dicom_id",
    "category_name",
    "label_text",
    "path",
    "x",
    "y",
    "w",
    "h",
    "image_width",
    "image_height",
    "split",
)
# dicom_id, subject, study, (width, height)
IMAGES = {
    "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014": ("10000032", "50414267", (320, 400)),
    "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962": ("10000764", "57375967", (420, 360)),
    "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab": ("10001217", "58913004", (380, 380)),
}
# dicom_id, category, sentence, (x, y, w, h), split
ROWS = [
    (
        "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",
        "Pneumonia",
        "Right lower lobe consolidation concerning for pneumonia",
        (40, 230, 90, 80),
        "test",
    ),
    (
        "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",
        "Pleural Effusion",
        "Small bilateral pleural effusions",
        (30, 300, 70, 60),
        "test",
    ),
    (
        "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",
        "Pleural Effusion",
        "Small bilateral pleural effusions",
        (220, 305, 70, 55),
        "test",
    ),
    (
        "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962",
        "Cardiomegaly",
        "Moderately enlarged cardiac silhouette",
        (150, 170, 170, 120),
        "val",
    ),
    (
        "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962",
        "Lung Opacity",
        "Patchy airspace opacity",
        (60, 80, 60, 70),
        "test",
    ),
    (
        "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab",
        "Pneumothorax",
        "Small left apical pneumothorax",
        (250, 30, 80, 60),
        "train",
    ),
]


def image_path(dicom_id: str) -> str:
    subject, study, _ = IMAGES[dicom_id]
    return f"files/p{subject[:2]}/p{subject}/s{study}/{dicom_id}.jpg"


def write_mscxr(root: Path, rows: list = ROWS, version: str = "1.1.0") -> Path:
    """Write the CSV (and an older v0.9.0 decoy that must lose) and one grayscale JPG per image."""
    for i, (dicom_id, (_, _, (width, height))) in enumerate(IMAGES.items()):
        path = root / image_path(dicom_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = (np.random.default_rng(i).random((height, width)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=95)
    for name, body in ((f"MS_CXR_Local_Alignment_v{version}.csv", rows), ("MS_CXR_Local_Alignment_v0.9.0.csv", [])):
        with (root / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for dicom_id, category, text, box, split in body:
                width, height = IMAGES[dicom_id][2]
                writer.writerow([dicom_id, category, text, image_path(dicom_id), *box, width, height, split])
    return root


def write_physionet_mscxr(mirror: Path, version: str = "1.1.0", jpg_version: str = "2.1.0") -> tuple[Path, Path]:
    """The release as `wget -r` leaves it under `mirror` (`physionet.org/`): the CSV, its license and
    SHA256SUMS.txt in `files/ms-cxr/<version>/`, the images in `files/mimic-cxr-jpg/<jpg_version>/files/`
    with that project's metadata table, an image MS-CXR does not use and its SHA256SUMS.txt. Returns the two
    version roots."""
    from cxrbench.testing.physionet import version_root, write_sums

    staged = write_mscxr(mirror / "staging", version=version)
    project, jpgs = version_root(mirror, "ms-cxr", version), version_root(mirror, "mimic-cxr-jpg", jpg_version)
    (staged / f"MS_CXR_Local_Alignment_v{version}.csv").replace(project / f"MS_CXR_Local_Alignment_v{version}.csv")
    (project / "LICENSE.txt").write_text("PhysioNet Credentialed Health Data License 1.5.0\n", encoding="utf-8")
    (staged / "files").replace(jpgs / "files")
    unused = jpgs / "files" / "p19" / "p19999999" / "s59999999" / "ffffffff-00000000-11111111-22222222-33333333.jpg"
    unused.parent.mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(unused)
    (jpgs / "mimic-cxr-2.0.0-metadata.csv.gz").write_bytes(gzip.compress(b"dicom_id,subject_id,study_id\n"))
    for name in (f"MS_CXR_Local_Alignment_v{version}.csv", "MS_CXR_Local_Alignment_v0.9.0.csv"):
        (staged / name).unlink(missing_ok=True)
    staged.rmdir()
    write_sums(project)
    write_sums(jpgs)
    return project, jpgs
