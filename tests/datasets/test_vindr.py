import shutil
import warnings

import numpy as np
import pandas as pd
import pydicom
import pytest

from cxrbench.anatomy.lut import load_lut, nearest_location
from cxrbench.errors import CxrbenchError, DataError
from cxrbench.registry import load_dataset
from cxrbench.testing.dicom import write_dicom
from cxrbench.testing.vindr import IMAGES, A, B, D, E, chest_like, write_vindr

# The pairs of the fixture, worked out by hand from testing/vindr.py's rows and image labels
PUBLISHED = {
    f"{A}:pleural_effusion": ("Pleural Effusion", [(20.5, 250.0, 110.0, 330.25), (200.0, 260.0, 300.0, 335.0)]),
    f"{A}:cardiomegaly": ("Cardiomegaly", [(110.0, 190.0, 250.0, 290.0)]),
    f"{A}:pneumonia": ("Pneumonia", [(40.0, 60.0, 120.0, 200.0)]),  # ILD; A is labelled Cardiomegaly, Pleural eff.
    f"{B}:atelectasis": ("Atelectasis", [(90.0, 200.0, 180.0, 290.0)]),
    f"{B}:pneumothorax": ("Pneumothorax", [(250.0, 20.0, 330.0, 90.0)]),
    f"{B}:pneumonia": ("Pneumonia", [(60.0, 80.0, 160.0, 190.0), (240.0, 120.0, 340.0, 230.0)]),  # Infiltration+ILD
    f"{E}:lung_opacity": ("Lung Opacity", [(30.0, 60.0, 120.0, 160.0)]),  # one of the 8: no label needed
    f"{E}:edema": ("Edema", [(20.0, 40.0, 240.0, 200.0)]),  # the published code keeps Edema too
}
# Left out: A's Nodule/Mass; C's No finding and Infiltration rows (no box); D's two Infiltration boxes (D is
# labelled with none of the 8) and Nodule/Mass; E's Infiltration box (E has no row in image_labels_test.csv).
PUBLISHED_PER_CLASS = {
    "Pneumonia": 2,
    "Pneumothorax": 1,
    "Pleural Effusion": 1,
    "Lung Opacity": 1,
    "Atelectasis": 1,
    "Cardiomegaly": 1,
    "Consolidation": 0,
    "Edema": 1,
}
LOCAL_CLASSES = ("Pleural Effusion", "Cardiomegaly", "Atelectasis", "Pneumothorax", "Lung Opacity")
LOCAL = {pair: value for pair, value in PUBLISHED.items() if value[0] in LOCAL_CLASSES}


@pytest.fixture
def root(tmp_path):
    return write_vindr(tmp_path / "vindr")


def _pairs(dataset):
    return {s.pair_id: (s.class_name, [b.as_tuple() for b in s.boxes]) for s in dataset}


def test_published_class_rule_by_hand(root):
    dataset = load_dataset("vindr", data_root=str(root))
    assert _pairs(dataset) == PUBLISHED
    per_class = {c: sum(s.class_name == c for s in dataset) for c in dataset.classes}
    assert per_class == PUBLISHED_PER_CLASS
    assert all(s.error is None for s in dataset)


def test_local_class_rule_by_hand(root):
    dataset = load_dataset("vindr", data_root=str(root), classes="local")
    assert len(LOCAL) == 5
    assert _pairs(dataset) == LOCAL  # no Pneumonia (VinDr has no such box label), no Edema
    assert "Edema" not in dataset.classes and "Pneumonia" in dataset.classes


def test_the_label_gate_decides_ild_and_infiltration_only(root):
    """Setting a pathology label on D makes its Infiltration boxes a Pneumonia pair; clearing A's labels removes
    A's Pneumonia pair but not its Cardiomegaly or effusion pairs (their own class needs no label)."""
    path = root / "annotations" / "image_labels_test.csv"
    labels = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("image_id")
    labels.loc[D, "Consolidation"] = "1"
    labels.loc[A, ["Cardiomegaly", "Pleural effusion"]] = "0"
    labels.reset_index().to_csv(path, index=False)
    pairs = _pairs(load_dataset("vindr", data_root=str(root)))
    assert pairs[f"{D}:pneumonia"] == ("Pneumonia", [(40.0, 50.0, 130.0, 150.0), (190.0, 60.0, 280.0, 170.0)])
    assert f"{A}:pneumonia" not in pairs
    assert f"{A}:cardiomegaly" in pairs and f"{A}:pleural_effusion" in pairs


def test_prompts_follow_the_location_table(root):
    samples = {s.pair_id: s for s in load_dataset("vindr", data_root=str(root))}
    effusion = samples[f"{A}:pleural_effusion"]
    assert (effusion.height, effusion.width) == (400, 320)
    lut = load_lut()
    first, second = (nearest_location(b, 400, 320, lut) for b in effusion.boxes)
    assert first.startswith("right") and second.startswith("left")  # image left = patient right
    assert effusion.prompt == f"{first} <and> {second} pleural effusion"
    assert samples[f"{A}:cardiomegaly"].prompt == "cardiomegaly cardiomegaly"
    assert samples[f"{B}:pneumothorax"].prompt.startswith("left")
    pneumonia = samples[f"{B}:pneumonia"]
    locations = [nearest_location(b, 360, 420, lut) for b in pneumonia.boxes]
    assert pneumonia.prompt == f"{locations[0]} <and> {locations[1]} pneumonia"


def test_describe_shows_pairs_reference_sizes_and_rules(cli, root):
    result = cli("datasets", "describe", "vindr", "--data-root", str(root))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert lines["Pneumonia"].split()[1:5] == ["2", "2", "3", "31"]
    assert "ILD + Infiltration boxes, image labelled with one of the 8" in lines["Pneumonia"]
    assert lines["Cardiomegaly"].split()[1:5] == ["1", "1", "1", "189"]
    assert lines["Pleural"].split()[2:6] == ["1", "1", "2", "56"]
    assert "Pleural effusion boxes" in lines["Pleural"]
    assert lines["Total"].split()[1:5] == ["8", "3", "10", "443"]
    assert lines["Total"].rstrip().endswith("classes=published, pixels=dicom")
    local = cli("datasets", "describe", "vindr", "--data-root", str(root), "-O", "classes=local")
    assert local.returncode == 0, local.stderr
    lines = {line.split()[0]: line for line in local.stdout.splitlines()[1:]}
    assert lines["Pneumonia"].split()[1:4] == ["0", "0", "0"]
    assert "31" not in lines["Pneumonia"] and "443" not in lines["Total"]  # published sizes: published rule only
    assert "Edema" not in lines
    assert lines["Total"].rstrip().endswith("classes=local, pixels=dicom")


def test_config_lists_every_option_with_its_default(root):
    dataset = load_dataset("vindr", data_root=str(root))
    config = dataset.config()
    assert {k: config[k] for k in ("split", "classes", "pixels")} == {
        "split": "test",
        "classes": "published",
        "pixels": "dicom",
    }
    assert set(config) == {"split", "classes", "pixels", "lut_sha256"}  # content, no paths
    assert len(config["lut_sha256"]) == 64
    other = load_dataset("vindr", data_root=str(root), classes="local", pixels="published").config()
    assert (other["classes"], other["pixels"]) == ("local", "published")


def test_option_values_are_checked(root):
    with pytest.raises(CxrbenchError, match="classes='all' is not one of 'published', 'local'"):
        load_dataset("vindr", data_root=str(root), classes="all")
    with pytest.raises(CxrbenchError, match="pixels='jpg' is not one of 'dicom', 'published'"):
        load_dataset("vindr", data_root=str(root), pixels="jpg")


def test_pixels_monochrome1_inverted_and_compressed_decoded(root):
    samples = list(load_dataset("vindr", data_root=str(root)))
    assert {s.image_id for s in samples} == {A, B, E}
    for sample in samples:
        height, width, _, _ = IMAGES[sample.image_id]
        seed = list(IMAGES).index(sample.image_id)
        expected = chest_like(height, width, seed).astype(np.float64)
        expected = (expected - expected.min()) / (expected.max() - expected.min())
        np.testing.assert_allclose(sample.load_image(), expected, atol=1e-6)
        assert sample.image.provenance["pixels"] == "dicom"


def test_published_pixels_and_their_own_cache_identity(tmp_path):
    """pixels=published through the adapter: 8-bit levels from the raw stored values (rescale ignored), recorded
    in the provenance, with a fingerprint of its own so cached heatmaps of the other conversion never match."""
    stored = (np.random.default_rng(3).integers(0, 2**15, size=(300, 280))).astype(np.uint16)
    root = write_vindr(tmp_path / "v", rows=[(A, "R8", "Atelectasis", (20.0, 150.0, 120.0, 250.0))], images={})
    write_dicom(root / "test" / f"{A}.dicom", stored, "MONOCHROME1", bits_stored=15, rescale=(3, -50))
    default, published = (
        next(iter(load_dataset("vindr", data_root=str(root), pixels=p))) for p in ("dicom", "published")
    )
    x = stored.astype(np.int64)
    expected = (255 * (x.max() - x)) // (x.max() - x.min())  # MONOCHROME1: max - x, min-max, truncated
    np.testing.assert_array_equal(np.rint(published.load_image() * 255.0), expected)
    assert published.image.provenance["pixels"] == "published"
    assert published.image.provenance["steps"] == (
        "stored values; MONOCHROME1 inverted (max - x); min-max to 0..255, truncated to 8 bits; / 255"
    )
    assert default.image.provenance["steps"] == "rescale 3 x + -50; MONOCHROME1 inverted; min-max to [0, 1]"
    assert published.image.fingerprint() == f"{default.image.fingerprint()}:pixels=published"


def test_published_pixels_are_recorded_in_images_csv(cli, root, tmp_path):
    args = ("run", "-m", "center-gaussian", "-d", "vindr", "--data-root", str(root), "--no-progress")
    result = cli(*args, "-O", "pixels=published", "--n-resamples", "100")
    assert result.returncode == 0, result.stderr
    images = pd.read_csv(next((tmp_path / "runs").rglob("images.csv")), dtype=str).set_index("image_id")
    assert set(images.index) == {A, B, E}
    assert set(images["pixels"]) == {"published"}
    assert images.loc[A, "steps"].startswith("stored values; MONOCHROME1 inverted (max - x)")


def _rewrite(root, edit, name="annotations_test.csv"):
    path = root / "annotations" / name
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    result = edit(frame)  # edits the frame in place, or returns a new one
    (result if isinstance(result, pd.DataFrame) else frame).to_csv(path, index=False)


@pytest.mark.parametrize(
    ("edit", "message", "n_good"),
    [  # an unknown class is a pair of its own; a bad box spoils its pair
        (lambda f: f.loc.__setitem__((1, "class_name"), "Pneumonitis"), "line 3: unknown class 'Pneumonitis'", 8),
        (lambda f: f.loc.__setitem__((0, "x_min"), "900"), "line 2: box (x_min, y_min, x_max, y_max)", 7),
        (lambda f: f.loc.__setitem__((5, "y_max"), ""), "line 7: box is partly missing (y_max empty)", 7),
    ],
)
def test_bad_annotations_name_file_and_line(root, edit, message, n_good):
    """A bad row makes its pair an error pair naming file and line; the other pairs stay usable."""
    _rewrite(root, edit)
    samples = list(load_dataset("vindr", data_root=str(root)))
    errors = [s.error for s in samples if s.error]
    assert len(errors) == 1
    assert "annotations_test.csv" in errors[0]
    assert message in errors[0]
    assert sum(s.error is None for s in samples) == n_good


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "sub/dir", "back\\slash", "..", "a..b", " "])
def test_ids_that_could_name_a_path_are_pair_errors(root, bad):
    """An image_id with a separator, '..' or nothing in it never reaches the file system: its pairs are errors
    naming file and line, the other pairs stay usable."""
    _rewrite(root, lambda f: f.loc.__setitem__((5, "image_id"), bad))  # B's Atelectasis row, line 7
    samples = list(load_dataset("vindr", data_root=str(root)))
    errors = [s.error for s in samples if s.error]
    where = f"{root / 'annotations' / 'annotations_test.csv'}, line 7"
    assert errors == [f"{where}: image_id {bad!r} is not a usable identifier (empty, or holds '/', '\\', '..' or a "
                      "control character)"]  # fmt: skip
    assert sum(s.error is None for s in samples) == len(PUBLISHED) - 1


def test_duplicate_rows_are_dropped_with_a_warning(root):
    """A repeated row, and an ILD box repeating an Infiltration box of the same image, count once."""
    repeat = [
        [A, "R9", "Pleural effusion", "20.5", "250.0", "110.0", "330.25"],  # ROWS[0] by another radiologist
        [B, "R8", "ILD", "60.0", "80.0", "160.0", "190.0"],  # B's Infiltration box as ILD
    ]
    _rewrite(root, lambda f: pd.concat([f, pd.DataFrame(repeat, columns=f.columns[:7])], ignore_index=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = _pairs(load_dataset("vindr", data_root=str(root)))
    assert pairs == PUBLISHED
    messages = sorted(str(w.message) for w in caught if "duplicate dropped" in str(w.message))
    assert len(messages) == 2
    assert messages[0].endswith(f"line 19: pair {A}:pleural_effusion has this box already (line 2); duplicate dropped")
    assert messages[1].endswith(f"line 20: pair {B}:pneumonia has this box already (line 9); duplicate dropped")


def test_image_labels_are_required_by_the_published_rule(root):
    (root / "annotations" / "image_labels_test.csv").unlink()
    with pytest.raises(DataError, match=r"image_labels_test\.csv \(beside the annotations\).*-O classes=local"):
        load_dataset("vindr", data_root=str(root))
    assert len(list(load_dataset("vindr", data_root=str(root), classes="local"))) == len(LOCAL)


def test_image_label_file_problems(root):
    _rewrite(root, lambda f: f.drop(columns=["Pneumonia"]), name="image_labels_test.csv")
    with pytest.raises(DataError, match=r"image_labels_test\.csv lacks the column\(s\) Pneumonia"):
        load_dataset("vindr", data_root=str(root))
    write_vindr(root)
    _rewrite(root, lambda f: f.loc.__setitem__((1, "Atelectasis"), "yes"), name="image_labels_test.csv")
    samples = {s.pair_id: s for s in load_dataset("vindr", data_root=str(root))}
    error = samples[f"{B}:pneumonia"].error
    assert "image_labels_test.csv, line 3: column Atelectasis holds 'yes', not a number" in error
    assert sum(s.error is None for s in samples.values()) == len(PUBLISHED) - 1  # B's own classes need no label


def test_missing_column_stops_the_dataset(root):
    _rewrite(root, lambda f: f.pop("x_max"))
    with pytest.raises(DataError, match=r"lacks the column\(s\) x_max"):
        load_dataset("vindr", data_root=str(root))


def test_missing_release_files(tmp_path, root):
    with pytest.raises(DataError, match="needs --data-root"):
        load_dataset("vindr")
    with pytest.raises(DataError, match=r"annotations_test\.csv"):
        load_dataset("vindr", data_root=str(tmp_path))
    (root / "test" / f"{B}.dicom").unlink()
    errors = [s.error for s in load_dataset("vindr", data_root=str(root)) if s.error]
    assert len(errors) == 3  # the three pairs of that image
    assert all(f"{B}.dicom not found" in e for e in errors)


def test_dicom_problems_name_the_file(root):
    """A header value pydicom cannot use, missing pixel data and a blank image (rescale slope 0) are errors of
    that image's pairs naming the DICOM file; the other pairs are unaffected."""
    image_b, image_e = root / "test" / f"{B}.dicom", root / "test" / f"{E}.dicom"
    ds = pydicom.dcmread(image_b)
    ds.RescaleSlope = "7.25"
    ds.save_as(image_b)
    image_b.write_bytes(image_b.read_bytes().replace(b"7.25", b"abcd"))
    ds = pydicom.dcmread(image_e)
    ds.RescaleSlope, ds.RescaleIntercept = "0", "0"
    ds.save_as(image_e)
    image_a = root / "test" / f"{A}.dicom"
    ds = pydicom.dcmread(image_a)
    del ds.PixelData
    ds.save_as(image_a)
    samples = {s.pair_id: s for s in load_dataset("vindr", data_root=str(root))}
    assert {p for p, s in samples.items() if s.error} == {p for p in PUBLISHED if p.startswith(B)}
    assert str(image_b) in samples[f"{B}:atelectasis"].error
    for pair in (f"{A}:cardiomegaly", f"{E}:edema"):
        with pytest.raises(DataError) as caught:
            samples[pair].load_image()
        assert str(root / "test" / f"{pair.split(':')[0]}.dicom") in str(caught.value)
    with pytest.raises(DataError, match="is blank: every pixel is 0 after rescale 0 x"):
        samples[f"{E}:lung_opacity"].load_image()


def test_unreadable_dicom_is_skipped_and_logged(cli, root, tmp_path):
    image = root / "test" / f"{B}.dicom"
    image.write_bytes(image.read_bytes()[:-5000])  # truncated pixel data, header intact
    args = ("run", "-m", "oracle-gaussian", "-d", "vindr", "--data-root", str(root), "--no-progress")
    assert cli(*args, "--n-resamples", "100").returncode == 0  # the oracle never reads pixels
    failed = cli("run", "-m", "center-gaussian", "-d", "vindr", "--data-root", str(root), "--no-progress")
    assert failed.returncode == 2
    assert "pixel data is truncated or corrupt" in failed.stderr
    assert str(image) in failed.stderr
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
        "100",
    )
    assert skipped.returncode == 0, skipped.stderr
    errors = pd.read_csv(next(p for p in (tmp_path / "runs").rglob("errors.csv") if "center" in str(p)))
    assert sorted(errors["pair_id"]) == sorted(p for p in PUBLISHED if p.startswith(B))
    assert set(errors["stage"]) == {"load"}


def test_oracle_on_vindr_fixture_end_to_end(root, tmp_path):
    from cxrbench.benchmark.runner import run_benchmark

    shutil.copytree(root, tmp_path / "copy")
    result = run_benchmark(
        "oracle-gaussian",
        "vindr",
        data_root=str(tmp_path / "copy"),
        out=tmp_path / "runs",
        n_resamples=100,
        progress=False,
    )
    scores = pd.read_csv(result.run_dir / "scores.csv", dtype=str)
    assert sorted(scores["pair_id"]) == sorted(PUBLISHED)
    assert (scores["miou"].astype(float) > 0.5).all()
