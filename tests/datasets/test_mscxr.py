import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrbench.errors import DataError
from cxrbench.registry import load_dataset
from cxrbench.testing.mscxr import IMAGES, ROWS, image_path, write_mscxr


@pytest.fixture
def root(tmp_path):
    return write_mscxr(tmp_path / "mscxr")


def test_rows_of_one_sentence_are_one_pair_with_every_box(root):
    samples = list(load_dataset("mscxr", data_root=str(root)))
    assert len(samples) == 5  # six rows, two of them one pair
    by_text = {s.prompt: s for s in samples}
    effusion = by_text["Small bilateral pleural effusions"]
    assert [b.as_tuple() for b in effusion.boxes] == [(30, 300, 100, 360), (220, 305, 290, 360)]  # x, y, x+w, y+h
    assert (effusion.width, effusion.height) == IMAGES[effusion.image_id][2]
    for sample in samples:
        assert sample.load_image().shape == (sample.height, sample.width)
    assert len({s.pair_id for s in samples}) == 5


def test_loc_prompts_and_dropped_pairs(root):
    samples = {s.class_name: s for s in load_dataset("mscxr-loc", data_root=str(root))}
    assert samples["Pneumonia"].prompt == "right lower pneumonia"
    assert samples["Pleural Effusion"].prompt == "bilateral pleural pleural effusion"
    assert samples["Pneumothorax"].prompt == "left apical pneumothorax"
    assert samples["Cardiomegaly"].prompt == "cardiomegaly cardiomegaly"
    assert "Lung Opacity" not in samples  # "Patchy airspace opacity" names no location


def test_split_option_and_newest_version(root, tmp_path):
    assert len(list(load_dataset("mscxr", data_root=str(root), split="test"))) == 3
    older = tmp_path / "csv" / "MS_CXR_Local_Alignment_v1.0.0.csv"
    older.parent.mkdir()
    older.write_text((root / "MS_CXR_Local_Alignment_v1.1.0.csv").read_text())
    explicit = load_dataset("mscxr", data_root=str(root), csv=str(older))
    assert explicit.csv == older


def test_describe_prints_reference_sizes(cli, root):
    result = cli("datasets", "describe", "mscxr-loc", "--data-root", str(root))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert lines["Pneumonia"][1:] == ["1", "1", "1", "146"]
    assert lines["Cardiomegaly"][-1] == "333"


def _edit(root, edit):
    path = root / "MS_CXR_Local_Alignment_v1.1.0.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame)
    frame.to_csv(path, index=False)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.loc.__setitem__((2, "category_name"), "Fracture"), "line 3: category 'Pleural Effusion'"),
        (lambda f: f.loc.__setitem__((0, "w"), "-5"), "line 2: box (x, y, w, h)"),
        (lambda f: f.loc.__setitem__((0, "x"), "abc"), "line 2: column x holds 'abc'"),
        (lambda f: f.loc.__setitem__((3, "path"), "/etc/passwd"), "line 5: image path '/etc/passwd'"),
        (lambda f: f.loc.__setitem__((3, "path"), "files/../../x.jpg"), "line 5: image path"),
    ],
)
def test_bad_rows_name_file_and_line(root, edit, message):
    """A bad row makes its pair an error pair (file and line in the message); the other pairs stay usable."""
    _edit(root, edit)
    samples = list(load_dataset("mscxr", data_root=str(root)))
    errors = [s.error for s in samples if s.error]
    assert len(errors) == 1
    assert "MS_CXR_Local_Alignment_v1.1.0.csv" in errors[0]
    assert message in errors[0]
    assert len(samples) == 5


def test_missing_column_stops_the_dataset(root):
    _edit(root, lambda f: f.pop("w"))
    with pytest.raises(DataError, match=r"lacks the column\(s\) w"):
        load_dataset("mscxr", data_root=str(root))


def test_escaping_symlink_is_rejected(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = root / image_path(ROWS[0][0])
    moved = outside / target.name
    target.rename(moved)
    target.symlink_to(moved)
    errors = [s.error for s in load_dataset("mscxr", data_root=str(root)) if s.error]
    assert len(errors) == 2  # both pairs on that image
    assert "line 2: image path" in errors[0]
    assert "through a symlink" in errors[0]


def test_missing_image_is_a_pair_error(cli, root):
    (root / image_path(ROWS[5][0])).unlink()
    result = cli("run", "-m", "center-gaussian", "-d", "mscxr", "--data-root", str(root), "--no-progress")
    assert result.returncode == 2
    assert "image not found" in result.stderr
    skipped = cli(
        "run",
        "-m",
        "center-gaussian",
        "-d",
        "mscxr",
        "--data-root",
        str(root),
        "--no-progress",
        "--on-error",
        "skip",
        "--n-resamples",
        "100",
    )
    assert skipped.returncode == 0, skipped.stderr


def _pair_errors(root):
    return [s.error for s in load_dataset("mscxr", data_root=str(root)) if s.error]


@pytest.mark.parametrize("bad", ["../02aa804e", "/02aa804e", "a/b", "a\\b", ".."])
def test_dicom_ids_that_could_name_a_path_are_pair_errors(root, bad):
    _edit(root, lambda f: f.loc.__setitem__((3, "dicom_id"), bad))
    errors = _pair_errors(root)
    assert len(errors) == 1
    assert f"MS_CXR_Local_Alignment_v1.1.0.csv, line 5: dicom_id {bad!r} is not a usable identifier" in errors[0]


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("image_width", "999", "image 999 x 400 at"),
        ("image_height", "401", "image 320 x 401 at"),
        ("path", image_path(ROWS[3][0]), f"image 320 x 400 at {image_path(ROWS[3][0])!r}"),
    ],
)
def test_rows_of_one_pair_disagreeing_on_the_image_are_a_pair_error(root, column, value, shown):
    """Lines 3 and 4 are one pair (two effusion boxes); today's rule 'first row wins' would hide the conflict."""
    _edit(root, lambda f: f.loc.__setitem__((2, column), value))
    errors = _pair_errors(root)
    assert len(errors) == 1
    assert "line 4: " + shown in errors[0]
    assert f"differs from line 3's 320 x 400 at {image_path(ROWS[0][0])!r}" in errors[0]


def test_a_repeated_box_is_dropped_with_a_warning(root):
    _edit(root, lambda f: f.loc.__setitem__(len(f), f.loc[1]))  # line 8 repeats line 3
    with pytest.warns(UserWarning, match=r"line 8: pair .* has this box already \(line 3\); duplicate dropped"):
        samples = list(load_dataset("mscxr", data_root=str(root)))
    effusion = next(s for s in samples if s.class_name == "Pleural Effusion")
    assert [b.as_tuple() for b in effusion.boxes] == [(30, 300, 100, 360), (220, 305, 290, 360)]


def test_a_blank_image_is_an_error_naming_the_file(root):
    path = root / image_path(ROWS[5][0])
    Image.fromarray(np.full((380, 380), 17, dtype=np.uint8)).save(path)
    sample = next(s for s in load_dataset("mscxr", data_root=str(root)) if s.class_name == "Pneumothorax")
    with pytest.raises(DataError, match=re.escape(f"{path} is blank: every pixel is 17")):
        sample.load_image()


def test_config_lists_every_option_with_its_default_but_no_path(root, tmp_path):
    config = load_dataset("mscxr", data_root=str(root)).config()
    assert config == {"split": None}
    loc = load_dataset("mscxr-loc", data_root=str(root), split="test").config()
    assert loc == {"split": "test", "extractor": "rules"}
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    assert load_dataset("mscxr", data_root=str(moved)).config() == config
