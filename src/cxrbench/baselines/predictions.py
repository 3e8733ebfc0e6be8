"""Scoring predictions made elsewhere (MAIRA-2, MedRPG, your own model) with the same protocol.

`boxes:<file.csv>`: rows pair_id,x_min,y_min,x_max,y_max in original pixels, several rows per pair; the id is
the pair_id or the heatmap_file (with or without .npy) that `cxrbench export-pairs` writes, and an id that
names no pair of the dataset is an error. A pair with no row has no prediction (IoU 0, counted as a miss).
Scored with mIoU only.
`heatmaps:<dir or file.npz>`: one `<pair_id>.npy` per pair (":" and "/" in a pair id may be written "_"; a
file that resolves outside the folder is never read), or one `.npz` with a key per pair; a map may cover the
centred square (any size) or be full-frame H x W. Every metric.
`cxrbench export-pairs` writes the pair ids, image paths and prompts to run the model on.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cxrbench.datasets.tables import parse_box, read_table, where
from cxrbench.errors import DataError, MethodOutputError
from cxrbench.hashing import sha256_file
from cxrbench.types import Box, Sample

PREDICTION_COLUMNS = ("x_min", "y_min", "x_max", "y_max")


def heatmap_file_name(pair_id: str) -> str:
    """The file name `heatmaps:` looks for first (pair ids may hold ':', which some file systems refuse)."""
    return pair_id.replace(":", "_").replace("/", "_") + ".npy"


def _run_name(kind: str, path: Path) -> str:
    """`<kind>-<file or folder name>-<hash of the resolved path>`: two sources with one name never share a run."""
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:8]
    return f"{kind}-{path.stem or path.name}-{digest}"


class BoxPredictions:
    """Boxes from a CSV: pair_id,x_min,y_min,x_max,y_max; an id is a pair id or its `heatmap_file` spelling."""

    cacheable = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = _run_name("boxes", self.path)
        frame = read_table(self.path, ("pair_id", *PREDICTION_COLUMNS), "box prediction file")
        self.rows: dict[str, list[tuple[int, list[str]]]] = defaultdict(list)  # by the file's id, in file order
        for row in frame.to_dict("records"):
            self.rows[row["pair_id"]].append((row["_line"], [row[c] for c in PREDICTION_COLUMNS]))
        self.pair_ids: frozenset[str] = frozenset()  # the dataset's, once `check_pairs` has seen them

    def config(self) -> dict[str, str]:
        """The file's content (its path is provenance, not identity: docs/results.md)."""
        return {"sha256": sha256_file(self.path)}

    def _spellings(self, pair_id: str) -> list[str]:
        """The ids `export-pairs` writes for a pair (pair_id; heatmap_file with or without .npy), less those that
        are another pair's id."""
        file = heatmap_file_name(pair_id)
        return [s for s in dict.fromkeys((pair_id, file, file[:-4])) if s == pair_id or s not in self.pair_ids]

    def check_pairs(self, pair_ids: Iterable[str], on_error: str = "fail") -> str | None:
        """Match the file's ids to `pair_ids` (every pair of the dataset, not only the first --limit ones).

        An id that names no pair is an error listing a few (on_error "fail") or a one-line note with their count
        (returned, "skip"); None when every id names a pair. An id that could mean two pairs is an error.
        """
        self.pair_ids = frozenset(pair_ids)
        owner: dict[str, str] = {}
        for pair_id in sorted(self.pair_ids):
            for spelling in self._spellings(pair_id):
                if spelling in self.rows and owner.setdefault(spelling, pair_id) != pair_id:
                    raise DataError(
                        f"{where(self.path, self.rows[spelling][0][0])}: id {spelling!r} could mean pair "
                        f"{owner[spelling]} or {pair_id}; write the pair_id"
                    )
        unmatched = [i for i in self.rows if i not in owner]
        if not unmatched:
            return None
        count = f"{len(unmatched)} of the {len(self.rows)} ids in {self.path} name no pair of the dataset"
        if on_error == "skip":
            return f"{count}; their rows are ignored"
        shown = ", ".join(f"{i!r} (line {self.rows[i][0][0]})" for i in unmatched[:5])
        raise DataError(
            f"{count}: {shown}{', ...' if len(unmatched) > 5 else ''}; write the pair_id or heatmap_file column of "
            "`cxrbench export-pairs` (--on-error skip ignores them)"
        )

    def boxes_for_sample(self, sample: Sample) -> list[Box]:
        boxes = []
        for spelling in self._spellings(sample.pair_id):
            for line, cells in self.rows.get(spelling, []):
                box = parse_box(cells, PREDICTION_COLUMNS, self.path, line, sample.height, sample.width)
                if box is not None:
                    boxes.append(box)
        return boxes


class HeatmapFiles:
    """Heatmaps from `<pair_id>.npy` files in a folder, or from one `.npz` with a key per pair."""

    frame = "auto"
    cacheable = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = _run_name("heatmaps", self.path)
        if not self.path.exists():
            raise DataError(f"heatmap predictions not found: {self.path}")
        self.root = self.path.resolve()
        self.pair_ids: frozenset[str] = frozenset()
        self.archive = None
        if self.path.is_file():
            try:
                self.archive = np.load(self.path, allow_pickle=False)
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise DataError(f"cannot read heatmap archive {self.path}: {_reason(exc)}") from exc

    def config(self) -> dict[str, str]:
        """The content of the archive, or of every `.npy` in the folder (names and bytes), not its path."""
        if self.archive is not None:
            return {"sha256": sha256_file(self.path)}
        digest = hashlib.sha256()
        for file in sorted(self.path.glob("*.npy")):
            digest.update(f"{file.name}\0{sha256_file(file)}\n".encode())
        return {"sha256": digest.hexdigest()}

    def check_pairs(self, pair_ids: Iterable[str], on_error: str = "fail") -> str | None:
        """Remember the dataset's pair ids, so that a pair never reads another pair's own file (the export
        spelling of "a:b" is "a_b.npy", the file of pair "a_b")."""
        self.pair_ids = frozenset(pair_ids)
        return None

    def heatmap_for_sample(self, sample: Sample) -> np.ndarray:
        if self.archive is not None:
            keys = [k for k in self._names(sample.pair_id, "") if k in self.archive.files]
            if not keys:
                raise MethodOutputError(f"{self.path} has no key {sample.pair_id!r}")
            where_, array = f"{self.path}[{keys[0]}]", self._read(lambda: self.archive[keys[0]], self.path)
        else:
            found = self._file_for(sample.pair_id)
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
        if 0 in array.shape:
            raise MethodOutputError(f"{where_}: the heatmap is empty (shape {array.shape})")
        if np.isnan(array.astype(np.float32)).all():
            raise MethodOutputError(f"{where_}: the heatmap is NaN everywhere")
        return array

    def _file_for(self, pair_id: str) -> Path:
        """The pair's `.npy` file: `<pair_id>.npy` or the `heatmap_file` spelling, each resolved (symlinks, `..`,
        absolute ids) and used only when it lies inside the folder."""
        outside = []
        for name in self._names(pair_id, ".npy"):
            try:
                resolved = (self.path / name).resolve()
            except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte in the id
                outside.append(self.path / name)
                continue
            if not resolved.is_relative_to(self.root):
                outside.append(self.path / name)
            elif resolved.is_file():
                return self.path / name
        if outside:
            raise MethodOutputError(
                f"pair {pair_id}: {outside[0]} lies outside {self.path} (a '..' or absolute pair id, or a symlink "
                "out of the folder) or cannot be resolved; refused"
            )
        raise MethodOutputError(
            f"no heatmap file for pair {pair_id}: expected {self.path / heatmap_file_name(pair_id)}"
        )

    def _names(self, pair_id: str, suffix: str) -> list[str]:
        """The pair's own name, then the `heatmap_file` spelling unless that is another pair's own name."""
        spelling = heatmap_file_name(pair_id)[:-4]
        names = [pair_id] + ([spelling] if spelling != pair_id and spelling not in self.pair_ids else [])
        return [n + suffix for n in names]

    @staticmethod
    def _read(load, path: Path) -> np.ndarray:
        try:
            return np.asarray(load())
        except (OSError, ValueError, EOFError) as exc:
            raise MethodOutputError(f"cannot read {path}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    """numpy's message, except its advice to load pickles: cxrbench never unpickles prediction files."""
    if "allow_pickle" in str(exc):
        return "it holds Python objects (a pickle), which cxrbench never loads; save plain numeric arrays"
    return str(exc)


def export_pairs(samples: list[Sample]) -> list[dict[str, object]]:
    """What a user needs to run a model elsewhere: one row per usable pair; two pairs whose `heatmap_file`
    would be the same file are an error."""
    owner: dict[str, str] = {}
    for s in samples:
        first = owner.setdefault(heatmap_file_name(s.pair_id), s.pair_id)
        if first != s.pair_id:
            raise DataError(
                f"pairs {first!r} and {s.pair_id!r} would share the heatmap file {heatmap_file_name(s.pair_id)}; "
                f"their ids differ only in characters that file names cannot hold"
            )
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
