"""Reading a radiograph from DICOM: one explicit pipeline with per-image provenance.

stored values -> modality LUT or rescale slope/intercept -> VOI LUT or window (when the file has one)
-> MONOCHROME1 inversion -> min-max to float32 [0, 1].

The last step follows the common VinDr-CXR conversion (apply VOI, invert MONOCHROME1, min-max), so the same
pixels stored as MONOCHROME1 and as MONOCHROME2 give the same array. Compressed transfer syntaxes decode
through pydicom's pixel-data plugins (pylibjpeg with its libjpeg, openjpeg and rle plugins, pyjpegls),
installed with cxrbench. Multi-frame and colour images, files without a DICOM preamble and truncated pixel
data are refused with a message naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from cxrbench.errors import DataError

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


def read_header(path: Path) -> pydicom.Dataset:
    """The header only (no pixel data): enough for the image size."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise DataError(f"{path} is not a DICOM file (no DICM preamble): {exc}") from exc
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"cannot read DICOM header of {path}: {exc}") from exc


def image_size(header: pydicom.Dataset, path: Path) -> tuple[int, int]:
    """(rows, columns) from a header."""
    try:
        return int(header.Rows), int(header.Columns)
    except AttributeError as exc:
        raise DataError(f"{path} has no Rows/Columns: not an image") from exc


def pipeline_steps(ds: pydicom.Dataset) -> list[str]:
    """The steps `read_dicom` applies to this file, known from its header alone."""
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
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        steps.append("MONOCHROME1 inverted")
    steps.append("min-max to [0, 1]")
    return steps


def provenance(header: pydicom.Dataset) -> dict[str, str]:
    """Transfer syntax, photometric interpretation and pipeline steps, for the run's records."""
    return {
        "transfer_syntax": str(getattr(header.file_meta, "TransferSyntaxUID", "unknown")),
        "photometric": str(getattr(header, "PhotometricInterpretation", "")),
        "steps": "; ".join(pipeline_steps(header)),
    }


def read_dicom(path: Path) -> DicomImage:
    """The DICOM pipeline above; raises DataError naming the file for anything it cannot use."""
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise DataError(f"{path} is not a DICOM file (no DICM preamble): {exc}") from exc
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"cannot read DICOM file {path}: {exc}") from exc
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "unknown"))
    photometric = str(getattr(ds, "PhotometricInterpretation", ""))
    if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
        raise DataError(f"{path} has {ds.NumberOfFrames} frames; a radiograph has one")
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(f"{path} is a colour image ({photometric or 'unknown'}); a radiograph is MONOCHROME1/2")
    try:
        stored = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        plugin = DECODERS.get(syntax, "a pydicom pixel-data plugin")
        raise DataError(f"cannot decode {path} (transfer syntax {syntax}): install {plugin}; {exc}") from exc
    except (ValueError, EOFError, OSError) as exc:
        raise DataError(f"{path}: pixel data is truncated or corrupt ({exc})") from exc
    values = np.asarray(stored)
    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds:
        values = apply_modality_lut(values, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        values = apply_voi_lut(values, ds, index=0)
    values = values.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    pixels = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    return DicomImage(pixels.astype(np.float32), syntax, photometric, pipeline_steps(ds))
