"""Reading dataset tables safely: identifiers stay strings and cannot name a path, errors name the file and line,
boxes are validated and duplicates dropped, paths from a table must stay inside their data root
(docs/datasets.md, "Reading the tables")."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cxrbench.errors import DataError
from cxrbench.types import Box


def read_table(path: Path, required: Sequence[str], what: str) -> pd.DataFrame:
    """A CSV as strings (no NA guessing: '00123', 'NA', 'None' stay as written), with its required columns.

    The frame gets a `_line` column: the 1-based line of each row in the file (header = line 1).
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse {what} {path}: {exc}") from exc
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{what} {path} lacks the column(s) {', '.join(missing)}; it has: {', '.join(frame.columns)}")
    frame["_line"] = range(2, len(frame) + 2)
    return frame


def where(path: Path, line: int) -> str:
    return f"{path}, line {line}"


def parse_number(text: str, column: str, path: Path, line: int) -> float | None:
    """A float from a table cell; None for an empty cell."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where(path, line)}: column {column} holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where(path, line)}: column {column} holds {text!r}, not a finite number")
    return value


def parse_int(text: str, column: str, path: Path, line: int) -> int:
    value = parse_number(text, column, path, line)
    if value is None or value != int(value) or value <= 0:
        raise DataError(f"{where(path, line)}: column {column} must be a positive whole number, got {text!r}")
    return int(value)


def parse_box(
    cells: Sequence[str],
    columns: Sequence[str],
    path: Path,
    line: int,
    height: int,
    width: int,
    xywh: bool = False,
    clip: bool = True,
) -> Box | None:
    """A box from four cells: None when all four are empty (a negative case); an error when only some are, or
    when its size is not positive. With `clip`, a box that overhangs the image is clipped with a warning and
    one wholly outside is an error."""
    values = [parse_number(c, col, path, line) for c, col in zip(cells, columns, strict=True)]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        empty = [col for v, col in zip(values, columns, strict=True) if v is None]
        raise DataError(f"{where(path, line)}: box is partly missing ({', '.join(empty)} empty)")
    a, b, c, d = values  # type: ignore[misc]
    x0, y0, x1, y1 = (a, b, a + c, b + d) if xywh else (a, b, c, d)
    if x1 <= x0 or y1 <= y0:
        raise DataError(f"{where(path, line)}: box ({', '.join(columns)}) = {tuple(values)} has no positive size")
    if not clip:
        return Box(x0, y0, x1, y1)
    clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise DataError(f"{where(path, line)}: box {tuple(values)} lies outside the {width} x {height} image")
    if clipped != (x0, y0, x1, y1):
        warnings.warn(
            f"{where(path, line)}: box {tuple(values)} overhangs the {width} x {height} image; clipped", stacklevel=2
        )
    return Box(*clipped)


def check_id(value: str, column: str, path: Path, line: int) -> str:
    """An identifier that names files (`<image_id>.dicom`, `<pair_id>.npy`): refused when empty or holding a path
    separator, '..' or a control character, so it can never lead out of a folder."""
    if not value.strip() or "/" in value or "\\" in value or ".." in value or any(ord(c) < 32 for c in value):
        raise DataError(
            f"{where(path, line)}: {column} {value!r} is not a usable identifier "
            "(empty, or holds '/', '\\', '..' or a control character)"
        )
    return value


def unique_boxes(boxes: Sequence[tuple[int, Box]], path: Path, pair_id: str) -> list[Box]:
    """The pair's boxes in row order, each once: a row repeating an earlier row's box is dropped with a warning
    (it would count twice in the CNR average)."""
    first: dict[Box, int] = {}
    for line, box in boxes:
        if box in first:
            warnings.warn(
                f"{where(path, line)}: pair {pair_id} has this box already (line {first[box]}); duplicate dropped",
                stacklevel=2,
            )
        else:
            first[box] = line
    return list(first)


def inside_root(root: Path, relative: str, path: Path, line: int) -> Path:
    """`root / relative`, refusing absolute paths, '..' and symlinks that lead out of `root`."""
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts or not relative.strip():
        raise DataError(f"{where(path, line)}: image path {relative!r} must be relative and stay inside {root}")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise DataError(f"{where(path, line)}: image path {relative!r} leaves the data root {root} through a symlink")
    return root / candidate
