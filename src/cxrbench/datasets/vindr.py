"""VinDr-CXR test set (SPEC 3): DICOM images and consensus boxes, with synthetic "{location} {pathology}"
prompts from the location table (SPEC 4.3).

Layout: `<data_root>/annotations/annotations_test.csv` (or `<data_root>/annotations_test.csv`) with columns
image_id, rad_id, class_name, x_min, y_min, x_max, y_max, and `<data_root>/test/<image_id>.dicom`.
One pair per (image, class) holding all that class's boxes; classes are mapped onto the 8 pathologies
(case-insensitive name match) and VinDr's other findings are left out. Each box's location is the LUT entry
nearest in squared 2-Wasserstein distance; several boxes give locations joined by " <and> " (each location
once, in box order).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cxrbench.anatomy.lut import load_lut, nearest_location
from cxrbench.anatomy.vocabulary import PATHOLOGIES, make_prompt
from cxrbench.datasets.dicom import image_size
from cxrbench.datasets.images import dicom_source
from cxrbench.datasets.tables import inside_root, parse_box, read_table, where
from cxrbench.errors import DataError
from cxrbench.types import Box, Sample

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
            line, name = row["_line"], row["class_name"].strip()
            if name.lower() not in _KNOWN:
                raise DataError(
                    f"{where(path, line)}: unknown class {name!r}; VinDr-CXR classes are {', '.join(VINDR_CLASSES)}"
                )
            if name.lower() in _TARGET:
                groups.setdefault((row["image_id"], _TARGET[name.lower()]), []).append(
                    (line, [row[c] for c in BOX_COLUMNS])
                )
        sizes: dict[str, tuple[int, int]] = {}
        samples = []
        for (image_id, pathology), rows in groups.items():
            image = inside_root(self.root, f"test/{image_id}.dicom", path, rows[0][0])
            if image_id not in sizes:
                if not image.is_file():
                    raise DataError(f"{where(path, rows[0][0])}: image {image} not found")
                sizes[image_id] = image_size(image)
            height, width = sizes[image_id]
            boxes = [parse_box(cells, BOX_COLUMNS, path, line, height, width) for line, cells in rows]
            boxes = [b for b in boxes if b is not None]
            if not boxes:
                continue
            samples.append(self._sample(image_id, pathology, boxes, height, width, image))
        return samples

    def _sample(self, image_id: str, pathology: str, boxes: list[Box], height: int, width: int, image: Path) -> Sample:
        locations = list(dict.fromkeys(nearest_location(b, height, width, self.lut) for b in boxes))
        return Sample(
            pair_id=f"{image_id}:{pathology.lower().replace(' ', '_')}",
            image_id=image_id,
            class_name=pathology,
            prompt=make_prompt(locations, pathology),
            boxes=tuple(boxes),
            height=height,
            width=width,
            image=dicom_source(image),
        )

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)
