"""Fault tests 1 and 2 (docs/reliability.md): unsafe and corrupt weight files never get unpickled."""

import hashlib
import os
import re
import sys
import warnings

import pytest

from cxrbench.errors import WeightsError
from cxrbench.hashing import sha256_file
from cxrbench.weights import (
    LDM_BUNDLE,
    LDM_BUNDLE_VERSION,
    PIN_FILE,
    WEIGHT_FILES,
    WeightFile,
    load_state_dict,
    pin,
    repin,
    status,
    verify,
    weights_root,
)

from .conftest import require, require_torch

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


# --- Reading a Hugging Face hub cache (docs/weights.md) ---------------------------------------------------------


def _hub_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CXRBENCH_HOME", str(tmp_path / "home"))


def _biovil_hub(tmp_path, revisions=("v1.1", "main")):
    """Tiny BioViL weights published into a hub cache as microsoft/BiomedVLP-CXR-BERT-specialized keeps them:
    the image checkpoint and the CXR-BERT files at the repo's root, at `revisions` (v1.1: hi-ml's pin)."""
    from cxrbench.testing.biovil import write_tiny_biovil
    from cxrbench.testing.hub import publish_folder

    layout = write_tiny_biovil(tmp_path / "layout", "biovil", seed=3)
    staged = tmp_path / "repo"
    staged.mkdir()
    (staged / "biovil_image_resnet50_proj_size_128.pt").write_bytes(
        (layout / "biovil_image_resnet50_proj_size_128.pt").read_bytes()
    )
    for name in ("config.json", "pytorch_model.bin", "vocab.txt", "tokenizer_config.json"):
        (staged / name).write_bytes((layout / "BiomedVLP-CXR-BERT-specialized" / name).read_bytes())
    hub = tmp_path / "hub"
    publish_folder(hub, "microsoft/BiomedVLP-CXR-BERT-specialized", staged, revisions=revisions)
    return hub, layout


def test_hub_cache_fixture_is_one_huggingface_hub_reads(tmp_path):
    from huggingface_hub import scan_cache_dir

    from cxrbench.testing.hub import write_hub_repo

    write_hub_repo(tmp_path, "org/name", {"config.json": b"{}", "w.safetensors": b"tensors"})
    info = scan_cache_dir(tmp_path)
    assert info.warnings == []
    (repo,) = info.repos
    assert repo.repo_id == "org/name" and {f.file_name for r in repo.revisions for f in r.files} == {
        "config.json",
        "w.safetensors",
    }
    assert next(iter(repo.revisions)).refs == frozenset({"main"})


def test_weights_read_from_a_hub_cache_are_hashed_and_load(tmp_path, monkeypatch):
    torch = require_torch()
    require("health_multimodal")
    from cxrbench.methods.biovil import BioVil
    from cxrbench.weights import weights_root

    _hub_env(monkeypatch, tmp_path)
    hub, layout = _biovil_hub(tmp_path)
    root = weights_root(hub)
    assert root != hub and (root / "SOURCE").read_text().strip() == str(hub.resolve())
    rows = {r["file"]: r for r in status(root) if r["family"] == "biovil"}
    image = rows["biovil_image_resnet50_proj_size_128.pt"]
    # Git LFS files verify against the sha256 the hub names their blob by; the small text files need a pin
    assert image["status"] == "ok" and image["sha256"] == sha256_file(layout / "biovil_image_resnet50_proj_size_128.pt")
    assert image["found"].startswith("hub microsoft/BiomedVLP-CXR-BERT-specialized@")
    assert rows["BiomedVLP-CXR-BERT-specialized/pytorch_model.bin"]["status"] == "ok"
    assert rows["BiomedVLP-CXR-BERT-specialized/vocab.txt"]["status"] == "present, no recorded sha256 (pin it)"
    pinned = {c.path for c in pin(root)}
    assert "BiomedVLP-CXR-BERT-specialized/vocab.txt" in pinned
    method = BioVil(weights=hub)
    expected = torch.load(layout / "biovil_image_resnet50_proj_size_128.pt", weights_only=True)
    loaded = method.image_engine.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert method.hashes["BiomedVLP-CXR-BERT-specialized/vocab.txt"] == sha256_file(
        layout / "BiomedVLP-CXR-BERT-specialized" / "vocab.txt"
    )


def test_a_corrupt_hub_blob_is_refused_before_loading(tmp_path, monkeypatch):
    require_torch()  # the tiny BioViL weights are written with torch
    _hub_env(monkeypatch, tmp_path)
    hub, _ = _biovil_hub(tmp_path)
    file = next(f for f in WEIGHT_FILES if f.path == "biovil_image_resnet50_proj_size_128.pt")
    root = weights_root(hub)
    blob = (root / file.path).resolve()
    blob.write_bytes(blob.read_bytes()[:-10])
    with pytest.raises(WeightsError, match="corrupt or not the published file"):
        verify(file, root)
    assert {r["file"]: r["status"] for r in status(root)}[file.path] == "MISMATCH"
    assert file.path not in {c.path for c in pin(root)}  # pinning never approves it
    with pytest.raises(WeightsError, match="corrupt or not the published file"):
        verify(file, root)


def test_the_default_hub_cache_serves_when_no_weights_folder_exists(cli, tmp_path, monkeypatch):
    require_torch()  # the tiny BioViL weights are written with torch
    _hub_env(monkeypatch, tmp_path)
    hub, _ = _biovil_hub(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    result = cli("weights")
    assert result.returncode == 0, result.stderr
    assert f"a view of the Hugging Face hub cache {hub.resolve()}" in result.stdout
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "biovil_image_resnet50_proj_size_128.pt" in line)
    assert lines[at].endswith(" ok") and "found: hub microsoft/BiomedVLP-CXR-BERT-specialized@" in lines[at + 1]
    (tmp_path / "home" / "weights").mkdir()  # a layout folder exists: it is read, not the hub cache
    assert "biovil_image_resnet50_proj_size_128.pt" in cli("weights").stdout
    assert "hub cache" not in cli("weights").stdout


def test_pytorch_model_bin_stands_in_for_a_missing_safetensors(tmp_path, monkeypatch):
    torch = require_torch()
    require("transformers")
    from transformers import CLIPTextModel

    from cxrbench.testing.hub import publish_folder
    from cxrbench.testing.ldm import text_encoder

    _hub_env(monkeypatch, tmp_path)
    torch.manual_seed(0)
    model = text_encoder(vocab_size=50, bos=0, eos=1, hidden_size=32, heads=2)
    model.save_pretrained(tmp_path / "sd" / "text_encoder", safe_serialization=False)
    assert not (tmp_path / "sd" / "text_encoder" / "model.safetensors").exists()
    hub = tmp_path / "hub"
    publish_folder(hub, "stabilityai/stable-diffusion-2-1-base", tmp_path / "sd")
    root = weights_root(hub)
    file = next(f for f in WEIGHT_FILES if f.path.endswith("text_encoder/model.safetensors"))
    path = verify(file, root)
    assert path == root / "stable-diffusion-2-1-base/text_encoder/pytorch_model.bin"
    assert {r["file"]: r["status"] for r in status(root)}[str(path.relative_to(root))] == "ok"
    loaded = CLIPTextModel.from_pretrained(str(path.parent), local_files_only=True)
    state, expected = loaded.state_dict(), model.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], v) for k, v in expected.items())
    # a layout folder: the stand-in is pinned under its own name and verified like any file
    local = tmp_path / "w" / "stable-diffusion-2-1-base" / "text_encoder"
    local.mkdir(parents=True)
    (local / "pytorch_model.bin").write_bytes(path.read_bytes())
    assert [c.path for c in pin(tmp_path / "w")] == ["stable-diffusion-2-1-base/text_encoder/pytorch_model.bin"]
    assert verify(file, tmp_path / "w") == local / "pytorch_model.bin"


def test_without_huggingface_hub_a_hub_cache_is_one_clear_error(tmp_path, monkeypatch):
    from cxrbench.testing.hub import write_hub_repo

    _hub_env(monkeypatch, tmp_path)
    write_hub_repo(tmp_path / "hub", "org/name", {"config.json": b"{}"})
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # a base install: the package is absent
    with pytest.raises(WeightsError, match=r"reading the Hugging Face hub cache .*hub needs huggingface_hub"):
        weights_root(tmp_path / "hub")
    assert weights_root() == tmp_path / "home" / "weights"  # no layout folder, no hub cache to fall back on


def _image_file():
    return next(f for f in WEIGHT_FILES if f.path == "biovil_image_resnet50_proj_size_128.pt")


def test_a_file_the_hub_holds_only_at_another_revision_is_refused(tmp_path, monkeypatch):
    """hi-ml-multimodal pins CXR-BERT's v1.1: the same repo's main may hold other files, whose hub sha256 only says
    they are main's. Without the library's md5 confirming it, such a file is refused, and never pinned."""
    require_torch()  # the tiny BioViL weights are written with torch
    require("health_multimodal")  # its published md5
    from health_multimodal.image.model import pretrained as hi_ml

    _hub_env(monkeypatch, tmp_path)
    hub, layout = _biovil_hub(tmp_path, revisions=("main",))
    root = weights_root(hub)
    commit = next((hub / "models--microsoft--BiomedVLP-CXR-BERT-specialized" / "snapshots").iterdir()).name
    file = _image_file()
    with pytest.raises(WeightsError) as info:
        verify(file, root)
    message = str(info.value)
    assert "\n" not in message and str(root / file.path) in message
    assert f"at main (commit {commit[:12]})" in message and "not at the pinned revision v1.1" in message
    assert f"md5 is not hi-ml-multimodal's {hi_ml.BIOVIL_IMAGE_WEIGHTS_MD5}" in message
    assert "`cxrbench weights fetch biovil`" in message and "--allow-unverified-weights" in message
    with pytest.warns(UserWarning, match="not at the pinned revision v1.1"):
        assert verify(file, root, allow_unverified=True) == root / file.path
    rows = {r["file"]: r["status"] for r in status(root) if r["family"] == "biovil"}
    assert set(rows.values()) == {f"at main (commit {commit[:12]}), not the pinned v1.1: unverified"}
    assert pin(root) == []  # a file of another revision is never approved by a pin
    text = next(f for f in WEIGHT_FILES if f.path == "BiomedVLP-CXR-BERT-specialized/vocab.txt")
    with pytest.raises(WeightsError, match=r"vocab\.txt is .* at main .*nothing confirms it is the same file"):
        verify(text, root)
    # the library's md5 confirms the checkpoint is its file, whatever revision the cache reached it through
    monkeypatch.setattr(hi_ml, "BIOVIL_IMAGE_WEIGHTS_MD5", hashlib.md5((layout / file.path).read_bytes()).hexdigest())
    assert verify(file, root) == root / file.path
    assert {r["file"]: r["status"] for r in status(root)}[file.path] == "ok"


def test_the_pinned_revision_is_read_before_main(tmp_path, monkeypatch):
    require_torch()
    _hub_env(monkeypatch, tmp_path)
    hub, layout = _biovil_hub(tmp_path, revisions=("v1.1",))
    file = _image_file()
    from cxrbench.testing.hub import write_hub_repo

    write_hub_repo(hub, "microsoft/BiomedVLP-CXR-BERT-specialized", {file.path: b"a later checkpoint"})  # main
    root = weights_root(hub)
    assert (root / file.path).read_bytes() == (layout / file.path).read_bytes()
    assert verify(file, root) == root / file.path


# --- A repo the hub renamed: cached under its former name ------------------------------------------------------

# RadGraph-XL's BERT as its hub repo holds it (placeholder bytes: they are hashed, pinned and verified)
BERT_FILES = {
    "config.json": b'{"model_type": "bert"}',
    "vocab.txt": b"[PAD]\n[UNK]\n",
    "tokenizer_config.json": b'{"do_lower_case": true}',
    "special_tokens_map.json": b'{"unk_token": "[UNK]"}',
}


def test_a_bert_cached_under_its_former_name_is_found_verified_and_listed(cli, tmp_path, monkeypatch):
    """transformers caches a repo under the name it was asked for: the radgraph package, run by the user, asks for
    the name RadGraph-XL's config.json gives, the BERT's former one (`WeightFile.aliases`)."""
    from cxrbench.testing.hub import write_hub_repo
    from cxrbench.weights import RADGRAPH_BERT, RADGRAPH_BERT_FOLDER, RADGRAPH_BERT_NAMES

    _hub_env(monkeypatch, tmp_path)
    former = RADGRAPH_BERT_NAMES[1]
    assert former.endswith("PubMedBERT-base-uncased-abstract-fulltext")
    hub = tmp_path / "hub"
    snapshot = write_hub_repo(hub, former, BERT_FILES)
    assert not (hub / f"models--{RADGRAPH_BERT.replace('/', '--')}").exists()
    root = weights_root(hub)
    bert = [f for f in WEIGHT_FILES if f.path.startswith(f"{RADGRAPH_BERT_FOLDER}/")]
    rows = {r["file"]: r for r in status(root)}
    for file in bert:
        assert rows[file.path]["found"].startswith(f"hub {former}@{snapshot.name[:12]}: ")
        assert rows[file.path]["status"] == "present, no recorded sha256 (pin it)"
    assert len(bert) == 4 and all(f.aliases == (former,) for f in bert)
    assert {c.path for c in pin(root)} == {f.path for f in bert}
    for file in bert:
        assert verify(file, root).read_bytes() == BERT_FILES[file.repo_path]
    listing = cli("weights", "--weights", "hub")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    for file in bert:
        at = next(i for i, line in enumerate(lines) if f" {file.path} " in line)
        assert lines[at].endswith(" ok") and f"found: hub {former}@{snapshot.name[:12]}" in lines[at + 1]
    # both names cached: the current name is read first
    current = write_hub_repo(hub, RADGRAPH_BERT, {**BERT_FILES, "vocab.txt": b"[PAD]\n"})
    root = weights_root(hub)
    vocab = {r["file"]: r for r in status(root)}[f"{RADGRAPH_BERT_FOLDER}/vocab.txt"]
    assert vocab["found"].startswith(f"hub {RADGRAPH_BERT}@{current.name[:12]}")
    assert (root / RADGRAPH_BERT_FOLDER / "vocab.txt").read_bytes() == b"[PAD]\n"


def test_a_former_name_is_read_at_the_pinned_revision_and_named_when_refused(tmp_path, monkeypatch):
    """A file of a renamed repo whose publisher pins a revision: the pinned revision under any of its names before
    main, and a file found only at main is refused, naming the repo as the cache keeps it."""
    from cxrbench.testing.hub import write_hub_repo
    from cxrbench.weights import find_in_hub

    _hub_env(monkeypatch, tmp_path)
    file = WeightFile(
        "x", "bert/vocab.txt", "test", repo="org/new", repo_path="vocab.txt", revision="v1", aliases=("org/old",)
    )
    hub = tmp_path / "hub"
    write_hub_repo(hub, "org/new", {"vocab.txt": b"main"})
    pinned = write_hub_repo(hub, "org/old", {"vocab.txt": b"v1"}, revisions=("v1",))
    path, hit = find_in_hub(file, hub)
    assert path == file.path and hit == pinned / "vocab.txt"
    other = tmp_path / "other"
    main = write_hub_repo(other, "org/old", {"vocab.txt": b"main"})
    path, hit = find_in_hub(file, other)
    assert hit == main / "vocab.txt"
    (tmp_path / "view" / "bert").mkdir(parents=True)
    (tmp_path / "view" / "bert" / "vocab.txt").symlink_to(hit)
    with pytest.raises(
        WeightsError, match=rf"is org/old's file at main \(commit {main.name[:12]}\).* pinned revision v1"
    ):
        verify(file, tmp_path / "view")


# --- The LDM bundle in a hub cache: at the version MONAI's bundle download asks the hub for -------------------


BUNDLE = {
    "configs/inference.json": b"{}",
    "models/autoencoder.pth": b"autoencoder 1.0.2",
    "models/diffusion_model.pth": b"diffusion model 1.0.2",
}


def _bundle_hub(hub, files=BUNDLE, revisions=(LDM_BUNDLE_VERSION,)):
    """The bundle as `monai.bundle.download` leaves it in a hub cache: `snapshot_download(repo_id="MONAI/<bundle>",
    revision=<version>)` names the ref after the version (the repo holds configs/ and models/ at its root)."""
    from cxrbench.testing.hub import write_hub_repo

    return write_hub_repo(hub, f"MONAI/{LDM_BUNDLE}", files, revisions=revisions)


def _bundle_file(name="models/autoencoder.pth"):
    return next(f for f in WEIGHT_FILES if f.path == f"{LDM_BUNDLE}/{name}")


def test_the_ldm_bundle_is_read_from_a_hub_cache_at_its_pinned_version(tmp_path, monkeypatch):
    _hub_env(monkeypatch, tmp_path)
    snapshot = _bundle_hub(tmp_path / "hub")
    root = weights_root(tmp_path / "hub")
    file = _bundle_file()
    assert verify(file, root) == root / file.path
    assert (root / file.path).read_bytes() == BUNDLE["models/autoencoder.pth"]
    row = {r["file"]: r for r in status(root)}[file.path]
    assert row["status"] == "ok" and row["found"].startswith(f"hub MONAI/{LDM_BUNDLE}@{snapshot.name[:12]}")


@pytest.mark.parametrize("pinned_ref", [False, True], ids=["no-pinned-ref", "pinned-ref-without-the-file"])
def test_an_ldm_bundle_found_only_at_main_is_refused(tmp_path, monkeypatch, pinned_ref):
    """MONAI's download reads the bundle at its version's revision; the repo's main may hold another release."""
    _hub_env(monkeypatch, tmp_path)
    hub = tmp_path / "hub"
    if pinned_ref:  # the cache's 1.0.2 names a commit it holds only the inference config of
        _bundle_hub(hub, {"configs/inference.json": b"{}"})
    main = _bundle_hub(hub, {**BUNDLE, "models/autoencoder.pth": b"a later autoencoder"}, revisions=("main",))
    root = weights_root(hub)
    file = _bundle_file()
    with pytest.raises(WeightsError) as info:
        verify(file, root)
    message = str(info.value)
    assert "\n" not in message and str(root / file.path) in message
    assert f"at main (commit {main.name[:12]})" in message
    assert f"not at the pinned revision {LDM_BUNDLE_VERSION}" in message and "nothing confirms it" in message
    assert "`cxrbench weights fetch ldm`" in message and "--allow-unverified-weights" in message
    with pytest.warns(UserWarning, match=f"not at the pinned revision {re.escape(LDM_BUNDLE_VERSION)}"):
        assert verify(file, root, allow_unverified=True) == root / file.path
    rows = {r["file"]: r["status"] for r in status(root)}
    assert rows[file.path] == f"at main (commit {main.name[:12]}), not the pinned {LDM_BUNDLE_VERSION}: unverified"
    assert file.path not in {c.path for c in pin(root)}  # never approved by a pin


def test_an_ldm_bundle_whose_main_is_the_pinned_version_is_accepted_until_main_moves(tmp_path, monkeypatch):
    _hub_env(monkeypatch, tmp_path)
    hub = tmp_path / "hub"
    _bundle_hub(hub, revisions=("main", LDM_BUNDLE_VERSION))  # one commit, both names
    file = _bundle_file()
    root = weights_root(hub)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert verify(file, root) == root / file.path
    # main moves on to a later release: the pinned version's file is still the one read
    _bundle_hub(hub, {**BUNDLE, "models/autoencoder.pth": b"a later autoencoder"}, revisions=("main",))
    root = weights_root(hub)
    assert (root / file.path).read_bytes() == BUNDLE["models/autoencoder.pth"]
    assert verify(file, root) == root / file.path
