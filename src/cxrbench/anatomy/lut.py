"""The Gaussian look-up table (LUT) of the 27 locations and squared 2-Wasserstein matching (docs/anatomy.md, section 5).

Frame: a 512 x 512 grid laid over the centred min(H, W) square of the image (the square a method sees after
"resize the shorter side to 512, centre crop"), x to the right, y down. A box maps to mu = its centre and
sigma = (max - min) / k per axis. Radiological convention: the patient's RIGHT is on the IMAGE's LEFT, so
"right ..." entries sit at small x.

The table is built from Chest ImaGenome gold boxes (`build_lut`): each location's boxes come from the
ImaGenome names in `IMAGENOME_NAMES`; "bilateral X" and "pulmonary" use, per image, the box enclosing both
sides' boxes; every location's Gaussian is the mean of its boxes' (mu, sigma). "base" and "pleural" map to
the lower lung zone (docs/anatomy.md, section 5.2), so they share that zone's Gaussian: on an exact W2 tie
`nearest_location` returns the first location in `LOCATIONS` order ("... lower" before "... base").
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from cxrbench.anatomy.vocabulary import LOCATIONS, SIDES, ZONES, location_name
from cxrbench.baselines.gaussians import gaussian_map
from cxrbench.errors import CxrbenchError, DataError
from cxrbench.types import Box

LUT_SIZE = 512
DEFAULT_K = 3.0
_ZONE_NAMES = {
    "": "lung",
    "apical": "apical zone",
    "upper": "upper lung zone",
    "middle": "mid lung zone",
    "lower": "lower lung zone",
    "costophrenic": "costophrenic angle",
    "pleural": "lower lung zone",
    "base": "lower lung zone",
}


def _imagenome_names() -> dict[str, tuple[tuple[str, ...], ...]]:
    """location -> groups of ImaGenome bbox names; one box per group per image (a group of two = their union)."""
    names: dict[str, tuple[tuple[str, ...], ...]] = {}
    for zone in ZONES:
        part = _ZONE_NAMES[zone]
        for side in ("left", "right"):
            names[location_name(side, zone)] = ((f"{side} {part}",),)
        names[location_name("bilateral", zone)] = ((f"right {part}", f"left {part}"),)
    names["lingular"] = (("left mid lung zone",),)
    names["cardiomegaly"] = (("cardiac silhouette",),)
    names["pulmonary"] = (("right lung", "left lung"),)
    return names


IMAGENOME_NAMES = _imagenome_names()
assert set(IMAGENOME_NAMES) == set(LOCATIONS) and set(SIDES) == {"left", "right", "bilateral"}


@dataclass(frozen=True)
class Gaussian2D:
    """Axis-aligned Gaussian in the 512 LUT frame."""

    mu_x: float
    mu_y: float
    sigma_x: float
    sigma_y: float

    @classmethod
    def of_box(cls, x_min: float, y_min: float, x_max: float, y_max: float, k: float = DEFAULT_K) -> Gaussian2D:
        return cls((x_min + x_max) / 2, (y_min + y_max) / 2, (x_max - x_min) / k, (y_max - y_min) / k)

    @classmethod
    def of_image_box(cls, box: Box, height: int, width: int, k: float = DEFAULT_K) -> Gaussian2D:
        """(mu, sigma) of a box given in original pixels of an H x W image, in the LUT frame."""
        return cls.of_box(*to_lut_frame(box, height, width), k=k)

    def w2(self, other: Gaussian2D) -> float:
        """Squared 2-Wasserstein distance for diagonal covariances: |mu1 - mu2|^2 + |sigma1 - sigma2|^2."""
        return (
            (self.mu_x - other.mu_x) ** 2
            + (self.mu_y - other.mu_y) ** 2
            + (self.sigma_x - other.sigma_x) ** 2
            + (self.sigma_y - other.sigma_y) ** 2
        )


@dataclass(frozen=True)
class LocationTable:
    """The 27 location Gaussians, the k they were built with and where they come from."""

    gaussians: dict[str, Gaussian2D]
    k: float
    source: str
    counts: dict[str, int]

    def nearest(self, gaussian: Gaussian2D) -> str:
        """The location with the smallest squared W2 distance (first in LOCATIONS order on a tie)."""
        return min(
            (loc for loc in LOCATIONS if loc in self.gaussians), key=lambda loc: self.gaussians[loc].w2(gaussian)
        )

    def to_json(self) -> str:
        payload = {
            "frame": f"{LUT_SIZE}x{LUT_SIZE} over the centred min(H, W) square; x right, y down; patient right = "
            "image left",
            "k": self.k,
            "source": self.source,
            "locations": {
                loc: {**asdict(self.gaussians[loc]), "n_boxes": self.counts.get(loc, 0)}
                for loc in LOCATIONS
                if loc in self.gaussians
            },
        }
        return json.dumps(payload, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, origin: str = "LUT") -> LocationTable:
        try:
            payload = json.loads(text)
            entries = payload["locations"]
            gaussians = {
                loc: Gaussian2D(*(float(e[f]) for f in ("mu_x", "mu_y", "sigma_x", "sigma_y")))
                for loc, e in entries.items()
            }
            counts = {loc: int(e.get("n_boxes", 0)) for loc, e in entries.items()}
            table = cls(gaussians, float(payload["k"]), str(payload.get("source", "")), counts)
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{origin} is not a cxrbench location table: {exc}") from exc
        missing = [loc for loc in LOCATIONS if loc not in gaussians]
        if missing:
            raise DataError(f"{origin} lacks the location(s) {', '.join(missing)}")
        bad = [loc for loc, g in gaussians.items() if not (g.sigma_x > 0 and g.sigma_y > 0)]
        if bad:
            raise DataError(f"{origin}: non-positive sigma for {', '.join(bad)}")
        return check_side_convention(table, origin)


def to_lut_frame(box: Box, height: int, width: int) -> tuple[float, float, float, float]:
    """A box in original pixels of an H x W image, in the 512 frame of the image's centred square."""
    side = min(height, width)
    top, left = (height - side) / 2, (width - side) / 2
    scale = LUT_SIZE / side
    return (
        (box.x_min - left) * scale,
        (box.y_min - top) * scale,
        (box.x_max - left) * scale,
        (box.y_max - top) * scale,
    )


@dataclass(frozen=True)
class NamedBox:
    """One ImaGenome-style gold box: an anatomical name on one image of size H x W."""

    image_id: str
    name: str
    box: Box
    height: int
    width: int


def build_lut(boxes: Iterable[NamedBox], k: float = DEFAULT_K, source: str = "") -> LocationTable:
    """Mean (mu, sigma) per location over the boxes named by IMAGENOME_NAMES (docs/anatomy.md, section 5.2)."""
    by_image: dict[str, dict[str, NamedBox]] = defaultdict(dict)
    for b in boxes:
        by_image[b.image_id][b.name.strip().lower()] = b
    params: dict[str, list[Gaussian2D]] = defaultdict(list)
    for named in by_image.values():
        for location, groups in IMAGENOME_NAMES.items():
            for group in groups:
                if not all(name in named for name in group):
                    continue
                frames = [to_lut_frame(named[n].box, named[n].height, named[n].width) for n in group]
                x0, y0 = min(f[0] for f in frames), min(f[1] for f in frames)
                x1, y1 = max(f[2] for f in frames), max(f[3] for f in frames)
                params[location].append(Gaussian2D.of_box(x0, y0, x1, y1, k))
    missing = [loc for loc in LOCATIONS if not params[loc]]
    if missing:
        raise CxrbenchError(
            f"no gold box found for location(s) {', '.join(missing)}; the ImaGenome names they need: "
            + "; ".join(f"{loc}: {' + '.join(IMAGENOME_NAMES[loc][0])}" for loc in missing)
        )
    gaussians = {
        loc: Gaussian2D(
            *(float(np.mean([getattr(g, f) for g in params[loc]])) for f in ("mu_x", "mu_y", "sigma_x", "sigma_y"))
        )
        for loc in LOCATIONS
    }
    table = LocationTable(gaussians, float(k), source, {loc: len(params[loc]) for loc in LOCATIONS})
    return check_side_convention(table, "the gold boxes")


@lru_cache(maxsize=1)
def _default_table() -> LocationTable:
    text = resources.files("cxrbench.anatomy").joinpath("data/default_lut.json").read_text(encoding="utf-8")
    return LocationTable.from_json(text, "the packaged default LUT")


def load_lut(path: str | Path | None = None) -> LocationTable:
    """The table at `path`, or the packaged default (docs/anatomy.md, section 5.3)."""
    if path is None:
        return _default_table()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise DataError(f"cannot read location table {path}: {reason}; build one with `cxrbench lut build`") from exc
    return LocationTable.from_json(text, str(path))


def nearest_location(
    box: Box | tuple[float, float, float, float], height: int, width: int, lut: LocationTable | None = None
) -> str:
    """The LUT location closest (squared W2) to a box given in original pixels of an H x W image."""
    table = lut or load_lut()
    box = box if isinstance(box, Box) else Box(*box)
    return table.nearest(Gaussian2D.of_image_box(box, height, width, table.k))


def render(gaussian: Gaussian2D, size: int = LUT_SIZE) -> np.ndarray:
    """The Gaussian drawn on a size x size grid over the LUT frame (peak 1), float32."""
    scale = size / LUT_SIZE
    return gaussian_map(
        size,
        size,
        gaussian.mu_x * scale,
        gaussian.mu_y * scale,
        max(gaussian.sigma_x * scale, 1e-6),
        max(gaussian.sigma_y * scale, 1e-6),
    )


def check_side_convention(table: LocationTable, origin: str) -> LocationTable:
    """The table itself, or an error when it puts the patient's right on the image's right (a flipped source)."""
    if not table.gaussians["right"].mu_x < LUT_SIZE / 2 < table.gaussians["left"].mu_x:
        raise DataError(f"{origin} is left-right flipped: 'right' must sit on the image's left (small x)")
    return table
