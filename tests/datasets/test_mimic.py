import re

import pandas as pd
import pytest

from cxrbench.anatomy.lut import load_lut
from cxrbench.datasets.mimic import curate_tuning_set, read_tuning_set, report_body
from cxrbench.errors import DataError
from cxrbench.testing.mimic import STUDIES, write_mimic


@pytest.fixture
def root(tmp_path):
    return write_mimic(tmp_path / "mimic")


def test_tuning_set_selection(root):
    table = curate_tuning_set(root)
    # study 1: atelectasis located (the lateral view is left out); study 2: effusion (uncertain atelectasis is not
    # positive), left + right across sentences -> bilateral; study 3: two pathologies -> out; study 4: the report
    # negates the label -> out; study 5: cardiomegaly
    assert list(table["pathology"]) == ["Atelectasis", "Pleural Effusion", "Cardiomegaly"]
    assert list(table["prompt"]) == [
        "left base atelectasis",
        "bilateral pleural pleural effusion",
        "cardiomegaly cardiomegaly",
    ]
    assert table["image"][0] == "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"
    assert (root / table["image"][0]).is_file()
    g = load_lut().gaussians["left base"]
    assert float(table["mu_x"][0]) == pytest.approx(g.mu_x, abs=0.01)
    assert float(table["sigma_y"][0]) == pytest.approx(g.sigma_y, abs=0.01)
    assert table["subject_id"][0] == "10000032"


def test_indication_is_not_a_finding():
    report = "INDICATION: Evaluate for pneumonia.\n\nFINDINGS: Lungs are clear.\n\nIMPRESSION: No acute process."
    assert "pneumonia" not in report_body(report).lower()
    assert report_body("Right lower lobe pneumonia.") == "Right lower lobe pneumonia."


def test_curate_command(cli, root, tmp_path):
    result = cli("curate", "--mimic-root", str(root), "--output", "tuning.csv")
    assert result.returncode == 0, result.stderr
    assert "3 samples from 3 studies" in result.stdout
    assert "  Atelectasis        1" in result.stdout
    table = pd.read_csv(tmp_path / "tuning.csv", dtype=str)
    assert len(table) == 3
    missing = cli("curate", "--mimic-root", str(tmp_path), "--output", "t.csv")
    assert missing.returncode == 2
    assert "mimic-cxr-2.0.0-chexpert.csv" in missing.stderr


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        curate_tuning_set(tmp_path / "nope")


def test_curated_set_reads_back_for_tuning(root, tmp_path):
    table = curate_tuning_set(root)
    path = tmp_path / "tuning.csv"
    table.to_csv(path, index=False)
    samples, problems = read_tuning_set(path, images=root)
    assert problems == []
    assert [s.prompt for s in samples] == list(table["prompt"])
    assert [s.line for s in samples] == [2, 3, 4]
    lut = load_lut()
    bilateral = samples[1]  # "bilateral pleural": one location, one Gaussian
    assert len(bilateral.gaussians) == 1
    assert bilateral.gaussians[0].mu_x == pytest.approx(lut.gaussians["bilateral pleural"].mu_x, abs=0.005)
    assert samples[0].image == root / table["image"][0]


def test_unusable_tuning_rows_are_reported_with_their_line(root, tmp_path):
    good = curate_tuning_set(root).iloc[0].to_dict()
    rows = [
        good,
        {**good, "prompt": "somewhere atelectasis"},
        {**good, "prompt": "left base <and> right base atelectasis"},  # 2 locations, 1 Gaussian
        {**good, "sigma_x": "0"},
        {**good, "mu_y": "abc"},
        {**good, "image": "files/nope.jpg"},
    ]
    path = tmp_path / "tuning.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    samples, problems = read_tuning_set(path, images=root)
    assert [s.line for s in samples] == [2]
    assert [line for line, _ in problems] == [3, 4, 5, 6, 7]
    messages = dict(problems)
    assert "'{location} {pathology}'" in messages[3]
    assert "do not match the 2 location(s)" in messages[4]
    assert "must be positive" in messages[5]
    assert "column mu_y holds 'abc'" in messages[6]
    assert f"{path}, line 7: image not found" in messages[7]


@pytest.mark.parametrize(
    ("field", "bad", "where"),
    [
        ("subject", "10000032/../../..", "mimic-cxr-2.0.0-chexpert.csv.gz, line 2: subject_id"),
        ("study", "..", "mimic-cxr-2.0.0-chexpert.csv.gz, line 2: study_id"),
        ("dicom", "../../../escape", "mimic-cxr-2.0.0-metadata.csv.gz, line 2: dicom_id"),
    ],
)
def test_ids_that_could_name_a_path_stop_curation(tmp_path, field, bad, where):
    """Ids build report and image paths: one that could lead out of the release is refused, naming file and line."""
    subject, study, positive, uncertain, report, images = STUDIES[0]
    subject = bad if field == "subject" else subject
    study = bad if field == "study" else study
    images = [(bad, "PA")] if field == "dicom" else images
    root = write_mimic(tmp_path / "m", studies=[(subject, study, positive, uncertain, report, images)])
    with pytest.raises(DataError, match=re.escape(f"{where} {bad!r} is not a usable identifier")):
        curate_tuning_set(root)
