"""The DICOM pipeline against hand-computed pixels, every compressed syntax, and the files it must refuse."""

import io
import re
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


def _published_by_hand(stored: np.ndarray, monochrome1: bool) -> tuple[np.ndarray, np.ndarray]:
    """The published 8-bit conversion restated in exact integer arithmetic: floor(255 * d / (max - min)) with
    d = max - x for MONOCHROME1 and x - min for MONOCHROME2; returns (value, remainder)."""
    x = stored.astype(np.int64)
    lo, hi = int(x.min()), int(x.max())
    d = hi - x if monochrome1 else x - lo
    return (255 * d) // (hi - lo), (255 * d) % (hi - lo)


def _assert_published(pixels: np.ndarray, stored: np.ndarray, monochrome1: bool) -> None:
    assert pixels.dtype == np.float32
    levels = np.rint(pixels.astype(np.float64) * 255)
    np.testing.assert_array_equal(pixels, levels.astype(np.float32) / np.float32(255))  # 8-bit levels, read / 255
    expected, remainder = _published_by_hand(stored, monochrome1)
    # float64 division may land a hair below an exact integer quotient; only there may it truncate one lower
    exact = levels == expected
    assert np.all(exact | ((remainder == 0) & (levels == expected - 1)))
    assert exact.mean() > 0.999


@pytest.mark.parametrize("bits", [12, 15, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_published_conversion_against_integer_restatement(tmp_path, bits, photometric):
    """pixels=published: raw stored values, MONOCHROME1 inverted, min-max to 0..255 truncated to 8 bits; the
    file's rescale and window are ignored (the published JPGs were made without them)."""
    rng = np.random.default_rng(bits)
    stored = rng.integers(0, 2**bits, size=(70, 50)).astype(np.uint16)
    stored[0, 0], stored[-1, -1] = 0, 2**bits - 1  # the full range of the bit depth
    stored[1:9, 1:9] = 2 ** (bits - 1)  # ties: 255 * d is a multiple of the range here
    header = {"bits_stored": bits, "rescale": (2, -9), "window": (2**bits, 2**bits)}
    path = write_dicom(tmp_path / "p.dcm", stored, photometric, **header)
    image = read_dicom(path, pixels="published")
    _assert_published(image.pixels, stored, photometric == "MONOCHROME1")
    assert image.steps[0] == "stored values"
    assert ("MONOCHROME1 inverted (max - x)" in image.steps) == (photometric == "MONOCHROME1")
    # the default pipeline applies the rescale and the window: another image
    assert not np.allclose(read_dicom(path).pixels, image.pixels, atol=0.01)


def test_published_conversion_of_a_real_radiograph():
    """NEMA WG04 RG1 (real CR, MONOCHROME1, 15 bits stored), its stored values read from the raw bytes."""
    path = DATA_STORE / "RG1_UNCR.dcm"
    ds = pydicom.dcmread(path)
    assert (ds.BitsStored, ds.PixelRepresentation) == (15, 0)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    stored = np.frombuffer(ds.PixelData, dtype="<u2").reshape(ds.Rows, ds.Columns)
    pixels = read_dicom(path, pixels="published").pixels
    _assert_published(pixels, stored, monochrome1=True)


@pytest.mark.parametrize("pixels", ["dicom", "published"])
def test_blank_image_is_an_error_naming_the_file(tmp_path, stored, pixels):
    """A rescale slope of 0 makes every pixel equal: an error, not a black image scored."""
    zero_slope = write_dicom(tmp_path / "zero.dcm", stored, rescale=(0, 100))
    flat = write_dicom(tmp_path / "flat.dcm", np.full((20, 30), 1234, dtype=np.uint16))
    if pixels == "dicom":
        with pytest.raises(DataError, match=r"zero\.dcm is blank: every pixel is 100 after rescale 0 x \+ 100"):
            read_dicom(zero_slope, pixels)
    with pytest.raises(DataError, match=r"flat\.dcm is blank: every pixel is 1234"):
        read_dicom(flat, pixels)


def _with_text(tmp_path, name, stored, rescale=None, window=None, old=b"7.25", new=b"abcd"):
    path = write_dicom(tmp_path / name, stored, rescale=rescale, window=window)
    path.write_bytes(path.read_bytes().replace(old, new))
    return path


def _edited(path, edit):
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp, s: _with_text(tmp, "slope.dcm", s, rescale=(7.25, 0)),  # RescaleSlope "abcd"
        lambda tmp, s: _with_text(tmp, "window.dcm", s, window=(7.25, 100)),  # WindowCenter "abcd"
        lambda tmp, s: write_dicom(tmp / "width0.dcm", s, window=(100, 0)),  # window width below 1
        lambda tmp, s: _edited(write_dicom(tmp / "nopixels.dcm", s), lambda ds: delattr(ds, "PixelData")),
        lambda tmp, s: _edited(write_dicom(tmp / "nobits.dcm", s), lambda ds: delattr(ds, "BitsAllocated")),
    ],
    ids=["rescale-slope-text", "window-centre-text", "window-width-0", "no-pixel-data", "no-bits-allocated"],
)
def test_malformed_headers_are_errors_naming_the_file(tmp_path, stored, make):
    path = make(tmp_path, stored)
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_dicom(path)
