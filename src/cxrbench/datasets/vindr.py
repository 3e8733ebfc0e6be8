"""VinDr-CXR test set (SPEC 3): DICOM images and consensus boxes, with synthetic "{location} {pathology}"
prompts from the location table (SPEC 4.3).

Layout: `<data_root>/annotations/annotations_test.csv` (or `<data_root>/annotations_test.csv`) with columns
image_id, rad_id, class_name, x_min, y_min, x_max, y_max, and `<data_root>/test/<image_id>.dicom`.
One pair per (image, class) holding all that class's boxes; classes are mapped onto the 8 pathologies
(case-insensitive name match) and VinDr's other findings are left out. A pair whose rows or image cannot be
used (bad box, unknown class, missing or unreadable DICOM) becomes an error pair that the runner reports
(--on-error fail stops on it, skip logs it), so one bad file never hides the rest. Each box's location is the LUT entry
nearest in squared 2-Wasserstein distance; several boxes give locations joined by " <and> " (each location
once, in box order).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cxrbench.anatomy.lut import load_lut, nearest_location
from cxrbench.anatomy.vocabulary import PATHOLOGIES, make_prompt
from cxrbench.datasets.dicom import image_size, provenance, read_header
from cxrbench.datasets.images import dicom_source
from cxrbench.datasets.tables import inside_root, parse_box, read_table, where
from cxrbench.errors import DataError
from cxrbench.types import Box, ImageSource, Sample

COLUMNS = ("image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max")
BOX_COLUMNS = COLUMNS[3:]
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
REFERENCE_SIZES = {
    "Pneumonia": 31,
    "Pneumothorax": 8,
    "Consolidation": 51,
    "Atelectasis": 60,
    "Cardiomegaly": 189,
    "Lung Opacity": 48,
    "Pleural Effusion": 56,
}
_TARGET = {p.lower(): p for p in PATHOLOGIES}
_KNOWN = {c.lower() for c in VINDR_CLASSES}


def find_annotations(root: Path) -> Path:
    for candidate in (root / "annotations" / "annotations_test.csv", root / "annotations_test.csv"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"VinDr-CXR annotations not found: expected {root / 'annotations' / 'annotations_test.csv'} "
        f"or {root / 'annotations_test.csv'} (VinDr-CXR 1.0.0 from PhysioNet)"
    )


class VinDrDataset:
    """VinDr-CXR test pairs of the 7 classes it shares with MS-CXR, with synthetic location prompts."""

    name = "vindr"
    classes = tuple(p for p in PATHOLOGIES if p in REFERENCE_SIZES)
    reference_sizes = REFERENCE_SIZES

    def __init__(self, data_root: str | Path | None = None, lut: str | Path | None = None):
        if data_root is None:
            raise DataError("the vindr dataset needs --data-root DIR (the unpacked VinDr-CXR 1.0.0 release)")
        self.root = Path(data_root)
        if not self.root.is_dir():
            raise DataError(f"VinDr-CXR data root {self.root} does not exist")
        self.lut = load_lut(lut)
        self.annotations = find_annotations(self.root)
        self._samples = self._read()

    def _read(self) -> list[Sample]:
        path = self.annotations
        frame = read_table(path, COLUMNS, "VinDr-CXR annotation file")
        groups: dict[tuple[str, str], list[tuple[int, list[str]]]] = {}
        for row in frame.to_dict("records"):
            name = row["class_name"].strip()
            if name.lower() in _TARGET or name.lower() not in _KNOWN:  # unknown classes become error pairs
                key = (row["image_id"], _TARGET.get(name.lower(), name))
                groups.setdefault(key, []).append((row["_line"], [row[c] for c in BOX_COLUMNS]))
        headers: dict[str, tuple[Path, int, int, dict[str, str]] | DataError] = {}
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
                if image_id not in headers:
                    headers[image_id] = self._header(image_id, path, first)
                header = headers[image_id]
                if isinstance(header, DataError):
                    raise header
                image, height, width, record = header
                boxes = [parse_box(cells, BOX_COLUMNS, path, line, height, width) for line, cells in rows]
            except DataError as exc:
                samples.append(Sample.broken(pair_id, image_id, pathology, str(exc)))
                continue
            boxes = [b for b in boxes if b is not None]
            if boxes:
                samples.append(
                    self._sample(pair_id, image_id, pathology, boxes, height, width, dicom_source(image, record))
                )
        return samples

    def _header(self, image_id: str, path: Path, line: int) -> tuple[Path, int, int, dict[str, str]] | DataError:
        """The image's path, size and DICOM provenance, or the error that makes its pairs unusable."""
        try:
            image = inside_root(self.root, f"test/{image_id}.dicom", path, line)
            if not image.is_file():
                raise DataError(f"{where(path, line)}: image {image} not found")
            header = read_header(image)
            return (image, *image_size(header, image), provenance(header))
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
