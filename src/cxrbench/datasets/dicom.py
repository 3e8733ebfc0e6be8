"""Reading a radiograph from DICOM, by one of two explicit pipelines with per-image provenance
(docs/datasets.md, "DICOM pixels").

`dicom` (the default): stored values -> modality LUT or rescale slope/intercept -> VOI LUT or window (when the
file has one) -> min-max to [0, 1] -> MONOCHROME1 inversion, float32. The same pixels stored as MONOCHROME1 and
as MONOCHROME2 give the same array.

`published`: the conversion of the published evaluation (vios-s/ldm-phrase-grounding, `data/utils.py`,
`ImgInversion`): the raw `pixel_array` as float64, MONOCHROME1 inverted as max - x, min-max scaled, times 255
and cast to uint8 (truncation), then read back as uint8 / 255 like the JPGs it wrote; no rescale, no VOI LUT.

Compressed transfer syntaxes decode through pydicom's pixel-data plugins (pylibjpeg with its libjpeg, openjpeg
and rle plugins, pyjpegls), installed with cxrbench. Every failure is a DataError naming the file: files without
a DICOM preamble, truncated pixel data, multi-frame and colour images, malformed header values, and blank
images (every pixel equal after decoding, e.g. a rescale slope of 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from cxrbench.errors import DataError, UnknownNameError

Pixels = Literal["dicom", "published"]
PIXELS: tuple[str, ...] = get_args(Pixels)
DECODERS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE
}


@dataclass
class DicomImage:
    """A decoded radiograph and how it was made."""

    pixels: np.ndarray
    transfer_syntax: str
    photometric: str
    steps: list[str] = field(default_factory=list)


def check_pixels(pixels: str) -> str:
    """The `pixels` option, validated."""
    if pixels not in PIXELS:
        raise UnknownNameError(f"unknown pixel conversion pixels={pixels!r}; choose one of {', '.join(PIXELS)}")
    return pixels


def _open(path: Path, header_only: bool) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=header_only)
    except InvalidDicomError as exc:
        raise DataError(f"{path} is not a DICOM file (no DICM preamble): {exc}") from exc
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"cannot read DICOM {'header of ' if header_only else 'file '}{path}: {exc}") from exc


def read_header(path: Path) -> pydicom.Dataset:
    """The header only (no pixel data): enough for the image size."""
    return _open(path, header_only=True)


def image_size(header: pydicom.Dataset, path: Path) -> tuple[int, int]:
    """(rows, columns) from a header."""
    try:
        return int(header.Rows), int(header.Columns)
    except AttributeError as exc:
        raise DataError(f"{path} has no Rows/Columns: not an image") from exc


def pipeline_steps(ds: pydicom.Dataset, pixels: str = "dicom") -> list[str]:
    """The steps `read_dicom` applies to this file, known from its header alone."""
    mono1 = getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1"
    if pixels == "published":
        inverted = ["MONOCHROME1 inverted (max - x)"] if mono1 else []
        return ["stored values", *inverted, "min-max to 0..255, truncated to 8 bits", "/ 255"]
    steps = []
    if "ModalityLUTSequence" in ds:
        steps.append("modality LUT")
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope, intercept = float(getattr(ds, "RescaleSlope", 1)), float(getattr(ds, "RescaleIntercept", 0))
        steps.append(f"rescale {slope:g} x + {intercept:g}")
    if "VOILUTSequence" in ds:
        steps.append("VOI LUT")
    elif "WindowCenter" in ds:
        steps.append("window")
    if mono1:
        steps.append("MONOCHROME1 inverted")
    steps.append("min-max to [0, 1]")
    return steps


def provenance(header: pydicom.Dataset, path: Path, pixels: str = "dicom") -> dict[str, str]:
    """Pixel conversion, transfer syntax, photometric interpretation and pipeline steps, for the run's records."""
    try:
        steps = pipeline_steps(header, pixels)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: unusable rescale slope/intercept in the header ({exc})") from exc
    return {
        "pixels": pixels,
        "transfer_syntax": str(getattr(header.file_meta, "TransferSyntaxUID", "unknown")),
        "photometric": str(getattr(header, "PhotometricInterpretation", "")),
        "steps": "; ".join(steps),
    }


def published_uint8(stored: np.ndarray, photometric: str) -> np.ndarray:
    """`ImgInversion` of the published code, operation for operation (float64, then truncation to uint8)."""
    data = stored.astype(float)
    if photometric == "MONOCHROME1":
        data = np.amax(data) - data
    data = data - np.min(data)
    data = data / np.max(data)
    return (data * 255).astype(np.uint8)


def read_dicom(path: Path, pixels: str = "dicom") -> DicomImage:
    """The chosen pipeline above; raises DataError naming the file for anything it cannot use."""
    try:
        return _decode(path, check_pixels(pixels))
    except DataError:
        raise
    except Exception as exc:  # pydicom's LUT and pixel code raise many types on malformed headers
        raise DataError(f"cannot decode DICOM file {path}: {type(exc).__name__}: {exc}") from exc


def _decode(path: Path, pixels: str) -> DicomImage:
    ds = _open(path, header_only=False)
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "unknown"))
    photometric = str(getattr(ds, "PhotometricInterpretation", ""))
    if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
        raise DataError(f"{path} has {ds.NumberOfFrames} frames; a radiograph has one")
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(f"{path} is a colour image ({photometric or 'unknown'}); a radiograph is MONOCHROME1/2")
    try:
        stored = np.asarray(ds.pixel_array)
    except (NotImplementedError, RuntimeError) as exc:
        plugin = DECODERS.get(syntax, "a pydicom pixel-data plugin")
        raise DataError(f"cannot decode {path} (transfer syntax {syntax}): install {plugin}; {exc}") from exc
    except (ValueError, EOFError, OSError) as exc:
        raise DataError(f"{path}: pixel data is truncated or corrupt ({exc})") from exc
    steps = pipeline_steps(ds, pixels)
    if pixels == "published":
        _check_not_blank(stored, path, "stored values")
        image = published_uint8(stored, photometric).astype(np.float32) / np.float32(255)
        return DicomImage(image, syntax, photometric, steps)
    values = stored
    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds:
        values = apply_modality_lut(values, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        values = apply_voi_lut(values, ds, index=0)
    values = values.astype(np.float64)
    _check_not_blank(values, path, "; ".join(steps[:-1]) or "stored values")
    lo, hi = float(values.min()), float(values.max())
    image = (values - lo) / (hi - lo)
    if photometric == "MONOCHROME1":
        image = 1.0 - image
    return DicomImage(image.astype(np.float32), syntax, photometric, steps)


def _check_not_blank(values: np.ndarray, path: Path, after: str) -> None:
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        raise DataError(f"{path} is blank: every pixel is {lo:g} after {after}; nothing to score")
