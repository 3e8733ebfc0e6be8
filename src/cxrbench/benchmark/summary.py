"""The typed record of one run: what was run (`RunIdentity`) and what it scored (`RunSummary`).

`summary.json` is written and read only through this module; `schema_version` says which layout a file has,
and a file of another layout is refused with a message, never half-read (docs/results.md).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.errors import CxrbenchError

SCHEMA_VERSION = 2
# A summary is a few tens of kB; anything much larger is not one (and is not read into memory).
MAX_BYTES = 16 * 1024 * 1024


class SummaryError(CxrbenchError):
    """A summary.json that cannot be used: unreadable, malformed or of another schema version."""


def json_values(config: Any, what: str) -> dict[str, Any]:
    """`config` as JSON values (paths become text); anything else is an error naming the key, before any work."""

    def default(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(type(value).__name__)

    if not isinstance(config, dict):
        raise CxrbenchError(f"{what} must be a dict of JSON values, not {type(config).__name__}")
    for key, value in config.items():
        try:
            json.dumps(value, default=default, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CxrbenchError(f"{what}: key {key!r} is not a JSON value ({exc}); return text or numbers") from exc
    return json.loads(json.dumps(config, default=default))


def method_config(method: Any) -> dict[str, Any]:
    """The method's class and `config()`: part of the cache key and the run identity (docs/results.md)."""
    config = json_values(method.config() if hasattr(method, "config") else {}, f"method {method.name!r} config()")
    return {"class": f"{type(method).__module__}.{type(method).__qualname__}", **config}


@dataclass(frozen=True)
class RunIdentity:
    """Everything that decides a run's per-pair scores. Two runs of equal identity are interchangeable.

    The bootstrap seed and resample count are not part of it: they change the intervals, not the scores.
    """

    method: str
    method_config: dict[str, Any]
    dataset: str
    dataset_config: dict[str, Any]
    limit: int | None
    protocol: str
    scorer_version: int
    manifest_sha256: str

    def differences(self, other: RunIdentity) -> list[str]:
        """Names of the fields that differ (`method_config.KEY` for config entries), in field order."""
        out: list[str] = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict) and isinstance(theirs, dict):
                keys = sorted(k for k in {*mine, *theirs} if _canonical(mine.get(k)) != _canonical(theirs.get(k)))
                out.extend(f"{f.name}.{k}" for k in keys)
            elif _canonical(mine) != _canonical(theirs):
                out.append(f.name)
        return out


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, except that a bool is not an int here."""
    return isinstance(value, kind) and not (isinstance(value, bool) and kind is int)


def _valid_row(row: Any) -> bool:
    """A class row: {"n": int, metric: {"mean", "low", "high": number or None, "n": int}, ...}."""
    if not isinstance(row, dict) or not _is(row.get("n"), int):
        return False
    for key, cell in row.items():
        if key in ("n", "classes", "misses"):
            continue
        if not isinstance(cell, dict) or not _is(cell.get("n"), int):
            return False
        if any(not (cell.get(k) is None or _is(cell.get(k), (int, float))) for k in ("mean", "low", "high")):
            return False
        if any(k not in cell for k in ("mean", "low", "high")):
            return False
    return True


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class RunSummary:
    """One run's results: per-class cells {"n", metric: {"mean", "low", "high", "n"}}, counts and provenance.

    `name` is the run's folder and its column in tables: the method's name, or the `--name` label. `notes` are
    things the run noticed and went on with (e.g. prediction ids that named no pair, with --on-error skip).
    `path` is where the summary was read from (not stored).
    """

    name: str
    identity: RunIdentity
    classes: dict[str, dict[str, Any]]
    n_pairs: int
    n_scored: int
    n_errors: int
    n_cnr_undefined_pairs: int
    notes: list[str]
    settings: dict[str, Any]
    versions: dict[str, str]
    torch: dict[str, Any] | None
    git_commit: str | None
    timings: dict[str, Any]
    schema_version: int = SCHEMA_VERSION
    path: Path | None = field(default=None, compare=False)

    @property
    def dataset(self) -> str:
        return self.identity.dataset

    @property
    def method(self) -> str:
        return self.identity.method

    @property
    def protocol(self) -> str:
        return self.identity.protocol

    @property
    def output(self) -> str:
        """ "heatmap" or "boxes" (box-only methods)."""
        return str(self.settings.get("output", "heatmap"))

    def to_json(self) -> str:
        record = asdict(self)
        del record["path"]
        return json.dumps({"schema_version": record.pop("schema_version"), **record}, indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> RunSummary:
        where = str(path) if path else "run summary"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SummaryError(f"{where} is not valid JSON ({exc}); rerun the run with --overwrite") from exc
        if not isinstance(record, dict):
            raise SummaryError(f"{where} holds a JSON {type(record).__name__}, not a run summary object")
        version = record.get("schema_version")
        if version != SCHEMA_VERSION:
            found = "no schema_version (cxrbench 0.1)" if version is None else f"schema_version {version!r}"
            raise SummaryError(
                f"{where} has {found}; this cxrbench reads schema_version {SCHEMA_VERSION}: rerun the run with "
                f"--overwrite (cached heatmaps are reused) or read it with the cxrbench version that wrote it"
            )
        try:
            identity = RunIdentity(**record["identity"])
            values = {f.name: record[f.name] for f in fields(cls) if f.name not in ("identity", "path")}
        except (KeyError, TypeError) as exc:
            raise SummaryError(
                f"{where} is missing or has malformed field {exc}; rerun the run with --overwrite"
            ) from exc
        summary = cls(**{**values, "identity": identity, "path": path})
        summary._check(where)
        return summary

    def _check(self, where: str) -> None:
        expected = {
            "name": str,
            "classes": dict,
            "n_pairs": int,
            "n_scored": int,
            "n_errors": int,
            "n_cnr_undefined_pairs": int,
            "notes": list,
            "settings": dict,
            "versions": dict,
            "timings": dict,
        }
        identity = {
            "method": str,
            "method_config": dict,
            "dataset": str,
            "dataset_config": dict,
            "limit": (int, type(None)),
            "protocol": str,
            "scorer_version": int,
            "manifest_sha256": str,
        }
        wrong = [k for k, kind in expected.items() if not _is(getattr(self, k), kind)]
        wrong += [f"identity.{k}" for k, kind in identity.items() if not _is(getattr(self.identity, k), kind)]
        if isinstance(self.classes, dict):
            wrong += [f"classes.{c}" for c, row in self.classes.items() if not _valid_row(row)]
        if wrong:
            raise SummaryError(f"{where} has malformed field(s) {', '.join(wrong)}; rerun the run with --overwrite")

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        """Read and check a summary.json; a file that is not a regular file (a device, a FIFO, a folder) or is
        larger than MAX_BYTES is refused without reading it."""
        data = _read_regular(Path(path), MAX_BYTES)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SummaryError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        return cls.from_json(text, Path(path))


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. Opened non-blocking (a FIFO does not wait for a
    writer) and checked on the open descriptor, so what is checked is what is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SummaryError(f"cannot read run summary {path}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SummaryError(f"run summary {path} is not a regular file; move it away")
        if info.st_size > limit:
            raise SummaryError(
                f"run summary {path} is {info.st_size} bytes, more than a summary's {limit}; move it away"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise SummaryError(f"cannot read run summary {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while being read
        raise SummaryError(f"run summary {path} is more than a summary's {limit} bytes; move it away")
    return data
