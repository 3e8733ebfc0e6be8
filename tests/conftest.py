import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# CI sets this so that tests needing torch fail instead of skipping when it is missing.
REQUIRE_TORCH = os.environ.get("CXRBENCH_REQUIRE_TORCH") == "1"


def require(module: str):
    """Import a torch-family module; skip without it, unless CI demands it (then the import error fails)."""
    if REQUIRE_TORCH:
        return importlib.import_module(module)
    return pytest.importorskip(module)


REQUIRE_LATEX = os.environ.get("CXRBENCH_REQUIRE_LATEX") == "1"


def require_latex(*styles: str) -> None:
    """pdflatex and the given .sty files (Debian: texlive-latex-recommended, texlive-science for siunitx); skip
    without them, unless CI demands them (CXRBENCH_REQUIRE_LATEX=1, set by .ci/run: then the test fails)."""
    missing = [] if shutil.which("pdflatex") else ["pdflatex"]
    if not missing:
        found = [subprocess.run(["kpsewhich", s], capture_output=True, check=False).returncode == 0 for s in styles]
        missing = [s for s, ok in zip(styles, found, strict=True) if not ok]
    if missing:
        message = f"{', '.join(missing)} not installed (.ci/run installs it)"
        if REQUIRE_LATEX:
            pytest.fail(message)
        pytest.skip(message)


def require_torch():
    return require("torch")


FAKE_PLUGIN = Path(__file__).parent / "fake_plugin"


def cxrbench_env(tmp_path: Path, plugin: bool = True, extra_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    paths = [str(p) for p in (extra_path, FAKE_PLUGIN if plugin else None) if p is not None]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env["FAKE_PLUGIN_LOG"] = str(tmp_path / "calls.log")
    return env


@pytest.fixture
def cli(tmp_path):
    """Run `python -m cxrbench ARGS` in a subprocess (the fake plugin installed), in tmp_path."""

    def run(*args: str, plugin: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cxrbench", *args],
            cwd=tmp_path,
            env=cxrbench_env(tmp_path, plugin),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
