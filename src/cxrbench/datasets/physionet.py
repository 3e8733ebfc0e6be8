"""PhysioNet download layouts (docs/datasets.md, "Where the downloads lie"): `wget -r` leaves each project at
`physionet.org/files/<project>/<version>/`, with a `SHA256SUMS.txt` at that version root."""

from __future__ import annotations

import re
from pathlib import Path

from cxrbench.hashing import sha256_file

SUMS = "SHA256SUMS.txt"
_VERSION = re.compile(r"\d+(?:\.\d+)*")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split("."))


def project_root(folder: Path, project: str) -> Path:
    """The newest `<project>/<version>/` when `folder` is a PhysioNet download above it (`physionet.org/`, its
    `files/`, or `files/<project>/`), else `folder` itself (a version root, or the files laid out by hand)."""
    for base in (folder / "files" / project, folder / project, folder):
        versions = [p for p in base.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)] if base.is_dir() else []
        if versions:
            return max(versions, key=lambda p: _version_key(p.name))
    return folder


def release(annotations: Path) -> dict[str, str | None]:
    """The release an annotation file comes from: PhysioNet project and version where its path shows them
    (`.../files/<project>/<version>/...`), the file's name and its sha256."""
    parts = annotations.resolve().parts
    at = next((i for i in range(len(parts) - 2, 0, -1) if _VERSION.fullmatch(parts[i])), None)
    return {
        "project": parts[at - 1] if at else None,
        "version": parts[at] if at else None,
        "annotations": annotations.name,
        "annotations_sha256": sha256_file(annotations),
    }
