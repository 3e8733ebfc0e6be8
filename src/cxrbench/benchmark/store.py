"""Run folders: `<out>/<dataset>/<method>/` with scores.csv, summary.json, errors.csv and the heatmap cache."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbench.errors import CxrbenchError

SCORES = "scores.csv"
SUMMARY = "summary.json"
ERRORS = "errors.csv"
IMAGES = "images.csv"
HEATMAPS = "heatmaps"

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


def run_dir(out: str | os.PathLike[str], dataset: str, method: str) -> Path:
    return Path(out) / dataset / method


def write_atomic(path: Path, text: str) -> None:
    """Write text to `path` through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, frame.to_csv(index=False, float_format="%.10g"))


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(summary, indent=2, allow_nan=False) + "\n")


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


def read_summary(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CxrbenchError(f"cannot read run summary {path}: {exc}") from exc


def find_runs(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every stored run under `root` (a runs folder, one dataset's folder or one run folder)."""
    root = Path(root)
    if not root.is_dir():
        raise CxrbenchError(f"runs folder {root} does not exist; create runs with `cxrbench run` first")
    paths = sorted(root.glob(SUMMARY)) or sorted(root.glob(f"*/{SUMMARY}")) or sorted(root.glob(f"*/*/{SUMMARY}"))
    if not paths:
        raise CxrbenchError(f"no {SUMMARY} found under {root}; create runs with `cxrbench run` first")
    return [read_summary(p) for p in paths]
