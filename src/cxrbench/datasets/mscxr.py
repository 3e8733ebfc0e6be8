"""MS-CXR: sentence-level boxes on MIMIC-CXR-JPG images, and MS-CXR-loc, the same pairs with each sentence
rewritten to "{location} {pathology}" (pairs whose sentence names no location are dropped); docs/datasets.md,
"mscxr and mscxr-loc".

Layout: `<data_root>/MS_CXR_Local_Alignment_v*.csv` (the newest version wins, or `csv=FILE`) and the
MIMIC-CXR-JPG `files/` tree that the CSV's `path` column is relative to (under `<data_root>`, or
`images=DIR`). PhysioNet downloads are read as they lie: `<data_root>` may be the MS-CXR version root
(`physionet.org/files/ms-cxr/1.1.0`) or a folder above it (`physionet.org`, whose newest `ms-cxr` and
`mimic-cxr-jpg` versions are used), `images=` the MIMIC-CXR-JPG version root, its `files/`, or a folder above.
Rows with the same (dicom_id, label_text) are one pair with several boxes; a row repeating a box is dropped
with a warning. A pair whose rows cannot be used (bad box or dicom_id, unknown category, rows disagreeing on the
image's size or path, a path leaving the data root) becomes an error pair that the runner reports, so one bad
row never hides the rest.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from cxrbench.anatomy.extract import Extractor, extract_locations
from cxrbench.anatomy.rules import anatomy_locations
from cxrbench.anatomy.vocabulary import PATHOLOGIES, make_prompt
from cxrbench.datasets.images import jpg_source
from cxrbench.datasets.physionet import project_root, release
from cxrbench.datasets.tables import check_id, inside_root, parse_box, parse_int, read_table, unique_boxes, where
from cxrbench.errors import DataError
from cxrbench.types import Box, Sample

COLUMNS = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height")
XYWH_COLUMNS = ("x", "y", "w", "h")
_CLASSES = {p.lower(): p for p in PATHOLOGIES}
_VERSION = re.compile(r"MS_CXR_Local_Alignment_v(\d+(?:\.\d+)*)\.csv$")
REFERENCE_SIZES_LOC = {
    "Pneumonia": 146,
    "Pneumothorax": 204,
    "Consolidation": 105,
    "Atelectasis": 55,
    "Edema": 41,
    "Cardiomegaly": 333,
    "Lung Opacity": 78,
    "Pleural Effusion": 81,
}


def find_csv(root: Path) -> Path:
    """The newest MS_CXR_Local_Alignment_v*.csv in `root` (by version number)."""
    found = [
        (tuple(int(p) for p in m.group(1).split(".")), path)
        for path in root.glob("MS_CXR_Local_Alignment_v*.csv")
        if (m := _VERSION.search(path.name))
    ]
    if not found:
        raise DataError(f"no MS_CXR_Local_Alignment_v*.csv in {root} (MS-CXR from PhysioNet); or pass csv=FILE")
    return max(found)[1]


def image_root(folder: Path) -> Path:
    """The MIMIC-CXR-JPG root the CSV's `files/...` paths are relative to: `folder`, its newest PhysioNet
    `mimic-cxr-jpg/<version>/` below, or the parent of a `files/` folder given itself."""
    root = project_root(folder, "mimic-cxr-jpg")
    return root.parent if root.name == "files" and not (root / "files").is_dir() else root


class MSCXRDataset:
    """MS-CXR phrase-grounding pairs; the prompt is the radiologist's sentence."""

    name = "mscxr"
    classes = PATHOLOGIES
    reference_sizes: ClassVar[dict[str, int]] = {}

    def __init__(
        self,
        data_root: str | Path | None = None,
        csv: str | Path | None = None,
        images: str | Path | None = None,
        split: str | None = None,
    ):
        if data_root is None and csv is None:
            raise DataError(f"the {self.name} dataset needs --data-root DIR (MS-CXR CSV + MIMIC-CXR-JPG files/)")
        base = Path(data_root) if data_root else Path(csv).parent
        if not base.is_dir():
            raise DataError(f"{self.name} data root {base} does not exist")
        self.csv = Path(csv) if csv else find_csv(project_root(base, "ms-cxr"))
        self.images = image_root(Path(images) if images else base)
        self.split = split
        self._images: list[Path] = []
        self._samples = self._read()

    def files(self) -> list[Path]:
        """Every file the dataset reads: the CSV, then each pair's image (`cxrbench datasets verify`)."""
        return [self.csv, *self._images]

    def release(self) -> dict[str, str | None]:
        """The MS-CXR release read: PhysioNet project and version, CSV name and sha256 (for summary.json)."""
        found = release(self.csv)
        version = _VERSION.search(self.csv.name)
        return {**found, "version": found["version"] or (version.group(1) if version else None)}

    def _read(self) -> list[Sample]:
        frame = read_table(self.csv, COLUMNS, "MS-CXR file")
        if self.split is not None:
            if "split" not in frame.columns:
                raise DataError(f"{self.csv} has no split column; drop the split option")
            frame = frame[frame["split"] == self.split]
        groups: dict[tuple[str, str], list[dict]] = {}
        for row in frame.to_dict("records"):
            groups.setdefault((row["dicom_id"], row["label_text"]), []).append(row)
        samples = []
        for (dicom_id, text), rows in groups.items():
            pair_id = f"{dicom_id}:{hashlib.sha1(text.encode('utf-8')).hexdigest()[:10]}"
            first = rows[0]
            line = first["_line"]
            try:
                check_id(dicom_id, "dicom_id", self.csv, line)
                names = {r["category_name"].strip().lower() for r in rows}
                if len(names) > 1 or next(iter(names)) not in _CLASSES:
                    raise DataError(
                        f"{where(self.csv, line)}: category {first['category_name']!r} is not one of "
                        f"{', '.join(PATHOLOGIES)} (or differs between the rows of one pair)"
                    )
                height, width = self._image_size(rows)
                boxes = [(r["_line"], self._box(r, height, width)) for r in rows]
                image = inside_root(self.images, first["path"], self.csv, line)
                self._images.append(image)
            except DataError as exc:
                samples.append(Sample.broken(pair_id, dicom_id, first["category_name"], str(exc)))
                continue
            boxes = unique_boxes(boxes, self.csv, pair_id)
            pathology = _CLASSES[names.pop()]
            prompt = self.prompt(text, pathology)
            if prompt is not None:  # MS-CXR-loc drops pairs without a location
                samples.append(
                    Sample(pair_id, dicom_id, pathology, prompt, tuple(boxes), height, width, jpg_source(image))
                )
        return samples

    def _image_size(self, rows: list[dict]) -> tuple[int, int]:
        """(height, width) of the pair's image; every row of the pair must give the same size and path."""
        first = rows[0]
        sizes = [
            (*(parse_int(r[c], c, self.csv, r["_line"]) for c in ("image_height", "image_width")), r["path"].strip())
            for r in rows
        ]
        for row, size in zip(rows, sizes, strict=True):
            if size != sizes[0]:
                raise DataError(
                    f"{where(self.csv, row['_line'])}: image {size[1]} x {size[0]} at {size[2]!r} differs from line "
                    f"{first['_line']}'s {sizes[0][1]} x {sizes[0][0]} at {sizes[0][2]!r}; rows of a pair must agree"
                )
        return sizes[0][0], sizes[0][1]

    def _box(self, row: dict, height: int, width: int) -> Box:
        box = parse_box([row[c] for c in XYWH_COLUMNS], XYWH_COLUMNS, self.csv, row["_line"], height, width, xywh=True)
        if box is None:
            raise DataError(f"{where(self.csv, row['_line'])}: an MS-CXR pair needs a box on every row")
        return box

    def config(self) -> dict[str, object]:
        """The effective options, defaults included; where the files lie is not part of it (the run's manifest
        covers their content: docs/results.md)."""
        return {"split": self.split}

    def prompt(self, text: str, pathology: str) -> str | None:
        """The pair's prompt: the sentence itself."""
        return text

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)


class MSCXRLocDataset(MSCXRDataset):
    """MS-CXR with each sentence rewritten to "{location} {pathology}"; pairs without a location are
    dropped. Locations: every location the sentence names (MS-CXR sentences describe one finding), or, with
    extractor="radgraph", RadGraph-XL's anatomy of that finding; Cardiomegaly's location is the heart region."""

    name = "mscxr-loc"
    reference_sizes = REFERENCE_SIZES_LOC

    def __init__(
        self,
        data_root: str | Path | None = None,
        csv: str | Path | None = None,
        images: str | Path | None = None,
        split: str | None = None,
        extractor: Extractor = "rules",
        weights: str | Path | None = None,
    ):
        self.extractor = extractor
        self.weights = weights
        super().__init__(data_root, csv, images, split)

    def config(self) -> dict[str, object]:
        """The effective options, defaults included."""
        return {**super().config(), "extractor": self.extractor}

    def prompt(self, text: str, pathology: str) -> str | None:
        """'{location} {pathology}', or None when the sentence names no location."""
        if pathology == "Cardiomegaly":
            locations = ["cardiomegaly"]
        elif self.extractor == "rules":
            locations = anatomy_locations(text)
        else:
            locations = extract_locations(text, self.extractor, pathology, self.weights)
        return make_prompt(locations, pathology) if locations else None
