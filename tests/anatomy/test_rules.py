import json
import os
import sys
import types

import pandas as pd
import pytest

from cxrbench.anatomy.extract import extract_locations, report_findings, split_sentences
from cxrbench.anatomy.radgraph import SOURCE, RadGraphExtractor, graph_findings
from cxrbench.anatomy.rules import findings, merge_locations
from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.errors import WeightsError
from cxrbench.weights import pin, repin, weights_root

from ..conftest import require, require_torch

HERE = __import__("pathlib").Path(__file__).parent


def _table(name):
    return pd.read_csv(HERE / name, dtype=str, keep_default_na=False)


def _expected(row) -> set[str] | None:
    """None: the pathology must not be reported; an empty set ("-"): reported without a location."""
    if not row.locations:
        return None
    return set() if row.locations == "-" else set(row.locations.split(";"))


def _miss(row, extract=findings) -> str | None:
    """How an extractor (sentence -> {pathology: locations}) gets a row wrong, or None when it is right."""
    got = extract(row.sentence).get(row.pathology)
    if (set(got) if got is not None else None) == _expected(row):
        return None
    return f"{row.sentence} | {row.pathology}: got {got}, expected {row.locations!r}"


def _misses(table, extract=findings) -> list[str]:
    return [miss for row in table.itertuples() if (miss := _miss(row, extract)) is not None]


def _accuracy(table, extract=findings) -> float:
    return 1 - len(_misses(table, extract)) / len(table)


@pytest.mark.parametrize(
    "row", list(_table("sentences.csv").itertuples()), ids=lambda r: f"{r.pathology}: {r.sentence}"
)
def test_development_table(row):
    """101 findings in 82 sentences written for this project: synonyms, negation, resolution, merges."""
    assert _miss(row) is None


def test_held_out_table_accuracy():
    """40 findings written after the first rules were frozen; 39 right (the miss: docs/anatomy.md, 2.8)."""
    table = _table("sentences_heldout.csv")
    assert _accuracy(table) >= 0.97, _misses(table)


def test_second_held_out_table_accuracy():
    """108 findings in 81 sentences written after the phrase-kind rules were frozen (docs/anatomy.md, 2.8): 106
    right when first measured; the two misses are listed there."""
    table = _table("sentences_heldout_2.csv")
    assert len(table) == 108
    assert _accuracy(table) >= 0.98, _misses(table)


def test_second_held_out_table_covers_every_pathology_and_phrase_kind():
    table = _table("sentences_heldout_2.csv")
    assert set(table.pathology) == set(PATHOLOGIES)
    text = " ".join(table.sentence).lower()
    for phrase in (
        "are present at the left base",  # a location after the findings
        "right basilar opacity and effusion",  # a shared location
        "with associated",  # an anchored finding
        ", likely atelectasis",  # an interpretation
        "basilar atelectasis",  # an unsided zone
        "greater than",  # a comparison of sides
        "l > r",
        "picc",  # a device
        "decubitus",  # a film
    ):
        assert phrase in text, phrase


def test_tables_cover_the_required_phenomena():
    text = " ".join(_table("sentences.csv").sentence).lower()
    for word in (
        "basilar",
        "apex",
        "retrocardiac",
        "mid lung",
        "perihilar",
        "bibasilar",
        "lingula",
        "no ",
        "without",
        "free of",
        "resolved",
        "cleared",
        "left and right",
    ):
        assert word in text, word


def test_merge_locations():
    assert merge_locations(["left lower", "right lower", "left upper"]) == ["bilateral lower", "left upper"]
    assert merge_locations(["left base", "right base"]) == ["bibasilar"]
    assert merge_locations(["left", "right", "left"]) == ["bilateral"]
    assert merge_locations(["lingular", "cardiomegaly"]) == ["lingular", "cardiomegaly"]


def test_extract_locations_api():
    sentence = "Left lower lobe atelectasis and right pleural effusion."
    assert extract_locations(sentence) == ["left lower", "right pleural"]
    assert extract_locations(sentence, pathology="Pleural Effusion") == ["right pleural"]
    assert extract_locations("") == []
    assert extract_locations("No acute cardiopulmonary process.") == []


def test_report_level_bilateral_merge():
    report = (
        "FINDINGS: There is a small left pleural effusion. Heart size is normal.\n\n"
        "IMPRESSION: Small right pleural effusion as well. No pneumothorax."
    )
    findings = report_findings(report)
    assert [(f.pathology, f.locations) for f in findings] == [("Pleural Effusion", ("bilateral pleural",))]
    assert findings[0].prompt == "bilateral pleural pleural effusion"
    assert len(findings[0].sentences) == 2
    assert split_sentences("A. B.\n\nC") == ["A.", "B.", "C"]


def test_prompts_cli(cli, tmp_path):
    pd.DataFrame(
        {
            "id": ["00123", "NA", "r3"],
            "text": [
                "Bibasilar atelectasis. No effusion.",
                "Right upper lobe pneumonia and left effusion.",
                "Left lower lobe opacity.",
            ],
            "pathology": ["", "pneumonia", ""],
        }
    ).to_csv(tmp_path / "reports.csv", index=False)
    result = cli("prompts", "--input", "reports.csv", "--output", "out/prompts.csv")
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out" / "prompts.csv", dtype=str, keep_default_na=False)
    assert list(out.columns) == ["id", "pathology", "sentence", "locations", "prompt"]
    assert out.values.tolist() == [
        ["00123", "Atelectasis", "Bibasilar atelectasis.", "bibasilar", "bibasilar atelectasis"],
        ["NA", "Pneumonia", "Right upper lobe pneumonia and left effusion.", "right upper", "right upper pneumonia"],
        ["r3", "Lung Opacity", "Left lower lobe opacity.", "left lower", "left lower lung opacity"],
    ]
    pd.DataFrame({"id": ["a"], "text": ["x"], "pathology": ["flu"]}).to_csv(tmp_path / "bad.csv", index=False)
    bad = cli("prompts", "--input", "bad.csv", "--output", "o.csv")
    assert bad.returncode == 2
    assert "bad.csv, line 2: unknown pathology 'flu'" in bad.stderr


# RadGraph-XL output for "Left lower lobe opacity and no right effusion." in the package's JSON layout.
GRAPH = {
    "text": "Left lower lobe opacity and no right effusion .",
    "entities": {
        "1": {
            "tokens": "Left",
            "label": "Anatomy::definitely present",
            "start_ix": 0,
            "end_ix": 0,
            "relations": [["modify", "3"]],
        },
        "2": {
            "tokens": "lower",
            "label": "Anatomy::definitely present",
            "start_ix": 1,
            "end_ix": 1,
            "relations": [["modify", "3"]],
        },
        "3": {"tokens": "lobe", "label": "Anatomy::definitely present", "start_ix": 2, "end_ix": 2, "relations": []},
        "4": {
            "tokens": "opacity",
            "label": "Observation::definitely present",
            "start_ix": 3,
            "end_ix": 3,
            "relations": [["located_at", "3"]],
        },
        "5": {"tokens": "right", "label": "Anatomy::definitely present", "start_ix": 6, "end_ix": 6, "relations": []},
        "6": {
            "tokens": "effusion",
            "label": "Observation::definitely absent",
            "start_ix": 7,
            "end_ix": 7,
            "relations": [["located_at", "5"]],
        },
    },
}


def test_radgraph_entities_map_onto_the_vocabulary():
    assert graph_findings(GRAPH) == {"Lung Opacity": ["left lower"]}
    assert graph_findings(GRAPH, ["Pleural Effusion"]) == {}


def _entity(tokens, label, start, relations=()):
    return {
        "tokens": tokens,
        "label": label,
        "start_ix": start,
        "end_ix": start,
        "relations": [list(r) for r in relations],
    }


ANAT, OBS, UNCERTAIN = "Anatomy::definitely present", "Observation::definitely present", "Observation::uncertain"


def test_radgraph_modifier_chains_uncertain_and_suggested_observations():
    """ "Opacity at the left lung base, likely atelectasis; small pleural effusions at the bases."""
    graph = {
        "entities": {
            "1": _entity("Opacity", OBS, 0, [("located_at", "4"), ("suggestive_of", "5")]),
            "2": _entity("left", ANAT, 3, [("modify", "3")]),
            "3": _entity("lung", ANAT, 4, [("modify", "4")]),  # left -> lung -> base: a chain of modifiers
            "4": _entity("base", ANAT, 5),
            "5": _entity("atelectasis", UNCERTAIN, 8),
            "6": _entity("pleural", ANAT, 11),
            "7": _entity("effusions", OBS, 12, [("modify", "8"), ("located_at", "9")]),
            "8": _entity("small", OBS, 10, [("modify", "7")]),  # a modifier loop must not hang
            "9": _entity("bases", ANAT, 14),
        }
    }
    assert graph_findings(graph) == {
        "Lung Opacity": ["left base"],
        "Atelectasis": ["left base"],
        "Pleural Effusion": ["bibasilar"],
    }
    assert graph_findings(graph, ["Atelectasis"]) == {"Atelectasis": ["left base"]}


def _radgraph_extractor():
    """RadGraph-XL from the weights folder, or a skip that says where its weights go."""
    root = weights_root()
    if not (root / "radgraph-xl" / "weights.th").is_file():
        pytest.skip(f"RadGraph-XL weights are not in {root / 'radgraph-xl'} ({SOURCE}); set CXRBENCH_HOME")
    require("radgraph")
    return RadGraphExtractor(root)


# Not measured: the development machine has no RadGraph-XL weights (docs/anatomy.md, section 2.8).
RADGRAPH_FLOOR = 0.8


@pytest.mark.parametrize("name", ["sentences.csv", "sentences_heldout.csv", "sentences_heldout_2.csv"])
def test_tables_through_radgraph(name):
    extractor = _radgraph_extractor()
    table = _table(name)
    accuracy = _accuracy(table, extractor.findings)
    assert accuracy >= RADGRAPH_FLOOR, (accuracy, _misses(table, extractor.findings))


def test_radgraph_missing_weights_say_what_and_where(tmp_path):
    with pytest.raises(WeightsError, match=r"radgraph-xl/config\.json.*StanfordAIMI/RRG_scorers"):
        RadGraphExtractor(tmp_path)


def _radgraph_folder(root, payload, torch):
    """<root>/radgraph-xl/ as the archive unpacks (config.json naming its BERT, vocabulary/, weights.th, a torch.save
    file) and the files of that BERT (docs/weights.md, section 1)."""
    from cxrbench.weights import RADGRAPH_BERT, RADGRAPH_BERT_FOLDER

    folder = root / "radgraph-xl"
    (folder / "vocabulary").mkdir(parents=True, exist_ok=True)
    bert = {"model_name": RADGRAPH_BERT}
    config = {
        "dataset_reader": {"token_indexers": {"bert": bert}},
        "model": {"embedder": {"token_embedders": {"bert": bert}}},
    }
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(payload, folder / "weights.th")
    (root / RADGRAPH_BERT_FOLDER).mkdir(exist_ok=True)
    for name in ("config.json", "vocab.txt"):  # placeholders: the stand-in for radgraph.RadGraph reads nothing
        (root / RADGRAPH_BERT_FOLDER / name).write_text(name)
    return folder


def _fake_radgraph(monkeypatch, calls):
    class FakeRadGraph:
        """Stands in for radgraph.RadGraph; records what it was built with."""

        def __init__(self, **kwargs):
            calls.update(kwargs, offline=os.environ.get("HF_HUB_OFFLINE"))

        def __call__(self, sentences):
            calls["sentences"] = sentences
            return {"0": GRAPH}

    monkeypatch.setitem(sys.modules, "radgraph", types.SimpleNamespace(RadGraph=FakeRadGraph))


def test_radgraph_extractor_drives_the_package_offline(tmp_path, monkeypatch):
    """The wrapper builds radgraph.RadGraph from the local, verified folder, offline, and maps its output."""
    torch = require_torch()
    calls = {}
    _fake_radgraph(monkeypatch, calls)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv("CXRBENCH_HOME", str(tmp_path / "home"))
    _radgraph_folder(tmp_path, {"ner.weight": torch.ones(2)}, torch)
    pin(tmp_path)
    extractor = RadGraphExtractor(tmp_path)
    assert extractor.findings("Left lower lobe opacity.") == {"Lung Opacity": ["left lower"]}
    assert calls["model_type"] == "radgraph-xl"
    assert calls["model_cache_dir"] == str(extractor.folder)  # radgraph-xl/ and the BERT, verified, linked
    assert extractor.folder.parent == tmp_path / "home" / "radgraph-package"
    assert calls["offline"] == "1"  # while the package built its models; restored after
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "0"
    assert calls["sentences"] == ["Left lower lobe opacity."]


class Evil:
    """Unpickling this creates the sentinel file: what a malicious weights.th would do."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_radgraph_weights_are_verified_and_safely_unpickled_before_the_package_sees_them(tmp_path, monkeypatch):
    torch = require_torch()
    calls = {}
    _fake_radgraph(monkeypatch, calls)
    folder = _radgraph_folder(tmp_path, {"ner.weight": torch.ones(2)}, torch)
    with pytest.raises(WeightsError, match=r"no recorded sha256 for .*radgraph-xl/config\.json"):
        RadGraphExtractor(tmp_path)
    pin(tmp_path)
    (folder / "config.json").write_text('{"model": {}}')  # changed after pinning
    with pytest.raises(WeightsError, match=r"radgraph-xl/config\.json is corrupt or not the published file"):
        RadGraphExtractor(tmp_path)
    repin(tmp_path, ["radgraph-xl/config.json"])
    torch.save({"ner.weight": torch.zeros(2)}, folder / "weights.th")  # swapped after pinning
    with pytest.raises(WeightsError, match=r"radgraph-xl/weights\.th is corrupt or not the published file"):
        RadGraphExtractor(tmp_path)
    sentinel = tmp_path / "pwned"
    torch.save({"ner.weight": torch.ones(1), "payload": Evil(sentinel)}, folder / "weights.th")
    repin(tmp_path, ["radgraph-xl/weights.th"])  # even a pinned file must be plain tensors
    with pytest.raises(WeightsError, match=r"refused to load .*radgraph-xl/weights\.th"):
        RadGraphExtractor(tmp_path)
    assert not sentinel.exists()
    assert calls == {}  # radgraph.RadGraph never saw a file that failed a check
