"""Image sources for file-based datasets: decoded on demand, fingerprinted by content and conversion."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrbench.datasets.dicom import read_dicom
from cxrbench.errors import DataError
from cxrbench.hashing import sha256_file
from cxrbench.types import ImageSource


def file_fingerprint(path: str) -> str:
    """sha256 of the file's bytes; an unreadable file is a DataError naming it."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc.strerror}") from exc


@lru_cache(maxsize=4)
def _dicom_pixels(path: str, pixels: str) -> np.ndarray:
    """The last few decoded DICOMs are kept: an image's pairs follow each other, so each decodes once."""
    return read_dicom(Path(path), pixels).pixels


def load_jpg(path: Path) -> np.ndarray:
    """A JPG/PNG radiograph as float32 grayscale in [0, 1] (intensities / 255); a blank image is refused."""
    try:
        with Image.open(path) as image:
            gray = image.convert("L") if image.mode not in ("L", "I;16", "I") else image
            array = np.asarray(gray)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    if array.size == 0 or array.min() == array.max():
        raise DataError(f"{path} is blank: every pixel is {array.min() if array.size else 'absent'}; nothing to score")
    scale = 65535.0 if array.dtype == np.uint16 or array.max() > 255 else 255.0
    return (array.astype(np.float32) / scale).astype(np.float32)


def jpg_source(path: Path) -> ImageSource:
    return ImageSource(lambda: load_jpg(path), lambda: file_fingerprint(str(path)), str(path))


def dicom_source(path: Path, provenance: dict[str, str], pixels: str = "dicom") -> ImageSource:
    """A DICOM image decoded by the `pixels` pipeline; the fingerprint names a non-default pipeline, so heatmaps
    cached for one conversion are never reused for the other."""

    def fingerprint() -> str:
        digest = file_fingerprint(str(path))
        return digest if pixels == "dicom" else f"{digest}:pixels={pixels}"

    return ImageSource(lambda: _dicom_pixels(str(path), pixels), fingerprint, str(path), provenance)
