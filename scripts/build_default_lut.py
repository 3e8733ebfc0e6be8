"""Build cxrbench's packaged default location table from public data only (docs/anatomy.md).

Source: `torchxrayvision/data/semantic_masks_v7labs_lungs.zip` inside the torchxrayvision wheel on PyPI
(517 binary lung-field masks of real frontal chest radiographs, both lungs per mask). For each mask the two
largest connected components are the lungs (image-left = patient right). From them this script derives, in
the Chest ImaGenome naming, the boxes that the LUT needs, then builds the table with the same `build_lut` a
user runs on the ImaGenome gold file:

- "{side} lung": the component's bounding box;
- "{side} upper / mid / lower lung zone": the component's pixels in the top, middle and bottom third of its
  height; "{side} apical zone": the top 20 %;
- "{side} costophrenic angle": the component's pixels in the bottom 15 % of its height and the lateral 40 %
  of its width;
- "cardiac silhouette": lung masks often include the lung behind the heart, so the heart is placed by normal
  adult proportions instead: width = 0.45 x the thoracic width (outer lung edges; cardiothoracic ratio), one
  third of it to the patient's right of the midline between the lungs, two thirds to the left, vertically
  from 45 % to 92 % of the lungs' height.

Usage:
    pip download --no-deps torchxrayvision==1.5.7 -d /tmp/txrv
    python scripts/build_default_lut.py /tmp/txrv/torchxrayvision-1.5.7-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from cxrbench.anatomy.lut import NamedBox, build_lut
from cxrbench.types import Box

MASKS = "torchxrayvision/data/semantic_masks_v7labs_lungs.zip"
CARDIOTHORACIC_RATIO = 0.45
OUT = Path(__file__).resolve().parents[1] / "src/cxrbench/anatomy/data/default_lut.json"


def _bbox(mask: np.ndarray) -> Box | None:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return Box(float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))


def _band(lung: np.ndarray, top: float, bottom: float, lateral: float | None = None, side: str = "") -> Box | None:
    box = _bbox(lung)
    height, width = box.y_max - box.y_min, box.x_max - box.x_min
    band = np.zeros_like(lung)
    r0, r1 = int(box.y_min + top * height), int(np.ceil(box.y_min + bottom * height))
    c0, c1 = int(box.x_min), int(box.x_max)
    if lateral is not None:
        if side == "right":
            c1 = int(np.ceil(box.x_min + lateral * width))
        else:
            c0 = int(box.x_max - lateral * width)
    band[r0:r1, c0:c1] = lung[r0:r1, c0:c1]
    return _bbox(band)


def _heart(right: np.ndarray, left: np.ndarray) -> Box:
    r, lft = _bbox(right), _bbox(left)
    top = min(r.y_min, lft.y_min)
    height = max(r.y_max, lft.y_max) - top
    midline = (r.x_max + lft.x_min) / 2
    heart = CARDIOTHORACIC_RATIO * (lft.x_max - r.x_min)
    return Box(midline - heart / 3, top + 0.45 * height, midline + 2 * heart / 3, top + 0.92 * height)


def boxes_of_mask(name: str, mask: np.ndarray) -> list[NamedBox]:
    labels, n = ndimage.label(mask)
    if n < 2:
        return []
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    first, second = (np.argsort(sizes)[::-1][:2] + 1).tolist()
    if sizes[second - 1] < 0.25 * sizes[first - 1]:
        return []
    a, b = labels == first, labels == second
    right, left = (a, b) if _bbox(a).x_min < _bbox(b).x_min else (b, a)
    height, width = mask.shape
    found = {"right lung": _bbox(right), "left lung": _bbox(left), "cardiac silhouette": _heart(right, left)}
    for side, lung in (("right", right), ("left", left)):
        found[f"{side} upper lung zone"] = _band(lung, 0.0, 1 / 3)
        found[f"{side} mid lung zone"] = _band(lung, 1 / 3, 2 / 3)
        found[f"{side} lower lung zone"] = _band(lung, 2 / 3, 1.0)
        found[f"{side} apical zone"] = _band(lung, 0.0, 0.2)
        found[f"{side} costophrenic angle"] = _band(lung, 0.85, 1.0, lateral=0.4, side=side)
    return [NamedBox(name, key, box, height, width) for key, box in found.items() if box is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", type=Path, help="the torchxrayvision wheel (pip download --no-deps torchxrayvision)")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel:
        data = wheel.read(MASKS)
    boxes, used, total = [], 0, 0
    with zipfile.ZipFile(io.BytesIO(data)) as masks:
        for name in sorted(masks.namelist()):
            if name.endswith("/"):
                continue
            total += 1
            mask = np.asarray(Image.open(io.BytesIO(masks.read(name))).convert("L")) > 127
            found = boxes_of_mask(name, mask)
            used += bool(found)
            boxes.extend(found)
    source = (
        f"derived from {used} of {total} lung masks in {MASKS} of {args.wheel.name} "
        f"(zip sha256 {hashlib.sha256(data).hexdigest()[:16]}) by scripts/build_default_lut.py"
    )
    table = build_lut(boxes, source=source)
    args.output.write_text(table.to_json(), encoding="utf-8")
    print(f"{source}\nwrote {args.output}")


if __name__ == "__main__":
    main()
