"""Fault tests 1 and 2 (docs/reliability.md): unsafe and corrupt weight files never get unpickled."""

import os

import pytest

from cxrbench.errors import WeightsError
from cxrbench.hashing import sha256_file
from cxrbench.weights import PIN_FILE, WeightFile, load_state_dict, pin, status, verify

from .conftest import require_torch

FILE = WeightFile("ldm", "bundle/models/autoencoder.pth", "the test suite")


class Evil:
    """Unpickling this creates the sentinel file: what a malicious checkpoint would do."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def _pinned(root, payload, torch):
    path = root / FILE.path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    pin(root, [FILE])
    return path


def test_state_dict_loads_after_verification(tmp_path):
    torch = require_torch()
    _pinned(tmp_path, {"conv.weight": torch.ones(2, 3)}, torch)
    state = load_state_dict(FILE, tmp_path)
    assert torch.equal(state["conv.weight"], torch.ones(2, 3))


def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path):
    torch = require_torch()
    sentinel = tmp_path / "pwned"
    _pinned(tmp_path, {"conv.weight": torch.ones(1), "payload": Evil(sentinel)}, torch)
    with pytest.raises(WeightsError, match=r"refused to load .*autoencoder\.pth"):
        load_state_dict(FILE, tmp_path)
    assert not sentinel.exists()


def test_non_tensor_payload_is_refused(tmp_path):
    torch = require_torch()
    _pinned(tmp_path, [torch.ones(1)], torch)
    with pytest.raises(WeightsError, match="mapping of parameter names to tensors"):
        load_state_dict(FILE, tmp_path)


def test_mismatch_and_truncation_are_rejected_before_unpickling(tmp_path, monkeypatch):
    torch = require_torch()
    sentinel = tmp_path / "pwned"
    path = _pinned(tmp_path, {"w": torch.ones(3)}, torch)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran on an unverified file"))
    torch.save({"w": torch.ones(1), "x": Evil(sentinel)}, path)  # swapped after pinning
    with pytest.raises(WeightsError, match="does not match the recorded"):
        load_state_dict(FILE, tmp_path)
    path.write_bytes(path.read_bytes()[:-64])  # truncated
    with pytest.raises(WeightsError, match="corrupt or not the published file"):
        load_state_dict(FILE, tmp_path)
    assert not sentinel.exists()


def test_missing_and_unpinned_files_say_what_to_do(tmp_path):
    with pytest.raises(WeightsError, match=r"missing weight file .*autoencoder\.pth .*comes from the test suite"):
        verify(FILE, tmp_path)
    (tmp_path / FILE.path).parent.mkdir(parents=True)
    (tmp_path / FILE.path).write_bytes(b"weights")
    with pytest.raises(WeightsError, match=r"no recorded sha256.*--pin.*--allow-unverified-weights"):
        verify(FILE, tmp_path)
    assert verify(FILE, tmp_path, allow_unverified=True) == tmp_path / FILE.path
    pin(tmp_path, [FILE])
    line = (tmp_path / PIN_FILE).read_text().strip()
    assert line == f"{sha256_file(tmp_path / FILE.path)}  {FILE.path}"
    assert verify(FILE, tmp_path) == tmp_path / FILE.path


def test_weights_command_lists_files_and_status(cli, tmp_path):
    result = cli("weights", "--weights", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "cxr_image_synthesis_latent_diffusion_model/models/diffusion_model.pth" in result.stdout
    assert "missing" in result.stdout
    (tmp_path / "radgraph-xl").mkdir()
    (tmp_path / "radgraph-xl" / "weights.th").write_bytes(b"x")
    assert cli("weights", "--weights", str(tmp_path), "--pin").returncode == 0
    rows = {r["file"]: r["status"] for r in status(tmp_path)}
    assert rows["radgraph-xl/weights.th"] == "ok"
    (tmp_path / "radgraph-xl" / "weights.th").write_bytes(b"y")
    os.utime(tmp_path / "radgraph-xl" / "weights.th", ns=(1, 1))
    assert {r["file"]: r["status"] for r in status(tmp_path)}["radgraph-xl/weights.th"] == "MISMATCH"
