"""Content hashes: of files (weights, images, prediction files; remembered per process) and of in-memory arrays."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=4096)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, remembered while its size and modification time stay the same."""
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def array_digest(array: np.ndarray) -> str:
    """A key for an array's contents (which pairs of a batch share an image)."""
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()
