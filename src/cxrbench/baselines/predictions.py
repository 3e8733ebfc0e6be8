"""Scoring predictions made elsewhere (MAIRA-2, MedRPG, your own model) with the same protocol.

`boxes:<file.csv>`: rows pair_id,x_min,y_min,x_max,y_max in original pixels, several rows per pair; a pair
with no row has no prediction (IoU 0, counted as a miss). Scored with mIoU only (SPEC 2.5).
`heatmaps:<dir or file.npz>`: one `<pair_id>.npy` per pair (":" in a pair id may be written "_"), or one
`.npz` with a key per pair; a map may cover the centred square (any size) or be full-frame H x W. Every metric.
`cxrbench export-pairs` writes the pair ids, image paths and prompts to run the model on.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from cxrbench.datasets.tables import parse_box, read_table
from cxrbench.errors import DataError, MethodOutputError
from cxrbench.types import Box, Sample

BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")


def heatmap_file_name(pair_id: str) -> str:
    """The file name `heatmaps:` looks for first (pair ids may hold ':', which some file systems refuse)."""
    return pair_id.replace(":", "_").replace("/", "_") + ".npy"


def _run_name(kind: str, path: Path) -> str:
    return f"{kind}-{path.stem or path.name}"


class BoxPredictions:
    """Boxes from a CSV: pair_id,x_min,y_min,x_max,y_max."""

    output = "boxes"
    cacheable = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = _run_name("boxes", self.path)
        frame = read_table(self.path, ("pair_id", *BOX_COLUMNS), "box prediction file")
        self.rows: dict[str, list[tuple[int, list[str]]]] = defaultdict(list)
        for row in frame.to_dict("records"):
            self.rows[row["pair_id"]].append((row["_line"], [row[c] for c in BOX_COLUMNS]))

    def config(self) -> dict[str, str]:
        from cxrbench.datasets.images import file_fingerprint

        return {"file": str(self.path), "sha256": file_fingerprint(str(self.path))}

    def boxes_for_sample(self, sample: Sample) -> list[Box]:
        boxes = []
        for line, cells in self.rows.get(sample.pair_id, []):
            box = parse_box(cells, BOX_COLUMNS, self.path, line, sample.height, sample.width)
            if box is not None:
                boxes.append(box)
        return boxes

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        raise TypeError("box predictions are read per pair: boxes_for_sample(sample)")


class HeatmapFiles:
    """Heatmaps from `<pair_id>.npy` files in a folder, or from one `.npz` with a key per pair."""

    frame = "auto"
    cacheable = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = _run_name("heatmaps", self.path)
        if not self.path.exists():
            raise DataError(f"heatmap predictions not found: {self.path}")
        self.archive = None
        if self.path.is_file():
            try:
                self.archive = np.load(self.path, allow_pickle=False)
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise DataError(f"cannot read heatmap archive {self.path}: {exc}") from exc

    def config(self) -> dict[str, str]:
        return {"path": str(self.path.resolve())}

    def heatmap_for_sample(self, sample: Sample) -> np.ndarray:
        if self.archive is not None:
            keys = [k for k in (sample.pair_id, heatmap_file_name(sample.pair_id)[:-4]) if k in self.archive.files]
            if not keys:
                raise MethodOutputError(f"{self.path} has no key {sample.pair_id!r}")
            where_, array = f"{self.path}[{keys[0]}]", self._read(lambda: self.archive[keys[0]], self.path)
        else:
            files = [self.path / f"{sample.pair_id}.npy", self.path / heatmap_file_name(sample.pair_id)]
            found = next((f for f in files if f.is_file()), None)
            if found is None:
                raise MethodOutputError(f"no heatmap file for pair {sample.pair_id}: expected {files[-1]}")
            where_, array = str(found), self._read(lambda: np.load(found, allow_pickle=False), found)
        if array.ndim != 2:
            raise MethodOutputError(f"{where_}: a heatmap must be 2-D, this one has shape {array.shape}")
        if array.dtype.kind not in "biuf":
            raise MethodOutputError(f"{where_}: dtype {array.dtype} is not a real number type")
        side = min(sample.height, sample.width)
        if array.shape[0] != array.shape[1] and array.shape != (sample.height, sample.width):
            raise MethodOutputError(
                f"{where_}: shape {array.shape} is neither square (the centred {side} x {side} "
                f"crop at any resolution) nor the image's {sample.height} x {sample.width}"
            )
        if np.isnan(array.astype(np.float32)).all():
            raise MethodOutputError(f"{where_}: the heatmap is NaN everywhere")
        return array.astype(np.float32)

    @staticmethod
    def _read(load, path: Path) -> np.ndarray:
        try:
            return np.asarray(load())
        except (OSError, ValueError, EOFError) as exc:
            raise MethodOutputError(f"cannot read {path}: {exc}") from exc

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        raise TypeError("heatmap files are read per pair: heatmap_for_sample(sample)")


def export_pairs(samples: list[Sample]) -> list[dict[str, object]]:
    """What a user needs to run a model elsewhere: one row per usable pair."""
    return [
        {
            "pair_id": s.pair_id,
            "image_id": s.image_id,
            "class_name": s.class_name,
            "prompt": s.prompt,
            "image_path": s.image.description,
            "height": s.height,
            "width": s.width,
            "heatmap_file": heatmap_file_name(s.pair_id),
        }
        for s in samples
        if s.error is None
    ]
