"""A built-in demo set: procedurally generated chest-X-ray-like phantoms, no download.

Each phantom has a body, two lung fields with vessel-like texture, a spine, a heart and a diaphragm, and one
finding drawn inside its ground-truth box(es): opacities (pneumonia, consolidation, lung opacity,
atelectasis), a dark pleural air space (pneumothorax), a basal fluid level (pleural effusion), a bilateral
haze (edema) or an enlarged heart (cardiomegaly). Prompts are "{location} {pathology}" with the radiological
convention (patient right = image left). Images of several sizes, square, portrait and landscape, so the
protocol's resize and NaN padding are exercised; landscape images put some boxes partly outside the centred
square. Everything is a pure function of the sample index and GENERATOR_VERSION (docs/datasets.md, "demo").
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.ndimage import gaussian_filter

from cxrbench.anatomy.vocabulary import PATHOLOGIES, make_prompt
from cxrbench.types import Box, ImageSource, Sample

GENERATOR_VERSION = "demo-v1"
SIZES: tuple[tuple[int, int], ...] = ((512, 512), (600, 480), (480, 600), (720, 720), (800, 640), (560, 700))

# Lung boxes in image fractions (u0, v0, u1, v1): "right" = patient right = image LEFT.
LUNGS = {"right": (0.17, 0.19, 0.45, 0.75), "left": (0.55, 0.19, 0.83, 0.77)}
HEART = (0.42, 0.55, 0.66, 0.75)
ENLARGED_HEART = (0.36, 0.50, 0.76, 0.80)
# Zones as (top, bottom) fractions of the lung's height, and (lateral, medial) fractions of its width
# measured from the lateral edge.
LESION_ZONES = {
    "": ((0.0, 1.0), (0.0, 1.0)),
    "apical": ((0.0, 0.22), (0.0, 1.0)),
    "upper": ((0.0, 0.36), (0.0, 1.0)),
    "middle": ((0.33, 0.66), (0.0, 1.0)),
    "lower": ((0.62, 1.0), (0.0, 1.0)),
    "base": ((0.78, 1.0), (0.0, 1.0)),
    "costophrenic": ((0.80, 1.0), (0.0, 0.45)),
    "pleural": ((0.50, 1.0), (0.0, 0.35)),
}
LOCATIONS_BY_PATHOLOGY = {
    "Pneumonia": ("right lower", "left lower", "right middle", "bilateral lower", "lingular", "right upper"),
    "Consolidation": ("left lower", "right lower", "right upper", "bibasilar", "left middle"),
    "Lung Opacity": ("right middle", "left upper", "bilateral", "right", "left lower"),
    "Atelectasis": ("left base", "right base", "bibasilar", "left lower", "lingular"),
    "Pneumothorax": ("right apical", "left apical", "right upper", "left", "right"),
    "Pleural Effusion": ("right pleural", "left pleural", "bilateral pleural", "right costophrenic", "left base"),
    "Edema": ("pulmonary", "bilateral", "bilateral middle"),
    "Cardiomegaly": ("cardiomegaly",),
}
N_PER_CLASS = 8


def _zone_box(side: str, zone: str) -> tuple[float, float, float, float]:
    """Image-fraction box of a zone of one lung; lateral is image-left for the right lung."""
    u0, v0, u1, v1 = LUNGS[side]
    (top, bottom), (lateral, medial) = LESION_ZONES[zone]
    width, height = u1 - u0, v1 - v0
    if side == "right":
        left, right = u0 + lateral * width, u0 + medial * width
    else:
        left, right = u1 - medial * width, u1 - lateral * width
    return left, v0 + top * height, right, v0 + bottom * height


def _regions(location: str) -> list[tuple[float, float, float, float]]:
    """One image-fraction region per box a finding at `location` gets."""
    if location == "cardiomegaly":
        return [ENLARGED_HEART]
    if location == "lingular":
        u0, v0, u1, v1 = LUNGS["left"]
        return [(u0, v0 + 0.5 * (v1 - v0), u0 + 0.5 * (u1 - u0), v0 + 0.8 * (v1 - v0))]
    if location == "pulmonary":
        return [_zone_box("right", "middle"), _zone_box("left", "middle")]
    if location == "bibasilar":
        return [_zone_box("right", "base"), _zone_box("left", "base")]
    side, _, zone = location.partition(" ")
    sides = ("right", "left") if side == "bilateral" else (side,)
    return [_zone_box(s, zone) for s in sides]


def _ellipse(shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """Soft ellipse filling a pixel box: 1 at the centre, 0 at and beyond the edge."""
    h, w = shape
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    r2 = ((xx - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 + ((yy - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2
    return np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = gaussian_filter(rng.standard_normal(shape), sigma)
    return noise / (np.abs(noise).max() + 1e-12)


class _Phantom:
    """The finding, boxes and pixels of demo sample `index`."""

    def __init__(self, index: int):
        rng = np.random.default_rng([20261125, index])
        self.index = index
        self.pathology = PATHOLOGIES[index % len(PATHOLOGIES)]
        options = LOCATIONS_BY_PATHOLOGY[self.pathology]
        self.location = options[(index // len(PATHOLOGIES)) % len(options)]
        self.height, self.width = SIZES[index % len(SIZES) if index % 7 else (index // 7) % len(SIZES)]
        self.boxes = tuple(self._jitter(rng, region) for region in _regions(self.location))
        self.seed = [20261125, index, 1]

    def _jitter(self, rng: np.random.Generator, region: tuple[float, float, float, float]) -> Box:
        """A box inside the region: the whole region for the heart, 55-95 % of each side elsewhere."""
        u0, v0, u1, v1 = region
        if self.pathology != "Cardiomegaly":
            fw, fh = rng.uniform(0.55, 0.95, size=2)
            du, dv = (u1 - u0) * (1 - fw), (v1 - v0) * (1 - fh)
            ou, ov = rng.uniform(0, 1, size=2)
            u0, u1 = u0 + ou * du, u1 - (1 - ou) * du
            v0, v1 = v0 + ov * dv, v1 - (1 - ov) * dv
        w, h = self.width, self.height
        return Box(round(u0 * w), round(v0 * h), round(u1 * w), round(v1 * h))

    def _pixel_box(self, region: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        u0, v0, u1, v1 = region
        return u0 * self.width, v0 * self.height, u1 * self.width, v1 * self.height

    def draw(self, finding: bool = True) -> np.ndarray:
        """The phantom as float32 (H, W) in [0, 1]; `finding=False` gives the same patient without it."""
        rng = np.random.default_rng(self.seed)
        shape = (self.height, self.width)
        image = 0.05 + 0.45 * np.clip(_ellipse(shape, self._pixel_box((0.06, 0.06, 0.94, 1.10))) * 2, 0, 1)
        yy = (np.arange(self.height)[:, None] + 0.5) / self.height
        xx = (np.arange(self.width)[None, :] + 0.5) / self.width
        image = image + 0.25 * np.exp(-0.5 * ((xx - 0.5) / 0.025) ** 2)  # spine
        vessels = np.abs(_texture(rng, shape, 2.0 * self.width / 512))
        lungs = np.zeros(shape)
        for side in ("right", "left"):
            lungs = np.maximum(lungs, _ellipse(shape, self._pixel_box(LUNGS[side])))
        lung_field = np.clip(lungs * 3, 0, 1)
        image = image - 0.32 * lung_field + 0.10 * lung_field * vessels
        ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (yy * 9 + 0.8 * np.abs(xx - 0.5)))
        image = image + 0.05 * lung_field * ribs
        heart = ENLARGED_HEART if finding and self.pathology == "Cardiomegaly" else HEART
        image = np.maximum(image, 0.62 * np.clip(_ellipse(shape, self._pixel_box(heart)) * 4, 0, 1))
        image = image + 0.015 * rng.standard_normal(shape)
        if finding:
            image = image + self._finding(np.random.default_rng([*self.seed, 1]), shape, lung_field)
        return np.clip(image, 0.0, 1.0).astype(np.float32)

    def _finding(self, rng: np.random.Generator, shape: tuple[int, int], lung_field: np.ndarray) -> np.ndarray:
        add = np.zeros(shape)
        for box in self.boxes:
            region = _ellipse(shape, box.as_tuple())
            if self.pathology in ("Pneumonia", "Consolidation", "Lung Opacity", "Atelectasis"):
                blotch = 0.6 + 0.4 * _texture(rng, shape, 6.0 * self.width / 512)
                add += 0.35 * region * blotch
            elif self.pathology == "Edema":
                add += 0.18 * region
            elif self.pathology == "Pneumothorax":
                add -= 0.12 * np.clip(region * 3, 0, 1) * lung_field
            elif self.pathology == "Pleural Effusion":
                y0, y1 = box.y_min, box.y_max
                ramp = np.clip((np.arange(shape[0])[:, None] + 0.5 - y0) / (y1 - y0), 0, 1)
                add += 0.45 * np.clip(region * 3, 0, 1) * np.sqrt(ramp)
        return add


class DemoDataset:
    """64 deterministic phantoms, 8 per class, with "{location} {pathology}" prompts; nothing to download."""

    name = "demo"
    classes = PATHOLOGIES

    def __init__(self, n_per_class: int = N_PER_CLASS):
        self.n_per_class = int(n_per_class)
        self.n = self.n_per_class * len(PATHOLOGIES)

    def config(self) -> dict[str, object]:
        """The effective options, defaults included."""
        return {"n_per_class": self.n_per_class, "generator": GENERATOR_VERSION}

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Sample]:
        for index in range(self.n):
            yield self.sample(index)

    def sample(self, index: int) -> Sample:
        phantom = _Phantom(index)
        return Sample(
            pair_id=f"demo-{index:03d}",
            image_id=f"demo-image-{index:03d}",
            class_name=phantom.pathology,
            prompt=make_prompt([phantom.location], phantom.pathology),
            boxes=phantom.boxes,
            height=phantom.height,
            width=phantom.width,
            image=ImageSource(
                load=phantom.draw,
                fingerprint=lambda i=index: f"{GENERATOR_VERSION}:{i}",
                description=f"demo phantom {index}",
            ),
        )
