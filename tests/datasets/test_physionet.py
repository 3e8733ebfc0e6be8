"""PhysioNet download layouts read as they lie, and `cxrbench datasets verify` against SHA256SUMS.txt
(docs/datasets.md, "Where the downloads lie", "Verifying a download")."""

import hashlib
import shutil

import pytest

from cxrbench.datasets.mimic import curate_tuning_set
from cxrbench.datasets.verify import read_sums
from cxrbench.errors import DataError
from cxrbench.registry import load_dataset
from cxrbench.testing.mimic import write_mimic, write_physionet_mimic
from cxrbench.testing.mscxr import IMAGES, image_path, write_mscxr, write_physionet_mscxr
from cxrbench.testing.vindr import write_physionet_vindr, write_vindr


def _pairs(dataset):
    return sorted((s.pair_id, s.prompt, tuple(b.as_tuple() for b in s.boxes), s.error) for s in dataset)


def _images(dataset):
    return sorted({s.image.description for s in dataset if s.error is None})


@pytest.fixture
def mirror(tmp_path):
    """physionet.org/ holding MS-CXR 1.1.0 and MIMIC-CXR-JPG 2.1.0."""
    write_physionet_mscxr(tmp_path / "physionet.org")
    return tmp_path / "physionet.org"


def test_mscxr_reads_the_download_as_it_lies(mirror, tmp_path):
    reference = _pairs(load_dataset("mscxr", data_root=str(write_mscxr(tmp_path / "by-hand"))))
    project, jpgs = mirror / "files/ms-cxr/1.1.0", mirror / "files/mimic-cxr-jpg/2.1.0"
    for data_root, options in (
        (mirror, {}),  # the whole download: newest ms-cxr and mimic-cxr-jpg versions
        (project, {"images": str(jpgs)}),  # the version roots
        (project, {"images": str(jpgs / "files")}),  # the image tree's files/ itself
        (project, {"images": str(mirror)}),
    ):
        dataset = load_dataset("mscxr", data_root=str(data_root), **options)
        assert _pairs(dataset) == reference
        assert _images(dataset) == sorted(str(jpgs / image_path(d)) for d in IMAGES)
        for sample in dataset:
            assert sample.load_image().shape == (sample.height, sample.width)


def test_newest_physionet_version_wins(mirror):
    older = mirror / "files/ms-cxr/0.9.0"
    older.mkdir()
    shutil.copy(mirror / "files/ms-cxr/1.1.0/MS_CXR_Local_Alignment_v1.1.0.csv", older)
    assert (
        load_dataset("mscxr", data_root=str(mirror)).csv
        == mirror / "files/ms-cxr/1.1.0/MS_CXR_Local_Alignment_v1.1.0.csv"
    )
    assert load_dataset("mscxr", data_root=str(mirror / "files/ms-cxr")).csv.parent.name == "1.1.0"


def test_vindr_and_mimic_read_the_download_as_it_lies(tmp_path):
    reference = _pairs(load_dataset("vindr", data_root=str(write_vindr(tmp_path / "by-hand"))))
    root = write_physionet_vindr(tmp_path / "physionet.org")
    for data_root in (tmp_path / "physionet.org", root):
        assert _pairs(load_dataset("vindr", data_root=str(data_root))) == reference
    expected = curate_tuning_set(write_mimic(tmp_path / "mimic-by-hand"))
    jpgs, reports = write_physionet_mimic(tmp_path / "mimic-mirror")
    assert not list(jpgs.glob("files/p*/p*/*.txt")) and list(reports.glob("files/p*/p*/*.txt"))
    assert curate_tuning_set(tmp_path / "mimic-mirror").equals(expected)
    assert curate_tuning_set(jpgs, reports=reports).equals(expected)


def test_release_records_project_version_and_annotation_hash(mirror, tmp_path):
    csv = mirror / "files/ms-cxr/1.1.0/MS_CXR_Local_Alignment_v1.1.0.csv"
    assert load_dataset("mscxr-loc", data_root=str(mirror)).release() == {
        "project": "ms-cxr",
        "version": "1.1.0",
        "annotations": csv.name,
        "annotations_sha256": hashlib.sha256(csv.read_bytes()).hexdigest(),
    }
    by_hand = load_dataset("mscxr", data_root=str(write_mscxr(tmp_path / "by-hand")))
    assert by_hand.release()["project"] is None and by_hand.release()["version"] == "1.1.0"  # from the file name
    vindr = load_dataset("vindr", data_root=str(write_physionet_vindr(tmp_path / "v" / "physionet.org")))
    assert (vindr.release()["project"], vindr.release()["version"]) == ("vindr-cxr", "1.0.0")


def test_verify_passes_a_clean_download(cli, mirror):
    result = cli("datasets", "verify", "mscxr", "--data-root", str(mirror))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    # the CSV and the 3 images MS-CXR uses; MIMIC-CXR-JPG's other files are not the dataset's
    assert "4 files, 4 ok, 0 mismatch, 0 missing, 0 extra, 0 unchecked" in result.stderr
    assert "release: ms-cxr 1.1.0, MS_CXR_Local_Alignment_v1.1.0.csv sha256 " in result.stderr


def test_verify_reports_corrupt_missing_and_unlisted_files(cli, mirror):
    jpgs = mirror / "files/mimic-cxr-jpg/2.1.0"
    first, second, third = (jpgs / image_path(d) for d in IMAGES)
    first.write_bytes(first.read_bytes()[:-100])  # truncated download
    second.unlink()
    sums = jpgs / "SHA256SUMS.txt"
    kept = [line for line in sums.read_text().splitlines() if not line.endswith(third.relative_to(jpgs).as_posix())]
    sums.write_text("\n".join(kept) + "\n")
    result = cli("datasets", "verify", "mscxr-loc", "--data-root", str(mirror))
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"mismatch  {first} ({sums})",
        f"missing   {second} ({sums})",
        f"extra     {third} ({sums})",
    ]
    assert "4 files, 1 ok, 1 mismatch, 1 missing, 1 extra, 0 unchecked" in result.stderr
    assert (
        result.stderr.splitlines()[-1] == "error: mscxr-loc: 1 file(s) differ from and 1 are missing from the download"
    )


def test_verify_vindr_and_files_without_sums(cli, tmp_path):
    root = write_physionet_vindr(tmp_path / "physionet.org")
    clean = cli("datasets", "verify", "vindr", "--data-root", str(tmp_path / "physionet.org"))
    assert clean.returncode == 0, clean.stderr
    assert "5 files, 5 ok" in clean.stderr  # two tables and the DICOMs of A, B, E (C and D make no pair)
    (root / "SHA256SUMS.txt").unlink()
    unchecked = cli("datasets", "verify", "vindr", "--data-root", str(root), "-O", "classes=local")
    assert unchecked.returncode == 2, unchecked.stderr
    assert "4 files, 0 ok, 0 mismatch, 0 missing, 0 extra, 4 unchecked; checked against no SHA256SUMS.txt" in (
        unchecked.stderr
    )
    error = unchecked.stderr.splitlines()[-1]
    assert error.startswith("error: vindr: 4 file(s) have no SHA256SUMS.txt in any folder above them")
    assert error.endswith(
        f"download https://physionet.org/files/vindr-cxr/1.0.0/SHA256SUMS.txt to {root / 'SHA256SUMS.txt'}"
    )


def test_verify_names_the_missing_sums_of_each_project_and_of_a_tree_laid_out_by_hand(cli, mirror, tmp_path):
    """MS-CXR reads two projects: without MIMIC-CXR-JPG's SHA256SUMS.txt its images are not verified, and the
    error says where that file belongs and where PhysioNet publishes it; a tree laid out by hand gets the rule."""
    jpgs = mirror / "files/mimic-cxr-jpg/2.1.0"
    (jpgs / "SHA256SUMS.txt").unlink()
    result = cli("datasets", "verify", "mscxr", "--data-root", str(mirror))
    assert result.returncode == 2
    assert "4 files, 1 ok, 0 mismatch, 0 missing, 0 extra, 3 unchecked" in result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        f"download https://physionet.org/files/mimic-cxr-jpg/2.1.0/SHA256SUMS.txt to {jpgs / 'SHA256SUMS.txt'}"
    )
    by_hand = write_mscxr(tmp_path / "by-hand")
    result = cli("datasets", "verify", "mscxr", "--data-root", str(by_hand))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = result.stderr.splitlines()[-1]
    assert "4 file(s) have no SHA256SUMS.txt in any folder above them" in error and str(by_hand) in error
    assert "https://physionet.org/files/<project>/<version>/SHA256SUMS.txt" in error


def test_a_malformed_sums_file_names_its_line(tmp_path):
    path = tmp_path / "SHA256SUMS.txt"
    path.write_text(f"{'a' * 64}  LICENSE.txt\nnot a checksum line\n")
    with pytest.raises(DataError, match=r"SHA256SUMS\.txt, line 2 is not '<sha256>  <path>'"):
        read_sums(path)
