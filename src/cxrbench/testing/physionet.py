"""PhysioNet's download layout for the test fixtures: `physionet.org/files/<project>/<version>/`, with the
`SHA256SUMS.txt` PhysioNet publishes at each version root (`<sha256>  <path>` for every file of the release)."""

from __future__ import annotations

import hashlib
from pathlib import Path

SUMS = "SHA256SUMS.txt"


def version_root(mirror: Path, project: str, version: str) -> Path:
    folder = mirror / "files" / project / version
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_sums(folder: Path) -> Path:
    """SHA256SUMS.txt listing every file under `folder` (hashlib, sorted paths), as PhysioNet publishes it."""
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}\n"
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != SUMS
    ]
    (folder / SUMS).write_text("".join(lines), encoding="utf-8")
    return folder / SUMS
