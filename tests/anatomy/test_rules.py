import os
import sys
import types

import pandas as pd
import pytest

from cxrbench.anatomy.extract import extract_locations, report_findings, split_sentences
from cxrbench.anatomy.radgraph import RadGraphExtractor, graph_findings
from cxrbench.anatomy.rules import merge_locations, sentence_findings
from cxrbench.errors import WeightsError

HERE = __import__("pathlib").Path(__file__).parent


def _table(name):
    return pd.read_csv(HERE / name, dtype=str, keep_default_na=False)


def _correct(row) -> bool:
    got = sentence_findings(row.sentence).get(row.pathology)
    expected = set(row.locations.split(";")) if row.locations else None
    return (set(got) if got is not None else None) == expected


@pytest.mark.parametrize(
    "row", list(_table("sentences.csv").itertuples()), ids=lambda r: f"{r.pathology}: {r.sentence}"
)
def test_development_table(row):
    """101 findings in 82 sentences written for this project: synonyms, negation, resolution, merges."""
    assert _correct(row)


def test_held_out_table_accuracy():
    """40 findings written after the rules were frozen: side and zone right for at least 90 %."""
    table = _table("sentences_heldout.csv")
    accuracy = sum(_correct(row) for row in table.itertuples()) / len(table)
    assert accuracy >= 0.9, accuracy


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


def test_radgraph_missing_weights_say_what_and_where(tmp_path):
    with pytest.raises(WeightsError, match=r"radgraph-xl/config\.json.*StanfordAIMI/RRG_scorers"):
        RadGraphExtractor(tmp_path)


def test_radgraph_extractor_drives_the_package_offline(tmp_path, monkeypatch):
    """The wrapper builds radgraph.RadGraph from the local folder, offline, and maps its output."""
    calls = {}

    class FakeRadGraph:
        def __init__(self, **kwargs):
            calls.update(kwargs, offline=os.environ.get("HF_HUB_OFFLINE"))

        def __call__(self, sentences):
            calls["sentences"] = sentences
            return {"0": GRAPH}

    monkeypatch.setitem(sys.modules, "radgraph", types.SimpleNamespace(RadGraph=FakeRadGraph))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    folder = tmp_path / "radgraph-xl"
    (folder / "vocabulary").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "weights.th").write_bytes(b"")
    extractor = RadGraphExtractor(tmp_path)
    assert extractor.findings("Left lower lobe opacity.") == {"Lung Opacity": ["left lower"]}
    assert calls["model_type"] == "radgraph-xl"
    assert calls["model_cache_dir"] == str(tmp_path)
    assert calls["offline"] == "1"
    assert calls["sentences"] == ["Left lower lobe opacity."]
