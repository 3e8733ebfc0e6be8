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
PHYSIONET_FILES = "https://physionet.org/files"
_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")
_VERSION = re.compile(r"\d+(?:\.\d+)*")


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


def published_sums(path: Path) -> tuple[Path, str] | None:
    """For a file in a PhysioNet download (`.../files/<project>/<version>/...`): where the project's
    SHA256SUMS.txt belongs (its version root) and where PhysioNet publishes it; None for a tree laid out by hand."""
    parts = path.absolute().parts
    for i in range(len(parts) - 4, -1, -1):
        if parts[i] == "files" and _VERSION.fullmatch(parts[i + 2]):
            return Path(*parts[: i + 3]) / SUMS, f"{PHYSIONET_FILES}/{parts[i + 1]}/{parts[i + 2]}/{SUMS}"
    return None


def unchecked_error(name: str, checks: Iterable[FileCheck]) -> DataError:
    """The error for files no SHA256SUMS.txt lies above: which file is missing, where, and where PhysioNet
    publishes it (docs/datasets.md, "Verifying a download")."""
    unchecked = [c.path for c in checks if c.state == "unchecked"]
    wanted = dict.fromkeys(published_sums(path) for path in unchecked)
    fixes = [f"download {url} to {local}" for local, url in (w for w in wanted if w is not None)]
    if None in wanted:
        fixes.append(
            f"files laid out by hand need their project downloaded as PhysioNet lays it out, with the {SUMS} it "
            f"publishes at each version root ({PHYSIONET_FILES}/<project>/<version>/{SUMS})"
        )
    return DataError(
        f"{name}: {len(unchecked)} file(s) have no {SUMS} in any folder above them, so nothing verifies them "
        f"(e.g. {unchecked[0]}); {'; '.join(fixes)}"
    )
