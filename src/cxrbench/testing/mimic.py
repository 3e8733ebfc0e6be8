"""A tiny MIMIC-CXR release: CheXpert labels, metadata (gzipped CSVs), JPG images and report text files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from cxrbench.anatomy.vocabulary import PATHOLOGIES

LABEL_COLUMNS = (
    "subject_id",
    "study_id",
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
# subject, study, positive labels (1.0), uncertain labels (-1.0), report, [(dicom_id, view)]
STUDIES = [
    (
        "10000032",
        "50414267",
        ["Atelectasis"],
        [],
        "INDICATION: Evaluate for pneumonia.\n\nFINDINGS: There is mild left basilar atelectasis. No effusion.\n\n"
        "IMPRESSION: Left basilar atelectasis.",
        [
            ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "PA"),
            ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "LATERAL"),
        ],
    ),
    (
        "10000764",
        "57375967",
        ["Pleural Effusion"],
        ["Atelectasis"],
        "FINDINGS: Small right pleural effusion. Small left pleural effusion is new.",
        [("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "AP")],
    ),
    (
        "10001217",
        "58913004",
        ["Pneumonia", "Edema"],
        [],
        "FINDINGS: Right lower lobe pneumonia. Mild pulmonary edema.",
        [("68b5c4b1-227d0485-9cc38c3f-3b74f4a4-4e9c5b3d", "PA")],
    ),
    (
        "10001401",
        "51065211",
        ["Pneumothorax"],
        [],
        "FINDINGS: There is no pneumothorax on this study.",
        [("4f3a1e0b-5f2c6a8d-9e0b1c2d-3e4f5a6b-7c8d9e0f", "PA")],
    ),
    (
        "10001884",
        "54370209",
        ["Cardiomegaly"],
        [],
        "FINDINGS: Moderate cardiomegaly. Lungs are clear.",
        [("8a9b0c1d-2e3f4a5b-6c7d8e9f-0a1b2c3d-4e5f6a7b", "PA")],
    ),
]


def _csv_gz(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> None:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def write_mimic(root: Path, studies: list = STUDIES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    labels, metadata = [], []
    for i, (subject, study, positive, uncertain, report, images) in enumerate(studies):
        values = {c: "1.0" for c in positive} | {c: "-1.0" for c in uncertain}
        labels.append([subject, study, *(values.get(c, "") for c in LABEL_COLUMNS[2:])])
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        (folder / f"s{study}").mkdir(parents=True, exist_ok=True)
        (folder / f"s{study}.txt").write_text(f"                                 FINAL REPORT\n {report}\n")
        for dicom_id, view in images:
            metadata.append([dicom_id, subject, study, "CHEST (PA AND LAT)", view, "300", "260"])
            pixels = (np.random.default_rng(i).random((300, 260)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"s{study}" / f"{dicom_id}.jpg")
    _csv_gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz", LABEL_COLUMNS, labels)
    _csv_gz(
        root / "mimic-cxr-2.0.0-metadata.csv.gz",
        ("dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns"),
        metadata,
    )
    assert set(PATHOLOGIES) <= set(LABEL_COLUMNS)
    return root


def write_demo_tuning_set(folder: Path, n: int = 8) -> Path:
    """A tuning set in `cxrbench curate`'s format from the first n demo phantoms (JPGs under `folder/files/`),
    each prompt's locations' Gaussians from the packaged location table; returns the CSV's path."""
    from cxrbench.anatomy.lut import load_lut
    from cxrbench.anatomy.vocabulary import parse_prompt
    from cxrbench.datasets.demo import DemoDataset
    from cxrbench.datasets.mimic import COLUMNS

    table = load_lut()
    (folder / "files").mkdir(parents=True, exist_ok=True)
    lines = [",".join(COLUMNS)]
    for i, sample in enumerate(list(DemoDataset())[:n]):
        name = f"files/demo{i:03d}.jpg"
        Image.fromarray(np.round(sample.load_image() * 255).astype(np.uint8)).save(folder / name, quality=95)
        locations, pathology = parse_prompt(sample.prompt)
        gaussians = [table.gaussians[loc] for loc in locations]
        params = [";".join(f"{getattr(g, f):.2f}" for g in gaussians) for f in ("mu_x", "mu_y", "sigma_x", "sigma_y")]
        row = [name, f"d{i}", "10000001", f"5{i:07d}", pathology, sample.prompt, ";".join(locations), sample.prompt]
        lines.append(",".join([*row, *params]))
    path = folder / "tuning.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_physionet_mimic(mirror: Path, studies: list = STUDIES) -> tuple[Path, Path]:
    """MIMIC-CXR-JPG 2.1.0 and the MIMIC-CXR 2.0.0 reports as `wget -r` leaves them under `mirror`
    (`physionet.org/files/mimic-cxr-jpg/2.1.0/`, `physionet.org/files/mimic-cxr/2.0.0/files/pXX/.../sXX.txt`).
    Returns the two version roots."""
    from cxrbench.testing.physionet import version_root

    jpgs = write_mimic(version_root(mirror, "mimic-cxr-jpg", "2.1.0"), studies)
    reports = version_root(mirror, "mimic-cxr", "2.0.0")
    for report in sorted(jpgs.glob("files/p*/p*/s*.txt")):
        target = reports / report.relative_to(jpgs)
        target.parent.mkdir(parents=True, exist_ok=True)
        report.replace(target)
    return jpgs, reports
