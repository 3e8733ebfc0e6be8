"""`import cxrbench` and `cxrbench --help` must not import torch: a fake torch records any import."""

import subprocess
import sys

import pytest


@pytest.fixture
def fake_torch(tmp_path):
    package = tmp_path / "torch"
    package.mkdir()
    sentinel = tmp_path / "torch-was-imported"
    (package / "__init__.py").write_text(f"open({str(sentinel)!r}, 'w').close()\nraise ImportError('fake torch')\n")
    return tmp_path, sentinel


def _run(path, *code):
    env = {"PYTHONPATH": str(path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *code], env=env, cwd=path, capture_output=True, text=True, check=False)


def test_a_torch_method_without_torch_says_what_to_install(fake_torch):
    path, _ = fake_torch
    result = _run(path, "-m", "cxrbench", "run", "-m", "ldm-zeroshot", "-d", "demo", "--no-progress")
    assert result.returncode == 2
    assert "method 'ldm-zeroshot' needs the Python module" in result.stderr
    assert "pip install 'cxrbench[ldm]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_torch_command_without_torch_says_what_to_install(fake_torch):
    path, _ = fake_torch
    result = _run(path, "-m", "cxrbench", "tune", "--show-codebook", "--weights", str(path))
    assert result.returncode == 2, result.stderr
    assert "cxrbench tune needs the Python module" in result.stderr and "cxrbench[ldm]" in result.stderr
    assert "Traceback" not in result.stderr


def test_fake_torch_detects_an_import(fake_torch):
    path, sentinel = fake_torch
    _run(path, "-c", "import torch")
    assert sentinel.exists()


@pytest.mark.parametrize(
    "code",
    [
        ("-c", "import cxrbench, cxrbench.registry, cxrbench.benchmark.runner, cxrbench.leaderboard.tables"),
        ("-m", "cxrbench", "--help"),
        ("-m", "cxrbench", "run", "--help"),
        ("-m", "cxrbench", "list"),
        ("-m", "cxrbench", "run", "-m", "oracle-gaussian", "-d", "demo", "--limit", "3", "--no-progress"),
    ],
)
def test_no_torch_import(fake_torch, code):
    path, sentinel = fake_torch
    result = _run(path, *code)
    assert result.returncode == 0, result.stderr
    assert not sentinel.exists(), f"{code} imported torch"
