"""Fault tests 1 and 2 (docs/reliability.md): unsafe and corrupt weight files never get unpickled."""

import os

import pytest

from cxrbench.errors import WeightsError
from cxrbench.hashing import sha256_file
from cxrbench.weights import PIN_FILE, WeightFile, load_state_dict, pin, repin, status, verify

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


def _weight_file(root, content=b"x"):
    path = root / "radgraph-xl" / "weights.th"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_changed_file_is_never_repinned_silently(tmp_path):
    path = _weight_file(tmp_path, b"published")
    old = sha256_file(path)
    assert [(c.path, c.old, c.new) for c in pin(tmp_path)] == [("radgraph-xl/weights.th", None, old)]
    assert pin(tmp_path) == []  # nothing new
    path.write_bytes(b"swapped")
    new = sha256_file(path)
    before = (tmp_path / PIN_FILE).read_bytes()
    with pytest.raises(WeightsError) as info:
        pin(tmp_path)
    message = str(info.value)
    assert "radgraph-xl/weights.th changed since it was pinned" in message and "\n" not in message
    assert old[:16] in message and new[:16] in message and "--repin radgraph-xl/weights.th" in message
    assert (tmp_path / PIN_FILE).read_bytes() == before
    with pytest.raises(WeightsError, match="does not match the recorded"):
        verify(WeightFile("radgraph", "radgraph-xl/weights.th", "x"), tmp_path)
    assert [(c.path, c.old, c.new) for c in repin(tmp_path, ["radgraph-xl/weights.th"])] == [
        ("radgraph-xl/weights.th", old, new)
    ]
    assert (tmp_path / PIN_FILE).read_text() == f"{new}  radgraph-xl/weights.th\n"
    with pytest.raises(WeightsError, match=r"--repin: no/such\.pt is not a weight file cxrbench knows"):
        repin(tmp_path, ["no/such.pt"])
    with pytest.raises(WeightsError, match=r"--repin: .*radgraph-xl/config\.json does not exist"):
        repin(tmp_path, ["radgraph-xl/config.json"])


def test_weights_command_refuses_changed_pins_and_repins_on_request(cli, tmp_path):
    path = _weight_file(tmp_path / "w", b"published")
    old = sha256_file(path)
    assert cli("weights", "--weights", "w", "--pin").returncode == 0
    path.write_bytes(b"swapped")
    refused = cli("weights", "--weights", "w", "--pin")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "--repin radgraph-xl/weights.th" in refused.stderr
    repinned = cli("weights", "--weights", "w", "--repin", "radgraph-xl/weights.th")
    assert repinned.returncode == 0, repinned.stderr
    assert f"radgraph-xl/weights.th: sha256 {old} -> {sha256_file(path)}" in repinned.stderr
    assert {r["file"]: r["status"] for r in status(tmp_path / "w")}["radgraph-xl/weights.th"] == "ok"


def test_pinning_is_atomic(tmp_path, monkeypatch):
    _weight_file(tmp_path)
    (tmp_path / PIN_FILE).write_text("")
    before = sorted(p.name for p in tmp_path.iterdir())

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(WeightsError, match=r"cannot write .*SHA256SUMS: .*No space left on device"):
        pin(tmp_path)
    assert (tmp_path / PIN_FILE).read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file left behind


def test_bad_weights_folder_or_pin_file_is_one_line(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    for folder, problem in (("missing", "does not exist"), ("file", "is a file, not a folder")):
        with pytest.raises(WeightsError, match=f"weights folder .*{folder} {problem}"):
            pin(tmp_path / folder)
        for args in (("--pin",), ()):
            result = cli("weights", "--weights", folder, *args)
            assert result.returncode == 2, result.stderr
            assert result.stderr == f"error: weights folder {folder} {problem}\n"
    root = tmp_path / "w"
    _weight_file(root)
    (root / PIN_FILE).write_bytes(b"\xff\xfe" + b"0" * 64 + b"  radgraph-xl/weights.th\n")
    with pytest.raises(WeightsError, match=r"SHA256SUMS is not UTF-8 text"):
        verify(WeightFile("radgraph", "radgraph-xl/weights.th", "x"), root)
    for args in (("--pin",), ()):
        result = cli("weights", "--weights", "w", *args)
        assert result.returncode == 2
        assert result.stderr.startswith("error: ") and "SHA256SUMS is not UTF-8 text" in result.stderr
        assert result.stderr.count("\n") == 1
    (root / PIN_FILE).write_text(f"{'0' * 64}  radgraph-xl/weights.th\nabc radgraph-xl/config.json\n")
    with pytest.raises(WeightsError, match=r"SHA256SUMS, line 2 is not '<sha256>  <path>'"):
        pin(root)
