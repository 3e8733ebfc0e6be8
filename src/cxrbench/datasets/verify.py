"""`cxrbench datasets verify`: every file a dataset reads, checked against the `SHA256SUMS.txt` PhysioNet publishes
at each project's version root (docs/datasets.md, "Verifying a download")."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cxrbench.datasets.physionet import SUMS
from cxrbench.errors import DataError
from cxrbench.hashing import sha256_file

STATES = ("ok", "mismatch", "missing", "extra", "unchecked")
_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")


@dataclass(frozen=True)
class FileCheck:
    """One file: `ok`, `mismatch` (sha256 differs), `missing` (not on disk), `extra` (on disk, not in its
    project's SHA256SUMS.txt) or `unchecked` (no SHA256SUMS.txt above it)."""

    path: Path
    state: str
    sums: Path | None


@lru_cache(maxsize=8)
def read_sums(path: Path) -> dict[str, str]:
    """`<sha256>  <relative path>` lines (sha256sum's format, as PhysioNet writes it) as {path: sha256}."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            match = _LINE.fullmatch(line.strip())
            if match is None:
                raise DataError(f"{path}, line {number} is not '<sha256>  <path>': {line.strip()[:80]!r}")
            sums[match["name"].removeprefix("./")] = match["digest"].lower()
    return sums


def sums_file(path: Path) -> Path | None:
    """The SHA256SUMS.txt of the nearest folder above `path` that has one (the project's version root)."""
    return next((folder / SUMS for folder in path.absolute().parents if (folder / SUMS).is_file()), None)


def check_file(path: Path) -> FileCheck:
    sums = sums_file(path)
    if sums is None:
        return FileCheck(path, "missing" if not path.is_file() else "unchecked", None)
    expected = read_sums(sums).get(path.absolute().relative_to(sums.parent).as_posix())
    if not path.is_file():
        return FileCheck(path, "missing", sums)
    if expected is None:
        return FileCheck(path, "extra", sums)
    return FileCheck(path, "ok" if sha256_file(path) == expected else "mismatch", sums)


def verify_files(files: Iterable[Path]) -> list[FileCheck]:
    """Each distinct file checked against its project's SHA256SUMS.txt, in the order given."""
    return [check_file(Path(p)) for p in dict.fromkeys(files)]


def counts(checks: Iterable[FileCheck]) -> dict[str, int]:
    found = Counter(c.state for c in checks)
    return {state: found[state] for state in STATES}
