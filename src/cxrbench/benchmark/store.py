"""Run folders `<out>/<dataset>/<name>/` hold a run's result set (scores.csv, images.csv, errors.csv,
summary.json); the heatmap cache of each method lies beside them in `<out>/<dataset>/heatmaps/<method>/`, so
runs of one method under other names or protocols reuse its heatmaps (the cache key holds the method config).

The four result files are replaced as one set (docs/results.md, "Result sets"): each set is written in full to
its own folder `.sets/<id>/`; the symlink `.current` names the current set and is switched with one atomic
rename (the commit point); the four names in the run folder are fixed symlinks `scores.csv -> .current/
scores.csv`, .... Whoever opens them, cxrbench or a user's script, sees the previous set or the new one, never a
mix, whenever a crash happens; the next run deletes sets that are no longer current. Every link is relative, so
a copy keeping links (`cp -r`) works; a copy following them (`cp -rL`) turns `.current` into a folder and the four
names into files, which are read as they are and made into a set again by the next run in the copy.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
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
_SETS = ".sets"
_CURRENT = ".current"
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
    """The process umask, read without changing it where the system says it (Linux), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteError(CxrbenchError, OSError):
    """A file could not be written: the message names the file asked for and the system's reason. Still an
    OSError (errno, strerror, filename: the file asked for), for callers that handle those."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync and a rename.

    A symlink is followed (its target is replaced, the link kept); a folder, device or other non-regular file is
    refused. The file gets the permissions a plain `open()` would give (0666 less the umask), not mkstemp's 0600.
    A failure (full disk, no permission) is a WriteError naming `path`, and leaves no temporary file.
    """
    asked = Path(path)
    path = asked.resolve() if asked.is_symlink() else asked
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise CxrbenchError(f"cannot write {asked}: it is {kind}; give a file name")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise WriteError(exc.errno, exc.strerror or str(exc), str(asked)) from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def table_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.10g")


def write_table(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, table_text(frame))


def commit_result_set(folder: Path, files: dict[str, str | None]) -> None:
    """Make `files` (name -> text; None = not in the new set) the run folder's result set, as one switch."""
    recover(folder)
    sets = folder / _SETS
    sets.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=sets))
    os.chmod(staging, 0o777 & ~_umask())
    for name, text in files.items():
        if text is not None:
            write_atomic(staging / name, text)
    final = sets / uuid.uuid4().hex
    os.rename(staging, final)
    _fsync_dir(sets)
    _point(folder / _CURRENT, f"{_SETS}/{final.name}")  # the commit point
    _fsync_dir(folder)
    recover(folder)


def _point(link: Path, target: str) -> None:
    """Create or replace the symlink `link` -> `target` atomically (a new link renamed over the old)."""
    tmp = link.with_name(f"{TMP_PREFIX}{link.name}-{uuid.uuid4().hex}")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _current_set(folder: Path) -> str | None:
    """The name of the current set's folder under .sets/, or None: no set yet, or a copy that followed the links
    (`.current` a folder, the result files plain files, read as they are); an error when .current is not ours."""
    link = folder / _CURRENT
    if not link.is_symlink():
        if link.exists() and not link.is_dir():
            raise SummaryError(f"{link} is not a symlink to a result set; move it away")
        return None
    target = os.readlink(link)
    head, _, name = target.partition("/")
    if head != _SETS or not name or "/" in name or name.startswith("."):
        raise SummaryError(f"{link} points to {target}, not to a result set in {_SETS}/; move it away")
    return name


def _adopt(folder: Path) -> str | None:
    """Make the result files a run folder shows as plain files (a copy that followed the links, or a run stored
    before result sets) a set of their own and the current one; the name of that set, or None when it shows
    none. The files stay in place until the links replace them, so a crash at any step shows the same set."""
    shown = {name: folder / name for name in RESULT_FILES if (folder / name).is_file()}
    current = folder / _CURRENT
    copied = current.is_dir() and not current.is_symlink()
    if not shown and not copied:
        return None
    sets = folder / _SETS
    sets.mkdir(exist_ok=True)
    final = None
    if shown:
        staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=sets))
        os.chmod(staging, 0o777 & ~_umask())
        for name, path in shown.items():
            write_atomic(staging / name, path.read_bytes())
        final = sets / uuid.uuid4().hex
        os.rename(staging, final)
        _fsync_dir(sets)
    if copied:  # the copied set folder: out of the way, deleted with the sets that are not current
        os.rename(current, sets / f"{TMP_PREFIX}copied-{uuid.uuid4().hex}")
    if final is None:
        return None
    _point(current, f"{_SETS}/{final.name}")
    _fsync_dir(folder)
    return final.name


def recover(folder: Path) -> None:
    """Give the run folder its four fixed links and delete every set that is not current (unfinished ones
    included); result files shown as plain files are made the current set first (_adopt)."""
    current = _current_set(folder) or _adopt(folder)
    if current is None:
        return
    for name in RESULT_FILES:
        link = folder / name
        if not (link.is_symlink() and os.readlink(link) == f"{_CURRENT}/{name}"):
            _point(link, f"{_CURRENT}/{name}")
    for old in (folder / _SETS).iterdir():
        if old.name == current:
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def current_file(folder: Path, name: str) -> Path | None:
    """The current set's file `name` (through the run folder's fixed link), or None when the set has none."""
    path = folder / name
    return path if path.is_file() else None


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
    _current_set(folder)
    path = current_file(folder, SUMMARY)
    if path is None:
        if (folder / SUMMARY).exists() or (folder / SUMMARY).is_symlink():
            raise SummaryError(f"{folder / SUMMARY} is not a readable file")
        return None
    return RunSummary.read(path)


@dataclass(frozen=True)
class FoundRuns:
    """The usable runs under a folder, and one line per summary.json that was skipped (and why)."""

    runs: list[RunSummary]
    skipped: list[str]


def _is_heatmap_cache(folder: Path) -> bool:
    """Whether a folder named `heatmaps` looks like the heatmap cache: no summary of its own, and one flat folder
    of entries per method (cache.py); unreadable folders count as caches (they are not searched either way)."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name == SUMMARY:
                    return False
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                with os.scandir(entry.path) as inner:
                    if any(e.is_dir() and not e.name.startswith(".") for e in inner):
                        return False
    except OSError:
        return True
    return True


def _run_folders(root: Path) -> tuple[list[Path], list[str]]:
    """Every folder under `root` (itself included) that holds a run's summary, and one line per folder named
    `heatmaps` that was not searched although it is not a heatmap cache. Symlinked folders are followed (runs
    linked in from scratch space), each folder searched once (a link back up is not followed round). Hidden
    folders and heatmap caches are not searched."""
    found, unsearched = [], []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError:
            dirnames.clear()
            continue
        if (info.st_dev, info.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        for name in [d for d in dirnames if d == HEATMAPS and not _is_heatmap_cache(Path(dirpath) / d)]:
            unsearched.append(
                f"{Path(dirpath) / name}: not searched for runs: '{HEATMAPS}' folders hold heatmap caches, and this "
                f"one holds more than a cache; rename it to list the runs in it"
            )
        if SUMMARY in filenames or SUMMARY in dirnames:
            found.append(Path(dirpath))
        skip = {HEATMAPS, *RESULT_FILES}
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in skip)
    return found, unsearched


def find_runs(root: str | os.PathLike[str]) -> FoundRuns:
    """Every stored run under `root` (a runs folder, one dataset's folder or one run folder), at any depth and
    through symlinked folders.

    An unusable summary.json is skipped with its reason; two runs of one (dataset, name) are an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise CxrbenchError(f"runs folder {root} does not exist; create runs with `cxrbench run` first")
    runs: list[RunSummary] = []
    folders, skipped = _run_folders(root)
    for folder in folders:
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
