"""Fault tests 8 and 10 of the reliability promises (docs/reliability.md), end to end through `cxrbench run`."""

import json

import numpy as np
import pandas as pd
import pydicom

from cxrbench.testing.dicom import write_dicom
from cxrbench.testing.vindr import chest_like, write_vindr

BAD = {"nopreamble": (300, 300), "truncated": (300, 300), "multiframe": (300, 300), "rgb": (300, 300)}


def _vindr_with_bad_files(root):
    good = "00a1b2c3d4e5f60718293a4b5c6d7e8f"
    rows = [(good, "R8", "Atelectasis", (20.0, 150.0, 120.0, 250.0))]
    rows += [(name, "R8", "Cardiomegaly", (100.0, 120.0, 220.0, 230.0)) for name in BAD]
    write_vindr(root, rows=rows, images={good: (400, 320, "MONOCHROME1", None)})
    stored = chest_like(300, 300, 0)
    write_dicom(root / "test" / "nopreamble.dicom", stored, preamble=False)
    full = write_dicom(root / "test" / "truncated.dicom", stored)
    full.write_bytes(full.read_bytes()[:-4000])
    multi = write_dicom(root / "test" / "multiframe.dicom", np.concatenate([stored, stored]))
    ds = pydicom.dcmread(multi)
    ds.NumberOfFrames, ds.Rows = 2, 300
    ds.save_as(multi)
    rgb = write_dicom(root / "test" / "rgb.dicom", stored)
    ds = pydicom.dcmread(rgb)
    ds.PhotometricInterpretation = "RGB"
    ds.save_as(rgb)
    return root


def test_bad_dicom_files_become_error_records_and_the_run_goes_on(cli, tmp_path):
    root = _vindr_with_bad_files(tmp_path / "vindr")
    args = (
        "run",
        "-m",
        "center-gaussian",
        "-d",
        "vindr",
        "--data-root",
        str(root),
        "--no-progress",
        "--n-resamples",
        "100",
    )
    failed = cli(*args)
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    result = cli(*args, "--on-error", "skip")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "vindr" / "center-gaussian"
    errors = pd.read_csv(run / "errors.csv").set_index("pair_id")["error"]
    assert errors["nopreamble:cardiomegaly"].count("not a DICOM file (no DICM preamble)") == 1
    assert "truncated or corrupt" in errors["truncated:cardiomegaly"]
    assert "has 2 frames" in errors["multiframe:cardiomegaly"]
    assert "colour image (RGB)" in errors["rgb:cardiomegaly"]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["n_errors"], summary["n_scored"]) == (4, 1)
    images = pd.read_csv(run / "images.csv")
    record = images.set_index("image_id").loc["00a1b2c3d4e5f60718293a4b5c6d7e8f"]
    assert record["photometric"] == "MONOCHROME1"
    assert record["steps"] == "MONOCHROME1 inverted; min-max to [0, 1]"
    assert record["transfer_syntax"] == pydicom.uid.ExplicitVRLittleEndian


def test_identifiers_round_trip_as_strings_and_negative_rows_are_accepted(cli, tmp_path):
    ids = {
        "00123": (300, 260, "MONOCHROME2", None),
        "NA": (300, 260, "MONOCHROME2", None),
        "None": (300, 260, "MONOCHROME2", None),
    }
    rows = [(i, "R8", "Atelectasis", (30.0, 160.0, 110.0, 240.0)) for i in ids] + [("NA", "R9", "No finding", None)]
    root = write_vindr(tmp_path / "vindr", rows=rows, images=ids)
    result = cli(
        "run", "-m", "oracle-gaussian", "-d", "vindr", "--data-root", str(root), "--no-progress", "--n-resamples", "100"
    )
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(
        tmp_path / "runs" / "vindr" / "oracle-gaussian" / "scores.csv", dtype=str, keep_default_na=False
    )
    assert list(scores["image_id"]) == ["00123", "NA", "None"]
    assert list(scores["pair_id"]) == ["00123:atelectasis", "NA:atelectasis", "None:atelectasis"]
