"""Image loading speed (issue: datasets). Prints numbers; not a test.

Writes a few radiograph-sized files in the real formats (MIMIC-CXR-JPG: 8-bit JPG 3056 x 2544; VinDr-CXR:
12-bit DICOM 3000 x 2500 uncompressed and JPEG 2000 lossless), then times cxrbench's loaders: one image at a
time, and through a 2-thread pool as the runner prefetches.

Usage: python benchmarks/load_speed.py [--images 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import JPEG2000Lossless

from cxrbench.datasets.dicom import read_dicom
from cxrbench.datasets.images import load_jpg
from cxrbench.testing.dicom import write_dicom
from cxrbench.testing.vindr import chest_like


def _time(paths: list[Path], load, workers: int) -> float:
    start = time.perf_counter()
    if workers == 1:
        for p in paths:
            load(p)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(load, paths))
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stored = chest_like(3000, 2500, 0)
        jpg = (stored >> 4).astype(np.uint8)[:3056, :2544]
        formats = {
            "JPG 3000x2500 (MIMIC-CXR-JPG)": ([], lambda p: load_jpg(p)),
            "DICOM 3000x2500 uncompressed": ([], lambda p: read_dicom(p).pixels),
            "DICOM 3000x2500 JPEG 2000 lossless": ([], lambda p: read_dicom(p).pixels),
        }
        for i in range(args.images):
            path = folder / f"{i}.jpg"
            Image.fromarray(jpg).save(path, quality=95)
            formats["JPG 3000x2500 (MIMIC-CXR-JPG)"][0].append(path)
            formats["DICOM 3000x2500 uncompressed"][0].append(write_dicom(folder / f"{i}.dcm", stored))
            formats["DICOM 3000x2500 JPEG 2000 lossless"][0].append(
                write_dicom(folder / f"{i}-j2k.dcm", stored, syntax=JPEG2000Lossless)
            )
        for name, (paths, load) in formats.items():
            one, two = _time(paths, load, 1), _time(paths, load, 2)
            print(f"{name:<38} {one:6.2f} images/s ({1000 / one:5.0f} ms each), 2 threads {two:6.2f} images/s")


if __name__ == "__main__":
    main()
