"""VinDr-CXR test set: DICOM images and consensus boxes, with synthetic "{location} {pathology}" prompts from
the location table (docs/datasets.md, "vindr").

Layout (VinDr-CXR 1.0.0 as PhysioNet unpacks it): `<data_root>/annotations/annotations_test.csv` (image_id,
rad_id, class_name, x_min, y_min, x_max, y_max), `annotations/image_labels_test.csv` beside it (image_id, rad_id,
one 0/1 column per label) and `<data_root>/test/<image_id>.dicom`; the two CSVs may also lie in `<data_root>`.
`<data_root>` may also be a folder above the version root of a PhysioNet download (`physionet.org`: its newest
`vindr-cxr` version is used).

Classes (option `classes`):
- `published` (default) rebuilds the published evaluation set (vios-s/ldm-phrase-grounding, data/vindr_cxr.py):
  rows without a box are dropped; rows of the 8 pathologies are kept; rows of "ILD" and "Infiltration" are kept,
  renamed Pneumonia, when their image has a non-zero value in one of the 8 pathology columns of
  image_labels_test.csv (VinDr-CXR has no Pneumonia box label).
- `local`: the rows of the 7 classes shared with MS-CXR-loc (no Edema), with VinDr's own names only.
One pair per (image, class) holding its boxes (a repeated box once); each box's location is the LUT entry nearest
in squared 2-Wasserstein distance, several boxes give locations joined by " <and> " (each once, in box order).
Pixels (option `pixels`): `dicom` (modality LUT, VOI LUT, MONOCHROME1) or `published` (the authors' 8-bit
conversion), see cxrbench.datasets.dicom; `images.csv` records which.
A pair whose rows, labels or image cannot be used (bad box or id, unknown class, missing or unreadable DICOM)
becomes an error pair that the runner reports (--on-error fail stops on it, skip logs it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, get_args

from cxrbench.anatomy.lut import load_lut, nearest_location
from cxrbench.anatomy.vocabulary import PATHOLOGIES, make_prompt
from cxrbench.datasets.dicom import Pixels, check_pixels, image_size, provenance, read_header
from cxrbench.datasets.images import dicom_source
from cxrbench.datasets.physionet import project_root, release
from cxrbench.datasets.tables import check_id, inside_root, parse_box, parse_number, read_table, unique_boxes, where
from cxrbench.errors import DataError, UnknownNameError
from cxrbench.types import Box, ImageSource, Sample

COLUMNS = ("image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max")
CORNER_COLUMNS = COLUMNS[3:]
LABELS = "image_labels_test.csv"
ClassRule = Literal["published", "local"]
CLASS_RULES: tuple[str, ...] = get_args(ClassRule)
VINDR_CLASSES = (
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
    "Lung cavity",
    "Lung cyst",
    "Lung Opacity",
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
    "Other disease",
    "Other diseases",
    "No finding",
)
# The published code's 8 pathologies, spelt as VinDr-CXR spells them, and the labels it renames to Pneumonia
VINDR_NAMES = {p: "Pleural effusion" if p == "Pleural Effusion" else p for p in PATHOLOGIES}
RENAMED_TO_PNEUMONIA = ("ILD", "Infiltration")
REFERENCE_SIZES = {
    "Pneumonia": 31,
    "Pneumothorax": 8,
    "Consolidation": 51,
    "Atelectasis": 60,
    "Cardiomegaly": 189,
    "Lung Opacity": 48,
    "Pleural Effusion": 56,
}
LOCAL_CLASSES = tuple(p for p in PATHOLOGIES if p in REFERENCE_SIZES)
_TARGET = {p.lower(): p for p in PATHOLOGIES}
_RENAMED = {name.lower() for name in RENAMED_TO_PNEUMONIA}
_KNOWN = {c.lower() for c in VINDR_CLASSES}
_Header = tuple[Path, int, int, dict[str, str]]


def find_annotations(root: Path) -> Path:
    for candidate in (root / "annotations" / "annotations_test.csv", root / "annotations_test.csv"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"VinDr-CXR annotations not found: expected {root / 'annotations' / 'annotations_test.csv'} "
        f"or {root / 'annotations_test.csv'} (VinDr-CXR 1.0.0 from PhysioNet)"
    )


def read_label_gates(path: Path) -> dict[str, bool | DataError]:
    """Per image of image_labels_test.csv: whether one of its rows has a non-zero value in one of the 8 pathology
    columns (the published code's filter), or the error of an unreadable value. Other columns are not read."""
    frame = read_table(path, ("image_id",), "VinDr-CXR image label file")
    by_name = {c.lower(): c for c in frame.columns}
    missing = [VINDR_NAMES[p] for p in PATHOLOGIES if VINDR_NAMES[p].lower() not in by_name]
    if missing:
        raise DataError(f"VinDr-CXR image label file {path} lacks the column(s) {', '.join(missing)}")
    columns = [by_name[VINDR_NAMES[p].lower()] for p in PATHOLOGIES]
    gates: dict[str, bool | DataError] = {}
    for row in frame.to_dict("records"):
        image_id, line = row["image_id"], row["_line"]
        if isinstance(gates.get(image_id), DataError):
            continue
        try:
            values = [parse_number(row[c], c, path, line) for c in columns]
            if None in values:
                raise DataError(f"{where(path, line)}: empty label in column {columns[values.index(None)]}")
        except DataError as exc:
            gates[image_id] = exc
            continue
        gates[image_id] = bool(gates.get(image_id)) or any(v != 0 for v in values)
    return gates


class VinDrDataset:
    """VinDr-CXR test pairs of the classes it shares with MS-CXR, with synthetic location prompts."""

    name = "vindr"

    def __init__(
        self,
        data_root: str | Path | None = None,
        lut: str | Path | None = None,
        classes: ClassRule = "published",
        pixels: Pixels = "dicom",
    ):
        if data_root is None:
            raise DataError("the vindr dataset needs --data-root DIR (the unpacked VinDr-CXR 1.0.0 release)")
        if classes not in CLASS_RULES:
            raise UnknownNameError(f"unknown class rule classes={classes!r}; choose one of {', '.join(CLASS_RULES)}")
        self.class_rule = classes
        # the published pair counts hold for the published rule only: the local rule has no reference
        self.reference_sizes = REFERENCE_SIZES if classes == "published" else {}
        self.pixels = check_pixels(pixels)
        self.classes = PATHOLOGIES if classes == "published" else LOCAL_CLASSES
        self.rules = {c: self._rule(c) for c in self.classes}
        if not Path(data_root).is_dir():
            raise DataError(f"VinDr-CXR data root {data_root} does not exist")
        self.root = project_root(Path(data_root), "vindr-cxr")
        self.lut_path = lut
        self.lut = load_lut(lut)
        self.annotations = find_annotations(self.root)
        self.labels = self.annotations.parent / LABELS
        if classes == "published" and not self.labels.is_file():
            raise DataError(
                f"VinDr-CXR image labels not found: expected {self.labels} (beside the annotations); the published "
                "class rule needs them for Pneumonia, or choose -O classes=local"
            )
        self._images: list[Path] = []
        self._samples = self._read()

    def files(self) -> list[Path]:
        """Every file the dataset reads: the annotations, the image labels (published rule), each pair's DICOM."""
        tables = [self.annotations, self.labels] if self.class_rule == "published" else [self.annotations]
        return [*tables, *self._images]

    def release(self) -> dict[str, str | None]:
        """The VinDr-CXR release read: PhysioNet project and version, annotation file name and sha256."""
        return release(self.annotations)

    def _rule(self, pathology: str) -> str:
        """Which rows make the class's pairs, for `cxrbench datasets describe`."""
        if self.class_rule == "published" and pathology == "Pneumonia":
            return f"{' + '.join(RENAMED_TO_PNEUMONIA)} boxes, image labelled with one of the 8"
        return f"{VINDR_NAMES[pathology]} boxes"

    def config(self) -> dict[str, object]:
        """The effective options, defaults included."""
        return {
            "split": "test",
            "classes": self.class_rule,
            "pixels": self.pixels,
            "lut_sha256": hashlib.sha256(self.lut.to_json().encode("utf-8")).hexdigest(),
        }

    def _class_of(self, name: str, image_id: str, gates: dict[str, bool | DataError]) -> str | DataError | None:
        """The pathology a row counts for, None for a row the class rule leaves out, or the gate's error."""
        key = name.lower()
        if key in _TARGET:
            return _TARGET[key] if _TARGET[key] in self.classes else None
        if key in _RENAMED and self.class_rule == "published":
            gate = gates.get(image_id, False)
            return gate if isinstance(gate, DataError) else "Pneumonia" if gate else None
        return None if key in _KNOWN else name  # an unknown class becomes an error pair

    def _read(self) -> list[Sample]:
        path = self.annotations
        frame = read_table(path, COLUMNS, "VinDr-CXR annotation file")
        gates = read_label_gates(self.labels) if self.class_rule == "published" else {}
        groups: dict[tuple[str, str], list[tuple[int, list[str], DataError | None]]] = {}
        for row in frame.to_dict("records"):
            image_id, name, cells = row["image_id"], row["class_name"].strip(), [row[c] for c in CORNER_COLUMNS]
            if name.lower() in _KNOWN and not any(c.strip() for c in cells):
                continue  # a row without a box ("No finding")
            pathology = self._class_of(name, image_id, gates)
            if pathology is None:
                continue  # a class the rule leaves out
            error = pathology if isinstance(pathology, DataError) else None
            key = (image_id, "Pneumonia" if error else str(pathology))
            groups.setdefault(key, []).append((row["_line"], cells, error))
        headers: dict[str, _Header | DataError] = {}
        samples = []
        for (image_id, pathology), rows in groups.items():
            pair_id = f"{image_id}:{pathology.lower().replace(' ', '_')}"
            first = rows[0][0]
            try:
                if pathology not in PATHOLOGIES:
                    raise DataError(
                        f"{where(path, first)}: unknown class {pathology!r}; VinDr-CXR classes are "
                        f"{', '.join(VINDR_CLASSES)}"
                    )
                for _, _, error in rows:
                    if error is not None:
                        raise error
                if image_id not in headers:
                    headers[image_id] = self._header(image_id, path, first)
                header = headers[image_id]
                if isinstance(header, DataError):
                    raise header
                image, height, width, record = header
                parsed = [
                    (line, parse_box(cells, CORNER_COLUMNS, path, line, height, width)) for line, cells, _ in rows
                ]
            except DataError as exc:
                samples.append(Sample.broken(pair_id, image_id, pathology, str(exc)))
                continue
            boxes = unique_boxes([(line, box) for line, box in parsed if box is not None], path, pair_id)
            source = dicom_source(image, record, self.pixels)
            samples.append(self._sample(pair_id, image_id, pathology, boxes, height, width, source))
        return samples

    def _header(self, image_id: str, path: Path, line: int) -> _Header | DataError:
        """The image's path, size and DICOM provenance, or the error that makes its pairs unusable."""
        try:
            check_id(image_id, "image_id", path, line)
            image = inside_root(self.root, f"test/{image_id}.dicom", path, line)
            self._images.append(image)
            if not image.is_file():
                raise DataError(f"{where(path, line)}: image {image} not found")
            header = read_header(image)
            return (image, *image_size(header, image), provenance(header, image, self.pixels))
        except DataError as exc:
            return exc

    def _sample(
        self, pair_id: str, image_id: str, pathology: str, boxes: list[Box], height: int, width: int, image: ImageSource
    ) -> Sample:
        locations = list(dict.fromkeys(nearest_location(b, height, width, self.lut) for b in boxes))
        return Sample(
            pair_id, image_id, pathology, make_prompt(locations, pathology), tuple(boxes), height, width, image
        )

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)
