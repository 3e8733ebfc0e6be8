"""The DICOM pipeline against hand-computed pixels, every compressed syntax, and the files it must refuse."""

import io
from pathlib import Path

import data_store  # the registry package pydicom-data: NEMA WG04 test images
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

from cxrbench.datasets.dicom import read_dicom
from cxrbench.errors import DataError
from cxrbench.testing.dicom import write_dicom

DATA_STORE = Path(data_store.__file__).parent / "data"


def _minmax(x):
    x = np.asarray(x, dtype=np.float64)
    return (x - x.min()) / (x.max() - x.min())


@pytest.fixture
def stored():
    return (np.random.default_rng(0).random((64, 48)) * 4095).astype(np.uint16)


def test_monochrome1_and_monochrome2_give_the_same_array(tmp_path, stored):
    mono2 = read_dicom(write_dicom(tmp_path / "a.dcm", stored, "MONOCHROME2"))
    mono1 = read_dicom(write_dicom(tmp_path / "b.dcm", (4095 - stored).astype(np.uint16), "MONOCHROME1"))
    np.testing.assert_allclose(mono1.pixels, mono2.pixels, atol=1e-6)
    np.testing.assert_allclose(mono2.pixels, _minmax(stored), atol=1e-6)
    assert mono1.steps[-2:] == ["MONOCHROME1 inverted", "min-max to [0, 1]"]


def test_negative_rescale_slope(tmp_path, stored):
    image = read_dicom(write_dicom(tmp_path / "r.dcm", stored, rescale=(-2.0, 100.0)))
    np.testing.assert_allclose(image.pixels, _minmax(-2.0 * stored.astype(np.float64) + 100.0), atol=1e-6)
    assert image.steps[0] == "rescale -2 x + 100"
    assert image.pixels[stored == stored.max()].max() == 0.0  # the brightest stored value is now the darkest


def test_window_centre_and_width(tmp_path, stored):
    centre, width = 1800.0, 1200.0
    image = read_dicom(write_dicom(tmp_path / "w.dcm", stored, window=(centre, width)))
    x = stored.astype(np.float64)
    expected = np.clip((x - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)  # DICOM PS3.3 C.11.2.1.2.1 linear
    np.testing.assert_allclose(image.pixels, _minmax(expected), atol=1e-4)
    assert "window" in image.steps


def test_voi_lut_sequence(tmp_path, stored):
    path = write_dicom(tmp_path / "v.dcm", stored)
    ds = pydicom.dcmread(path)
    first, table = 500, (np.sqrt(np.arange(3000)) * 100).astype(np.uint16)
    item = pydicom.Dataset()
    item.LUTDescriptor = [len(table), first, 16]
    item.add_new(0x00283006, "OW", table.astype("<u2").tobytes())  # LUTData
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path)
    image = read_dicom(path)
    expected = table[np.clip(stored.astype(int) - first, 0, len(table) - 1)]
    np.testing.assert_allclose(image.pixels, _minmax(expected), atol=1e-6)
    assert image.steps[0] == "VOI LUT"


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda s: s.name)
def test_lossless_syntaxes_decode_exactly(tmp_path, stored, syntax):
    reference = read_dicom(write_dicom(tmp_path / "u.dcm", stored)).pixels
    image = read_dicom(write_dicom(tmp_path / "c.dcm", stored, syntax=syntax))
    assert image.transfer_syntax == syntax
    np.testing.assert_array_equal(image.pixels, reference)


def test_jpeg_baseline_within_codec_tolerance(tmp_path):
    gray = (np.random.default_rng(1).random((64, 48)) * 40 + np.linspace(0, 200, 48)).astype(np.uint8)
    path = write_dicom(tmp_path / "u8.dcm", gray.astype(np.uint16), bits_stored=8)
    ds = pydicom.dcmread(path)
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="JPEG", quality=95)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    image = read_dicom(path)
    assert image.transfer_syntax == JPEGBaseline8Bit
    assert np.abs(image.pixels - _minmax(gray)).mean() < 0.02


def test_real_radiograph_in_four_encodings():
    """NEMA WG04 RG1: a real frontal chest CR, MONOCHROME1, stored uncompressed and as JPEG 2000."""
    reversible = read_dicom(DATA_STORE / "RG1_UNCR.dcm")
    assert reversible.photometric == "MONOCHROME1"
    assert reversible.pixels.shape == (1955, 1841)
    np.testing.assert_array_equal(read_dicom(DATA_STORE / "RG1_J2KR.dcm").pixels, reversible.pixels)
    irreversible = read_dicom(DATA_STORE / "RG1_UNCI.dcm").pixels
    lossy = read_dicom(DATA_STORE / "RG1_J2KI.dcm").pixels
    assert np.abs(lossy - irreversible).max() < 0.02  # lossy JPEG 2000: the same image within the codec error
    # MONOCHROME1 inverted: the lung fields (dark on screen) are darker than the mediastinum
    h, w = reversible.pixels.shape
    assert reversible.pixels[h // 3, w // 4] < reversible.pixels[h // 3, w // 2]


def test_refused_files_name_the_file(tmp_path, stored):
    no_preamble = write_dicom(tmp_path / "np.dcm", stored, preamble=False)
    with pytest.raises(DataError, match=r"np\.dcm is not a DICOM file"):
        read_dicom(no_preamble)
    full = write_dicom(tmp_path / "t.dcm", stored)
    truncated = tmp_path / "trunc.dcm"
    truncated.write_bytes(full.read_bytes()[:-1000])
    with pytest.raises(DataError, match=r"trunc\.dcm"):
        read_dicom(truncated)
    multi = write_dicom(tmp_path / "m.dcm", np.concatenate([stored, stored]))
    ds = pydicom.dcmread(multi)
    ds.NumberOfFrames, ds.Rows = 2, stored.shape[0]
    ds.save_as(multi)
    with pytest.raises(DataError, match=r"m\.dcm has 2 frames"):
        read_dicom(multi)
    rgb = write_dicom(tmp_path / "rgb.dcm", stored)
    ds = pydicom.dcmread(rgb)
    ds.PhotometricInterpretation = "RGB"
    ds.save_as(rgb)
    with pytest.raises(DataError, match=r"rgb\.dcm is a colour image"):
        read_dicom(rgb)
