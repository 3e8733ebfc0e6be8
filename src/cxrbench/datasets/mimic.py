"""The prompt-tuning set from MIMIC-CXR (docs/datasets.md, "mimic"): frontal images of studies with exactly one
of the 8 pathologies (CheXpert labeller, label 1.0), whose report locates it (the anatomy extractor's filters, at
least one location), each with its "{location} {pathology}" prompt and the locations' Gaussians from the table.

Layout (the PhysioNet releases unpacked together; `reports=DIR` if the reports live elsewhere):
`<root>/mimic-cxr-2.0.0-chexpert.csv[.gz]`, `<root>/mimic-cxr-2.0.0-metadata.csv[.gz]`,
`<root>/files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg` (MIMIC-CXR-JPG) and the reports
`files/pXX/pXXXXXXXX/sXXXXXXXX.txt` (mimic-cxr-reports.zip) under `<root>` or `<root>/mimic-cxr-reports`.
A PhysioNet download is read as it lies: `<root>` may be a folder above `files/mimic-cxr-jpg/<version>/`
(`physionet.org`; the newest version), whose `files/mimic-cxr/<version>/files/` then gives the reports.
Only the FINDINGS and IMPRESSION sections are read when the report has them (the indication's "evaluate for
pneumonia" is a question, not a finding).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrbench.anatomy.extract import Extractor, report_findings
from cxrbench.anatomy.lut import Gaussian2D, load_lut
from cxrbench.anatomy.vocabulary import PATHOLOGIES, parse_prompt
from cxrbench.datasets.physionet import project_root
from cxrbench.datasets.tables import check_id, parse_number, read_table, where
from cxrbench.errors import DataError

LABELS = "mimic-cxr-2.0.0-chexpert.csv"
METADATA = "mimic-cxr-2.0.0-metadata.csv"
COLUMNS = (
    "image",
    "dicom_id",
    "subject_id",
    "study_id",
    "pathology",
    "sentence",
    "locations",
    "prompt",
    "mu_x",
    "mu_y",
    "sigma_x",
    "sigma_y",
)
_GAUSSIAN_FIELDS = ("mu_x", "mu_y", "sigma_x", "sigma_y")
_SECTION = re.compile(r"^\s*([A-Z][A-Z /&]+):", re.MULTILINE)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root} holds no {name}[.gz] (MIMIC-CXR-JPG 2.0.0 from PhysioNet)")


def report_body(text: str) -> str:
    """The FINDINGS and IMPRESSION sections, or the whole report when it has neither."""
    marks = [(m.start(), m.end(), m.group(1).strip()) for m in _SECTION.finditer(text)]
    kept = [
        text[end : marks[i + 1][0] if i + 1 < len(marks) else len(text)]
        for i, (_, end, name) in enumerate(marks)
        if name in ("FINDINGS", "IMPRESSION")
    ]
    return "\n\n".join(k.strip() for k in kept) if kept else text


def _checked_ids(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> pd.DataFrame:
    """The frame, once every id it will build a path from is known usable (no separator, no '..')."""
    for row in frame[[*columns, "_line"]].to_dict("records"):
        for column in columns:
            check_id(row[column], column, path, row["_line"])
    return frame


def _report_path(reports: Path, subject: str, study: str) -> Path:
    return reports / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"


def curate_tuning_set(
    mimic_root: str | Path,
    reports: str | Path | None = None,
    lut: str | Path | None = None,
    extractor: Extractor = "rules",
    weights: str | Path | None = None,
    views: tuple[str, ...] = ("PA", "AP"),
) -> pd.DataFrame:
    """One row per (frontal image, prompt): see COLUMNS; Gaussian parameters are ";"-joined per location."""
    base = Path(mimic_root)
    if not base.is_dir():
        raise DataError(f"MIMIC-CXR root {base} does not exist")
    root, mirrored_reports = project_root(base, "mimic-cxr-jpg"), project_root(base, "mimic-cxr")
    if reports is None and mirrored_reports != base and (mirrored_reports / "files").is_dir():
        reports = mirrored_reports
    if reports is None:
        reports = root / "mimic-cxr-reports" if (root / "mimic-cxr-reports" / "files").is_dir() else root
    reports, table = Path(reports), load_lut(lut)
    labels_path = _find(root, LABELS)
    labels = read_table(labels_path, ("subject_id", "study_id", *PATHOLOGIES), "CheXpert label file")
    positive = labels[list(PATHOLOGIES)].apply(lambda col: col.str.strip().isin(("1", "1.0")))
    single = _checked_ids(labels[positive.sum(axis=1) == 1], ("subject_id", "study_id"), labels_path)
    single = single.assign(pathology=positive.idxmax(axis=1))
    ids, metadata_path = ("dicom_id", "subject_id", "study_id"), _find(root, METADATA)
    metadata = read_table(metadata_path, (*ids, "ViewPosition"), "MIMIC-CXR metadata file")
    frontal = _checked_ids(metadata[metadata["ViewPosition"].isin(views)], ids, metadata_path)
    images = frontal.groupby(["subject_id", "study_id"])["dicom_id"].apply(list).to_dict()
    rows = []
    for study in single.to_dict("records"):
        subject, study_id, pathology = study["subject_id"], study["study_id"], study["pathology"]
        dicoms = images.get((subject, study_id))
        report = _report_path(reports, subject, study_id)
        if not dicoms or not report.is_file():
            continue
        findings = report_findings(
            report_body(report.read_text(encoding="utf-8", errors="replace")), [pathology], extractor, weights
        )
        if not findings:
            continue
        finding = findings[0]
        gaussians = [table.gaussians[loc] for loc in finding.locations]
        for dicom_id in dicoms:
            rows.append(
                {
                    "image": f"files/p{subject[:2]}/p{subject}/s{study_id}/{dicom_id}.jpg",
                    "dicom_id": dicom_id,
                    "subject_id": subject,
                    "study_id": study_id,
                    "pathology": pathology,
                    "sentence": " ".join(finding.sentences),
                    "locations": ";".join(finding.locations),
                    "prompt": finding.prompt,
                    **{f: ";".join(f"{getattr(g, f):.2f}" for g in gaussians) for f in _GAUSSIAN_FIELDS},
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summary_lines(table: pd.DataFrame) -> list[str]:
    """Samples per class and per location, for the command's printout."""
    lines = [f"{len(table)} samples from {table['study_id'].nunique()} studies"]
    counts = table["pathology"].value_counts()
    lines += [f"  {p:<18} {counts.get(p, 0)}" for p in PATHOLOGIES]
    per_location = Counter(loc for locs in table["locations"] for loc in locs.split(";"))
    lines.append("per location:")
    lines += [f"  {loc:<22} {n}" for loc, n in per_location.most_common()]
    return lines


@dataclass(frozen=True)
class TuningSample:
    """One tuning-set row: the image, its prompt and the Gaussians of the prompt's locations (LUT frame)."""

    line: int
    image: Path
    prompt: str
    gaussians: tuple[Gaussian2D, ...]


def read_tuning_set(path: Path, images: Path | None = None) -> tuple[list[TuningSample], list[tuple[int, str]]]:
    """The rows of a tuning set written by `curate_tuning_set`, and (line, problem) for the rows that cannot be
    used (unknown prompt, Gaussians not matching the locations, missing image). Image paths are relative to
    `images` (default: the table's folder) unless absolute."""
    table = read_table(path, ("image", "prompt", "mu_x", "mu_y", "sigma_x", "sigma_y"), "tuning set")
    root = Path(images) if images is not None else path.parent
    samples, problems = [], []
    for row in table.to_dict("records"):
        line = row["_line"]
        try:
            locations, _ = parse_prompt(row["prompt"])
            params = [[parse_number(v, f, path, line) for v in row[f].split(";")] for f in _GAUSSIAN_FIELDS]
            if any(len(p) != len(locations) or None in p for p in params):
                raise DataError(f"{where(path, line)}: mu/sigma lists do not match the {len(locations)} location(s)")
            if min(params[2] + params[3]) <= 0:
                raise DataError(f"{where(path, line)}: sigma_x and sigma_y must be positive")
        except (ValueError, DataError) as exc:
            problems.append((line, str(exc) if isinstance(exc, DataError) else f"{where(path, line)}: {exc}"))
            continue
        image = root / row["image"]
        if not image.is_file():
            problems.append((line, f"{where(path, line)}: image not found: {image}"))
            continue
        gaussians = tuple(Gaussian2D(*values) for values in zip(*params, strict=True))
        samples.append(TuningSample(line, image, row["prompt"], gaussians))
    return samples, problems
