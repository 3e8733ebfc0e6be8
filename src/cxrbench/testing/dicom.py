"""Real DICOM files written with pydicom, for tests of the DICOM pipeline and the VinDr-CXR adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)


def write_dicom(
    path: Path,
    stored: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    syntax: str = ExplicitVRLittleEndian,
    preamble: bool = True,
) -> Path:
    """Write `stored` (uint16, or int16 for signed) as a one-frame DX image; `syntax` may be a compressed
    transfer syntax that pydicom can encode (RLE, JPEG-LS, JPEG 2000 with the plugins installed)."""
    stored = np.ascontiguousarray(stored)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "cxrbench-test"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = (f"{v:g}" for v in rescale)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = (f"{v:g}" for v in window)
    ds.PixelData = stored.tobytes()
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax, encoding_plugin="pyjpegls" if syntax.startswith("1.2.840.10008.1.2.4.8") else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=preamble)
    return path
