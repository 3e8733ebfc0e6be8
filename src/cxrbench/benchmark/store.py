"""Run folders `<out>/<dataset>/<name>/` hold a run's result set (scores.csv, images.csv, errors.csv,
summary.json); the heatmap cache of each method lies beside them in `<out>/<dataset>/heatmaps/<method>/`, so
runs of one method under other names or protocols reuse its heatmaps (the cache key holds the method config).

The four result files are replaced as one set (docs/results.md, "Result sets"): the new set is written in
full to `.staging/`, which is then renamed to `.commit/` (the commit point, one atomic rename), and its files
are moved into the run folder. A crash before the rename leaves the previous set untouched (the staging folder
is dropped by the next run); a crash after it is rolled forward by the next run, and readers (`find_runs`,
`current_file`) read through `.commit/` meanwhile. So a run folder never holds a mix of two runs' files.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from cxrbench.benchmark.summary import RunSummary, SummaryError
from cxrbench.errors import CxrbenchError

SCORES = "scores.csv"
SUMMARY = "summary.json"
ERRORS = "errors.csv"
IMAGES = "images.csv"
RESULT_FILES = (SCORES, IMAGES, ERRORS, SUMMARY)
HEATMAPS = "heatmaps"
_STAGING = ".staging"
_COMMIT = ".commit"
_SET_MANIFEST = "SET.json"
TMP_PREFIX = ".tmp-"

_PACKAGES = (
    "cxrbench",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "scikit-image",
    "pydicom",
    "torch",
    "monai",
    "transformers",
    "hi-ml-multimodal",
)


def run_dir(out: str | os.PathLike[str], dataset: str, name: str) -> Path:
    return Path(out) / dataset / name


def cache_dir(out: str | os.PathLike[str], dataset: str, method: str) -> Path:
    return Path(out) / dataset / HEATMAPS / method


def default_name(method: str, protocol: str) -> str:
    """A run's folder and column name when none is given: the method, suffixed by a non-default protocol."""
    return method if protocol == "cxrbench" else f"{method}@{protocol}"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync and a rename.

    The file gets the permissions a plain `open()` would give (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    if path.is_dir():
        raise CxrbenchError(f"cannot write {path}: it is a folder; give a file name")
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def table_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.10g")


def write_table(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, table_text(frame))


def commit_result_set(folder: Path, files: dict[str, str | None]) -> None:
    """Replace the run folder's result files by `files` (name -> text; None = not in the new set) as one set."""
    recover(folder)
    staging = folder / _STAGING
    staging.mkdir(mode=0o777)
    for name, text in files.items():
        if text is not None:
            write_atomic(staging / name, text)
    manifest = {
        "install": [n for n, t in files.items() if t is not None],
        "remove": [n for n, t in files.items() if t is None],
    }
    write_atomic(staging / _SET_MANIFEST, json.dumps(manifest))
    _fsync_dir(staging)
    os.rename(staging, folder / _COMMIT)  # the commit point
    _fsync_dir(folder)
    _roll_forward(folder)


def _set_manifest(folder: Path) -> dict[str, list[str]] | None:
    try:
        return json.loads((folder / _COMMIT / _SET_MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _roll_forward(folder: Path) -> None:
    manifest = _set_manifest(folder)
    if manifest is None:  # a .commit folder always holds its manifest; without one it is not ours
        raise CxrbenchError(f"{folder / _COMMIT} has no {_SET_MANIFEST}; move it away and rerun")
    for name in manifest["remove"]:
        (folder / name).unlink(missing_ok=True)
    for name in manifest["install"]:
        source = folder / _COMMIT / name
        if source.exists():
            os.replace(source, folder / name)
    shutil.rmtree(folder / _COMMIT)


def recover(folder: Path) -> None:
    """Finish a result set committed before a crash, and drop one that was never committed."""
    if (folder / _COMMIT).is_dir():
        _roll_forward(folder)
    if (folder / _STAGING).exists():
        shutil.rmtree(folder / _STAGING)


def current_file(folder: Path, name: str) -> Path | None:
    """Where the current set's `name` lies (inside `.commit/` while a crashed swap awaits its roll-forward);
    None when the current set has no such file."""
    manifest = _set_manifest(folder)
    if manifest is not None:
        if name in manifest["remove"]:
            return None
        if (folder / _COMMIT / name).exists():
            return folder / _COMMIT / name
    path = folder / name
    return path if path.exists() else None


def package_versions() -> dict[str, str]:
    """Versions of the installed packages that can change results (only those installed)."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def git_commit() -> str | None:
    """The commit of the cxrbench source tree when it is a git checkout (editable install), else None."""
    source = Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def stored_summary(folder: Path) -> RunSummary | None:
    """The summary of the run stored in `folder` (None when there is none); SummaryError when unusable."""
    path = current_file(folder, SUMMARY)
    return None if path is None else RunSummary.read(path)


@dataclass(frozen=True)
class FoundRuns:
    """The usable runs under a folder, and one line per summary.json that was skipped (and why)."""

    runs: list[RunSummary]
    skipped: list[str]


def _run_folders(root: Path) -> list[Path]:
    """Every folder under `root` (itself included) that holds a run's summary, current or awaiting roll-forward."""
    found = set()
    for path in [*root.rglob(SUMMARY), *root.rglob(f"{_COMMIT}/{SUMMARY}")]:
        folder = path.parent.parent if path.parent.name == _COMMIT else path.parent
        relative = folder.relative_to(root).parts
        if any(part.startswith(".") or part == HEATMAPS for part in relative):
            continue
        found.add(folder)
    return sorted(found)


def find_runs(root: str | os.PathLike[str]) -> FoundRuns:
    """Every stored run under `root` (a runs folder, one dataset's folder or one run folder), at any depth.

    An unusable summary.json is skipped with its reason; two runs of one (dataset, name) are an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise CxrbenchError(f"runs folder {root} does not exist; create runs with `cxrbench run` first")
    runs: list[RunSummary] = []
    skipped: list[str] = []
    for folder in _run_folders(root):
        try:
            summary = stored_summary(folder)
        except SummaryError as exc:
            skipped.append(str(exc))
            continue
        if summary is not None:
            runs.append(summary)
    if not runs:
        reasons = "; ".join(skipped)
        raise CxrbenchError(
            f"no usable {SUMMARY} under {root}"
            + (f" ({reasons})" if reasons else "")
            + "; create runs with `cxrbench run` first"
        )
    seen: dict[tuple[str, str], RunSummary] = {}
    for summary in runs:
        key = (summary.dataset, summary.name)
        if key in seen:
            raise CxrbenchError(
                f"two stored runs named '{summary.name}' on '{summary.dataset}': {seen[key].path} and {summary.path}; "
                f"point the command at one of them, or move one away"
            )
        seen[key] = summary
    return FoundRuns(runs, skipped)
