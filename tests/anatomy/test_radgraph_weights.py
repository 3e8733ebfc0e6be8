"""RadGraph-XL's weights read from a Hugging Face hub cache (docs/weights.md, section 2): its archive, as
`StanfordAIMI/RRG_scorers` publishes it and the radgraph package downloads it (`hf_hub_download` into a hub cache),
is unpacked as that package unpacks it (into `radgraph-xl/`), verified against the sha256 the hub published, and
handed to the package offline."""

import hashlib
import io
import os
import sys
import types

import pytest

from cxrbench.errors import WeightsError
from cxrbench.testing.hub import tar_gz, write_hub_repo
from cxrbench.weights import pin, status, weights_root

from ..conftest import require_torch

REPO = "StanfordAIMI/RRG_scorers"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CXRBENCH_HOME", str(tmp_path / "home"))
    return tmp_path


def _members(torch):
    """The archive's members as radgraph 0.1.18 reads them once unpacked into <cache>/radgraph-xl/: config.json,
    weights.th (a torch.save state dict), vocabulary/."""
    weights = io.BytesIO()
    torch.save({"ner.weight": torch.arange(4.0)}, weights)
    return {
        "config.json": b'{"model": {"type": "dygie"}}',
        "weights.th": weights.getvalue(),
        "vocabulary/ner_labels.txt": b"ANAT-DP\nOBS-DP\n",
        "vocabulary/non_padded_namespaces.txt": b"*labels\n",
    }


def _cache(hub, members, **kwargs):
    """The repo as the hub keeps it: the RadGraph-XL archive next to the other scorers' archives."""
    files = {"radgraph-xl.tar.gz": tar_gz(members), "radgraph.tar.gz": tar_gz({"config.json": b"{}"})}
    return write_hub_repo(hub, REPO, files, **kwargs)


def _fake_radgraph(monkeypatch, calls):
    """Stands in for the radgraph package (not installed here): records what radgraph.RadGraph was built with and
    reads the model folder the way radgraph 0.1.18 does (`<model_cache_dir>/<model_type>/config.json`)."""

    class FakeRadGraph:
        def __init__(self, **kwargs):
            folder = os.path.join(kwargs["model_cache_dir"], kwargs["model_type"])
            with open(os.path.join(folder, "config.json"), "rb") as handle:
                calls.update(kwargs, config=handle.read(), vocabulary=sorted(os.listdir(f"{folder}/vocabulary")))

    monkeypatch.setitem(sys.modules, "radgraph", types.SimpleNamespace(RadGraph=FakeRadGraph))


def test_radgraph_weights_are_read_from_a_hub_cache(env, monkeypatch):
    torch = require_torch()
    from cxrbench.anatomy.radgraph import RadGraphExtractor, radgraph_weights

    members = _members(torch)
    snapshot = _cache(env / "hub", members)
    root = radgraph_weights(env / "hub")
    assert root == weights_root(env / "hub") and root != env / "hub"
    for name, content in members.items():
        assert (root / "radgraph-xl" / name).read_bytes() == content
    rows = {r["file"]: r for r in status(root) if r["family"] == "radgraph"}
    for name in ("weights.th", "config.json"):
        row = rows[f"radgraph-xl/{name}"]
        assert row["status"] == "ok" and row["sha256"] == hashlib.sha256(members[name]).hexdigest()
        assert row["found"].startswith(f"hub {REPO}@{snapshot.name[:12]}: radgraph-xl.tar.gz, unpacked at ")
    assert pin(root) == []  # hashes the hub published need no pin
    calls = {}
    _fake_radgraph(monkeypatch, calls)
    RadGraphExtractor(env / "hub")
    assert calls["model_type"] == "radgraph-xl" and calls["model_cache_dir"] == str(root)
    assert calls["config"] == members["config.json"]
    assert calls["vocabulary"] == ["ner_labels.txt", "non_padded_namespaces.txt"]
    assert calls["tokenizer_cache_dir"] == str((env / "hub").resolve())


def test_the_default_hub_cache_serves_radgraph_without_a_weights_folder(cli, env, monkeypatch):
    torch = require_torch()
    snapshot = _cache(env / "hub", _members(torch))
    monkeypatch.setenv("HF_HUB_CACHE", str(env / "hub"))  # huggingface_hub reads it on import: a new process
    result = cli("weights")
    assert result.returncode == 0, result.stderr
    assert f"a view of the Hugging Face hub cache {(env / 'hub').resolve()}" in result.stdout
    lines = result.stdout.splitlines()
    for name in ("weights.th", "config.json"):
        at = next(i for i, line in enumerate(lines) if f"radgraph-xl/{name}" in line)
        assert lines[at].endswith(" ok"), lines[at]
        assert f"found: hub {REPO}@{snapshot.name[:12]}: radgraph-xl.tar.gz, unpacked at " in lines[at + 1]


def test_a_corrupt_archive_or_a_changed_member_is_refused(env):
    torch = require_torch()
    from cxrbench.anatomy.radgraph import radgraph_weights

    members = _members(torch)
    snapshot = _cache(env / "hub", members)
    blob = (snapshot / "radgraph-xl.tar.gz").resolve()
    good = blob.read_bytes()
    blob.write_bytes(good[:-8])
    with pytest.raises(WeightsError, match=r"radgraph-xl\.tar\.gz is corrupt: sha256 .* is not the .* hub published"):
        weights_root(env / "hub")
    assert not (env / "home" / "hub-archives").exists() or not any((env / "home" / "hub-archives").iterdir())
    blob.write_bytes(good)
    root = radgraph_weights(env / "hub")
    unpacked = (root / "radgraph-xl" / "config.json").resolve()
    unpacked.write_bytes(b'{"model": {"type": "other"}}')  # changed after unpacking
    with pytest.raises(WeightsError, match=r"radgraph-xl/config\.json is corrupt or not the published file"):
        radgraph_weights(env / "hub")
    assert {r["file"]: r["status"] for r in status(root)}["radgraph-xl/config.json"] == "MISMATCH"
    assert pin(root) == []  # pinning never approves it


def test_a_hub_cache_without_the_archive_says_where_it_comes_from(env):
    from cxrbench.anatomy.radgraph import RadGraphExtractor

    write_hub_repo(env / "hub", REPO, {"radgraph.tar.gz": tar_gz({"config.json": b"{}"})})
    with pytest.raises(
        WeightsError, match=r"missing weight file .*radgraph-xl/config\.json .*StanfordAIMI/RRG_scorers"
    ):
        RadGraphExtractor(env / "hub")
