"""RadGraph-XL's weights read from a Hugging Face hub cache or a layout folder (docs/weights.md, section 2): its
archive, as `StanfordAIMI/RRG_scorers` publishes it and the radgraph package downloads it (`hf_hub_download` into a
hub cache), is unpacked as that package unpacks it (into `radgraph-xl/`), verified against the sha256 the hub
published, and handed to the package offline with the files of the BERT its config.json names, which transformers
then reads from a local folder."""

import hashlib
import io
import json
import os
import socket
import sys
import types

import pytest

from cxrbench.errors import WeightsError
from cxrbench.testing.hub import tar_gz, tiny_bert_files, write_hub_repo
from cxrbench.weights import RADGRAPH_BERT, RADGRAPH_BERT_FOLDER, pin, status, weights_root

from ..conftest import require, require_torch

REPO = "StanfordAIMI/RRG_scorers"
FORMER_NAME = "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext"  # the hub redirects it


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CXRBENCH_HOME", str(tmp_path / "home"))
    return tmp_path


def _config(bert=RADGRAPH_BERT):
    """The parts of RadGraph-XL's config.json radgraph 0.1.18 reads the BERT's name from (indexer, embedder)."""
    bert_entry = {"type": "pretrained_transformer_mismatched", "model_name": bert, "max_length": 512}
    return json.dumps(
        {
            "dataset_reader": {"max_span_width": 8, "token_indexers": {"bert": bert_entry}},
            "model": {"type": "dygie", "embedder": {"token_embedders": {"bert": bert_entry}}},
        }
    ).encode()


def _members(torch, bert=RADGRAPH_BERT):
    """The archive's members as radgraph 0.1.18 reads them once unpacked into <cache>/radgraph-xl/: config.json,
    weights.th (a torch.save state dict), vocabulary/."""
    weights = io.BytesIO()
    torch.save({"ner.weight": torch.arange(4.0)}, weights)
    return {
        "config.json": _config(bert),
        "weights.th": weights.getvalue(),
        "vocabulary/ner_labels.txt": b"ANAT-DP\nOBS-DP\n",
        "vocabulary/non_padded_namespaces.txt": b"*labels\n",
    }


def _cache(hub, members, **kwargs):
    """The repos as the hub keeps them: the RadGraph-XL archive next to the other scorers' archives, and the BERT
    its config names, written by transformers (its weights included, which nothing reads: weights.th holds them)."""
    require("transformers")
    files = {"radgraph-xl.tar.gz": tar_gz(members), "radgraph.tar.gz": tar_gz({"config.json": b"{}"})}
    write_hub_repo(hub, RADGRAPH_BERT, tiny_bert_files())
    return write_hub_repo(hub, REPO, files, **kwargs)


def _fake_radgraph(monkeypatch, calls):
    """Stands in for the radgraph package, to watch what it is handed: reads the model folder the way radgraph 0.1.18
    does (`<model_cache_dir>/<model_type>/config.json`, vocabulary/, weights.th) and makes the transformers calls it
    makes on the BERT that config names (radgraph.allennlp.common.cached_transformers): the indexer's
    `AutoTokenizer.from_pretrained(name, use_fast=True, cache_dir=tokenizer_cache_dir)`, the embedder's
    `AutoModel.from_config(AutoConfig.from_pretrained(name))` and `AutoTokenizer.from_pretrained(name,
    use_fast=True)`. The network is cut meanwhile: a download attempt fails the test."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    class FakeRadGraph:
        def __init__(self, **kwargs):
            folder = os.path.join(kwargs["model_cache_dir"], kwargs["model_type"])
            with open(os.path.join(folder, "config.json"), "rb") as handle:
                config = json.load(handle)
            indexer = config["dataset_reader"]["token_indexers"]["bert"]["model_name"]
            embedder = config["model"]["embedder"]["token_embedders"]["bert"]["model_name"]
            tokenizer = AutoTokenizer.from_pretrained(indexer, use_fast=True, cache_dir=kwargs["tokenizer_cache_dir"])
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(embedder))
            AutoTokenizer.from_pretrained(embedder, use_fast=True)
            calls.update(
                kwargs,
                names=(indexer, embedder),
                ids=tokenizer("Left lower lobe opacity .")["input_ids"],
                hidden=encoder.config.hidden_size,
                state=torch.load(os.path.join(folder, "weights.th"), weights_only=True),
                vocabulary=sorted(os.listdir(f"{folder}/vocabulary")),
                bert_files={n: os.path.realpath(os.path.join(indexer, n)) for n in os.listdir(indexer)},
            )

    def no_network(*args, **kwargs):
        pytest.fail(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setitem(sys.modules, "radgraph", types.SimpleNamespace(RadGraph=FakeRadGraph))


# vocab.txt of tiny_bert_files: [PAD] [UNK] [CLS] [SEP] [MASK] left lower lobe opacity . a b
TOKEN_IDS = [2, 5, 6, 7, 8, 9, 3]


def _check_package_calls(calls, root, members):
    """What the stand-in for radgraph.RadGraph read: the verified archive members, and the BERT's files from a local
    folder of links to the verified ones (transformers reads a folder without looking anything up)."""
    bert = os.path.join(calls["model_cache_dir"], RADGRAPH_BERT_FOLDER)
    assert calls["model_type"] == "radgraph-xl" and calls["names"] == (bert, bert)
    assert calls["tokenizer_cache_dir"] == bert
    assert calls["ids"] == TOKEN_IDS and calls["hidden"] == 8
    assert calls["vocabulary"] == ["ner_labels.txt", "non_padded_namespaces.txt"]
    assert list(calls["state"]) == ["ner.weight"]
    # the verified files, and only those (not the model's weights: weights.th holds the encoder's)
    names = ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
    assert calls["bert_files"] == {n: str((root / RADGRAPH_BERT_FOLDER / n).resolve()) for n in names}


def test_radgraph_weights_are_read_from_a_hub_cache(env, monkeypatch):
    torch = require_torch()
    from cxrbench.anatomy.radgraph import RadGraphExtractor, radgraph_weights

    members = _members(torch)
    snapshot = _cache(env / "hub", members)
    root = weights_root(env / "hub")
    rows = {r["file"]: r for r in status(root) if r["family"] == "radgraph"}
    for name in ("weights.th", "config.json"):
        row = rows[f"radgraph-xl/{name}"]
        assert row["status"] == "ok" and row["sha256"] == hashlib.sha256(members[name]).hexdigest()
        assert row["found"].startswith(f"hub {REPO}@{snapshot.name[:12]}: radgraph-xl.tar.gz, unpacked at ")
    vocab = rows[f"{RADGRAPH_BERT_FOLDER}/vocab.txt"]
    assert vocab["found"].startswith(f"hub {RADGRAPH_BERT}@") and vocab["status"].startswith("present, no recorded")
    with pytest.raises(WeightsError, match=rf"no recorded sha256 for .*{RADGRAPH_BERT_FOLDER}/config\.json"):
        radgraph_weights(env / "hub")
    # the BERT's small text files are git blobs in the cache: pinned once; the archive's hashes the hub published
    assert {c.path.split("/")[0] for c in pin(root)} == {RADGRAPH_BERT_FOLDER}
    assert radgraph_weights(env / "hub") == root and root != env / "hub"
    for name, content in members.items():
        assert (root / "radgraph-xl" / name).read_bytes() == content
    calls = {}
    _fake_radgraph(monkeypatch, calls)
    RadGraphExtractor(env / "hub")
    _check_package_calls(calls, root, members)
    first = calls["model_cache_dir"]
    RadGraphExtractor(env / "hub")
    assert calls["model_cache_dir"] == first  # one folder per set of files: the package's model cache keeps one BERT


@pytest.mark.parametrize("name", [RADGRAPH_BERT, FORMER_NAME])
def test_radgraph_and_its_bert_are_read_from_a_layout_folder(cli, env, monkeypatch, name):
    """A layout folder: `cxrbench weights` lists and pins the BERT's files, the loader hands them to the package;
    the archive may name the BERT by its former hub name, which the hub redirects to the same repo."""
    torch = require_torch()
    require("transformers")
    from cxrbench.anatomy.radgraph import RadGraphExtractor

    root = env / "w"
    members = _members(torch, name)
    for path, content in {
        **{f"radgraph-xl/{n}": c for n, c in members.items()},
        **{f"{RADGRAPH_BERT_FOLDER}/{n}": c for n, c in tiny_bert_files().items()},
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    pinned = cli("weights", "--weights", "w", "--pin")
    assert pinned.returncode == 0, pinned.stderr
    lines = [line.split() for line in pinned.stdout.splitlines() if RADGRAPH_BERT_FOLDER in line]
    assert [(words[1], words[-1]) for words in lines] == [
        (f"{RADGRAPH_BERT_FOLDER}/{n}", "ok")
        for n in ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
    ]
    calls = {}
    _fake_radgraph(monkeypatch, calls)
    files = sorted(root.rglob("*"))
    RadGraphExtractor(root)
    _check_package_calls(calls, root, members)
    assert sorted(root.rglob("*")) == files  # nothing written in the weights folder: it may be read-only
    vocabulary = os.path.join(calls["model_cache_dir"], "radgraph-xl", "vocabulary")
    assert not os.path.islink(vocabulary)  # a copy: the package takes a lock file in it
    (root / RADGRAPH_BERT_FOLDER / "tokenizer_config.json").unlink()  # optional, but pinned: must be there
    with pytest.raises(WeightsError, match=r"missing weight file .*tokenizer_config\.json"):
        RadGraphExtractor(root)
    (root / RADGRAPH_BERT_FOLDER / "tokenizer_config.json").write_bytes(tiny_bert_files()["tokenizer_config.json"])
    (root / RADGRAPH_BERT_FOLDER / "vocab.txt").unlink()
    with pytest.raises(WeightsError) as info:
        RadGraphExtractor(root)
    message = str(info.value)
    assert "\n" not in message and f"missing weight file {root / RADGRAPH_BERT_FOLDER / 'vocab.txt'}" in message
    assert f"comes from Hugging Face {RADGRAPH_BERT}" in message and "cxrbench weights fetch radgraph" in message


def test_an_archive_naming_another_bert_is_refused(env, monkeypatch):
    torch = require_torch()
    from cxrbench.anatomy.radgraph import RadGraphExtractor

    _cache(env / "hub", _members(torch, "bert-base-uncased"))
    pin(weights_root(env / "hub"))
    calls = {}
    _fake_radgraph(monkeypatch, calls)
    with pytest.raises(WeightsError) as info:
        RadGraphExtractor(env / "hub")
    message = str(info.value)
    assert "\n" not in message and "names 'bert-base-uncased' as its BERT" in message and RADGRAPH_BERT in message
    assert calls == {}


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
    pin(weights_root(env / "hub"))  # the BERT's text files
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


def _tiny_radgraph_xl(root):
    """A tiny RadGraph-XL in a layout folder, as radgraph 0.1.18 reads it: `radgraph-xl/` (config.json naming the
    BERT, vocabulary/ with the dataset's label namespaces, weights.th of the DyGIE model the package builds from
    them, random) and the BERT's files, written by transformers."""
    import torch
    from dotmap import DotMap
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models import dygie

    bert = root / RADGRAPH_BERT_FOLDER
    bert.mkdir(parents=True)
    for name, content in tiny_bert_files().items():
        (bert / name).write_bytes(content)
    (bert / "model.safetensors").unlink()  # not read: weights.th holds the encoder's weights
    model = root / "radgraph-xl"
    (model / "vocabulary").mkdir(parents=True)
    labels = {
        "ner_labels": ["", "Anatomy::definitely present", "Observation::definitely present"],
        "relation_labels": ["", "modify", "located_at", "suggestive_of"],
    }
    for namespace, tokens in labels.items():
        (model / "vocabulary" / f"radgraph-xl__{namespace}.txt").write_text("\n".join(tokens) + "\n")
    (model / "vocabulary" / "non_padded_namespaces.txt").write_text("*tags\n*labels\n")
    config = json.loads(_config())
    config["dataset_reader"]["max_span_width"] = 3
    config["model"].update(
        initializer={},
        module_initializer={},
        feature_size=4,
        max_span_width=3,
        target_task="relation",
        feedforward_params={"num_layers": 1, "hidden_dims": 8, "dropout": 0.0},
        loss_weights={"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
        modules={
            "ner": {},
            "coref": {"spans_per_word": 0.3, "max_antecedents": 10},
            "relation": {"spans_per_word": 0.5},
            "events": {
                "trigger_spans_per_word": 0.3,
                "argument_spans_per_word": 0.8,
                "loss_weights": {"trigger": 1.0, "arguments": 1.0},
            },
        },
    )
    (model / "config.json").write_text(json.dumps(config))
    embedder = token_embedders.PretrainedTransformerMismatchedEmbedder(model_name=str(bert), max_length=512)
    arguments = DotMap(config).model
    for name in ("type", "embedder", "initializer", "module_initializer"):
        del arguments[name]
    network = dygie.DyGIE(
        vocab=Vocabulary.from_files(str(model / "vocabulary"), None, None),
        embedder=text_field_embedders.BasicTextFieldEmbedder({"bert": embedder}),
        **arguments,
    )
    torch.save(network.state_dict(), model / "weights.th")


def test_the_radgraph_package_builds_radgraph_xl_offline_from_the_verified_files(env, monkeypatch):
    """The real radgraph package (`cxrbench[text]`), handed a layout folder's files by the extractor, builds
    RadGraph-XL and its BERT's tokenizer and encoder with the network cut, and reads a sentence."""
    require_torch()
    require("radgraph")  # the `text` extra (.ci/run installs it)
    from cxrbench.anatomy.radgraph import RadGraphExtractor

    root = env / "w"
    _tiny_radgraph_xl(root)
    pin(root)

    def no_network(*args, **kwargs):
        pytest.fail(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    extractor = RadGraphExtractor(root)
    graph = extractor.model(["Left lower lobe opacity."])["0"]
    assert graph["text"] == "Left lower lobe opacity ." and isinstance(graph["entities"], dict)
    assert isinstance(extractor.findings("Left lower lobe opacity."), dict)
