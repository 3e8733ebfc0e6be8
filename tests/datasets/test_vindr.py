import shutil

import numpy as np
import pandas as pd
import pytest

from cxrbench.anatomy.lut import load_lut, nearest_location
from cxrbench.errors import DataError
from cxrbench.registry import load_dataset
from cxrbench.testing.vindr import IMAGES, ROWS, chest_like, write_vindr


@pytest.fixture
def root(tmp_path):
    return write_vindr(tmp_path / "vindr")


def test_every_box_and_prompt_comes_out_where_the_file_put_it(root):
    samples = {s.pair_id: s for s in load_dataset("vindr", data_root=str(root))}
    assert set(samples) == {
        "00a1b2c3d4e5f60718293a4b5c6d7e8f:pleural_effusion",
        "00a1b2c3d4e5f60718293a4b5c6d7e8f:cardiomegaly",
        "0123456789abcdef0123456789abcdef:atelectasis",
        "0123456789abcdef0123456789abcdef:pneumothorax",
    }  # Nodule/Mass and "No finding" are not among the 7 classes
    effusion = samples["00a1b2c3d4e5f60718293a4b5c6d7e8f:pleural_effusion"]
    assert effusion.class_name == "Pleural Effusion"
    assert [b.as_tuple() for b in effusion.boxes] == [r[3] for r in ROWS[:2]]
    assert (effusion.height, effusion.width) == IMAGES["00a1b2c3d4e5f60718293a4b5c6d7e8f"][:2]
    lut = load_lut()
    first, second = (nearest_location(b, 400, 320, lut) for b in effusion.boxes)
    assert first.startswith("right") and second.startswith("left")  # image left = patient right
    assert effusion.prompt == f"{first} <and> {second} pleural effusion"
    assert samples["00a1b2c3d4e5f60718293a4b5c6d7e8f:cardiomegaly"].prompt == "cardiomegaly cardiomegaly"
    assert samples["0123456789abcdef0123456789abcdef:pneumothorax"].prompt.startswith("left")


def test_pixels_monochrome1_inverted_and_compressed_decoded(root):
    samples = list(load_dataset("vindr", data_root=str(root)))
    for sample in samples:
        height, width, _, _ = IMAGES[sample.image_id]
        seed = list(IMAGES).index(sample.image_id)
        expected = chest_like(height, width, seed).astype(np.float64)
        expected = (expected - expected.min()) / (expected.max() - expected.min())
        np.testing.assert_allclose(sample.load_image(), expected, atol=1e-6)


def _rewrite(root, edit):
    path = root / "annotations" / "annotations_test.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame)
    frame.to_csv(path, index=False)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.loc.__setitem__((1, "class_name"), "Pneumonitis"), "line 3: unknown class 'Pneumonitis'"),
        (lambda f: f.loc.__setitem__((0, "x_min"), "900"), "line 2: box (x_min, y_min, x_max, y_max)"),
        (lambda f: f.loc.__setitem__((4, "y_max"), ""), "line 6: box is partly missing (y_max empty)"),
        (lambda f: f.loc.__setitem__((4, "image_id"), "../../etc/passwd"), "line 6: image path"),
    ],
)
def test_bad_annotations_name_file_and_line(root, edit, message):
    """A bad row makes its pair an error pair naming file and line; the other pairs stay usable."""
    _rewrite(root, edit)
    samples = list(load_dataset("vindr", data_root=str(root)))
    errors = [s.error for s in samples if s.error]
    assert len(errors) == 1
    assert "annotations_test.csv" in errors[0]
    assert message in errors[0]
    assert sum(s.error is None for s in samples) >= 3


def test_missing_column_stops_the_dataset(root):
    _rewrite(root, lambda f: f.pop("x_max"))
    with pytest.raises(DataError, match=r"lacks the column\(s\) x_max"):
        load_dataset("vindr", data_root=str(root))


def test_missing_release_files(tmp_path, root):
    with pytest.raises(DataError, match="needs --data-root"):
        load_dataset("vindr")
    with pytest.raises(DataError, match=r"annotations_test\.csv"):
        load_dataset("vindr", data_root=str(tmp_path))
    (root / "test" / "0123456789abcdef0123456789abcdef.dicom").unlink()
    errors = [s.error for s in load_dataset("vindr", data_root=str(root)) if s.error]
    assert len(errors) == 2  # both pairs of that image
    assert all("0123456789abcdef0123456789abcdef.dicom not found" in e for e in errors)


def test_unreadable_dicom_is_skipped_and_logged(cli, root, tmp_path):
    image = root / "test" / "0123456789abcdef0123456789abcdef.dicom"
    image.write_bytes(image.read_bytes()[:-5000])  # truncated pixel data, header intact
    args = (
        "run",
        "-m",
        "oracle-gaussian",
        "-d",
        "vindr",
        "--data-root",
        str(root),
        "--no-progress",
        "--n-resamples",
        "50",
    )
    assert cli(*args).returncode == 0  # the oracle never reads pixels
    failed = cli("run", "-m", "center-gaussian", "-d", "vindr", "--data-root", str(root), "--no-progress")
    assert failed.returncode == 2
    assert "pixel data is truncated or corrupt" in failed.stderr
    skipped = cli(
        "run",
        "-m",
        "center-gaussian",
        "-d",
        "vindr",
        "--data-root",
        str(root),
        "--no-progress",
        "--on-error",
        "skip",
        "--n-resamples",
        "50",
    )
    assert skipped.returncode == 0, skipped.stderr
    errors = pd.read_csv(tmp_path / "runs" / "vindr" / "center-gaussian" / "errors.csv")
    assert sorted(errors["pair_id"]) == [
        "0123456789abcdef0123456789abcdef:atelectasis",
        "0123456789abcdef0123456789abcdef:pneumothorax",
    ]
    assert set(errors["stage"]) == {"load"}


def test_oracle_on_vindr_fixture_end_to_end(root, tmp_path):
    from cxrbench.benchmark.runner import run_benchmark

    shutil.copytree(root, tmp_path / "copy")
    result = run_benchmark(
        "oracle-gaussian",
        "vindr",
        data_root=str(tmp_path / "copy"),
        out=tmp_path / "runs",
        n_resamples=50,
        progress=False,
    )
    assert result.summary["n_scored"] == 4
    assert (result.scores["miou"] > 0.5).all()
