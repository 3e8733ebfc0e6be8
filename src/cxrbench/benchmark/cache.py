"""Heatmap cache: one `.npy` per (method config, pair, prompt, image) and a lock for the run folder.

Entries are named `<key>-<checksum>.npy`: the key is the sha256 of everything that determines the heatmap
(cache schema, method name and config, pair id, prompt, image fingerprint); the checksum is the sha256 of
the file's bytes, so a truncated or corrupted entry is detected, dropped and recomputed. Writes go to a
temporary file in the same folder, flushed, fsynced and renamed (atomic on POSIX), so a killed run leaves
either a whole entry or an ignored temporary file. Values are stored as float32: float16 would break the
rank order of maps with a large offset (raw logits), which changes AUC and thresholds.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.benchmark.store import HEATMAPS, TMP_PREFIX, write_atomic
from cxrbench.errors import CxrbenchError, RunLockedError
from cxrbench.types import Sample

SCHEMA_VERSION = 1
SHARED = ".shared"


def shared_dir(out: str | os.PathLike[str], dataset: str) -> Path:
    """`<out>/<dataset>/heatmaps/.shared/`: work that methods keep for their other configurations on the dataset
    (a method's `share_work`, docs/methods.md), beside the methods' heatmap caches."""
    return Path(out) / dataset / HEATMAPS / SHARED


def clear_shared(folder: Path) -> None:
    """Delete the shared work in `folder`: everything in it, files and sub-folders."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def cache_key(
    method: str,
    config: dict[str, Any],
    pair_id: str,
    prompt: str,
    image_fingerprint: str,
    class_name: str | None = None,
) -> str:
    """sha256 of the canonical JSON of every input that determines a heatmap; `class_name` only for a method that
    reads it (`uses_class_names`), so that other methods' keys do not change."""
    payload = {
        "schema": SCHEMA_VERSION,
        "method": method,
        "config": config,
        "pair_id": pair_id,
        "prompt": prompt,
        "image": image_fingerprint,
    }
    if class_name is not None:
        payload["class"] = class_name
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sample_cache_key(method: str, config: dict[str, Any], sample: Sample, uses_class_names: bool = False) -> str:
    """`cache_key` of a pair: its id, prompt, image fingerprint (a DataError when the image cannot be read) and,
    for a method that reads it, its class."""
    class_name = sample.class_name if uses_class_names else None
    return cache_key(method, config, sample.pair_id, sample.prompt, sample.image.fingerprint(), class_name)


class HeatmapCache:
    """A folder of cached heatmaps, indexed once when opened."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, Path] = {}
        for path in self.folder.glob("*.npy"):
            if not path.is_file():
                raise CxrbenchError(f"heatmap cache entry {path} is not a file; move it away and rerun")
            key, _, _ = path.stem.partition("-")
            self._index[key] = path

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: str) -> np.ndarray | None:
        """The cached heatmap, or None when absent or corrupt (a corrupt entry is deleted)."""
        path = self._index.get(key)
        if path is None:
            return None
        try:
            data = path.read_bytes()
            checksum = path.stem.partition("-")[2]
            if hashlib.sha256(data).hexdigest()[:16] != checksum:
                raise ValueError("checksum mismatch")
            array = np.load(io.BytesIO(data), allow_pickle=False)
            if array.ndim != 2 or array.dtype != np.float32:
                raise ValueError(f"unexpected array {array.dtype} {array.shape}")
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            del self._index[key]
            return None
        return array

    def put(self, key: str, heatmap: np.ndarray) -> None:
        """Store a heatmap atomically (temporary file, fsync, rename)."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(heatmap, dtype=np.float32), allow_pickle=False)
        data = buffer.getvalue()
        path = self.folder / f"{key}-{hashlib.sha256(data).hexdigest()[:16]}.npy"
        write_atomic(path, data)
        old = self._index.get(key)
        if old is not None and old != path:
            old.unlink(missing_ok=True)
        self._index[key] = path

    def clear(self) -> None:
        """Remove every entry and leftover temporary file."""
        for path in [*self.folder.glob("*.npy"), *self.folder.glob(f"{TMP_PREFIX}*")]:
            if path.is_file():
                path.unlink()
        self._index.clear()


class RunLock:
    """An exclusive lock on a run folder (flock: released by the kernel even when the process is killed)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._handle: io.TextIOWrapper | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise RunLockedError(
                f"another cxrbench run (pid {owner}) is writing to {self.path.parent}; wait for it to finish "
                f"or use another --out folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
