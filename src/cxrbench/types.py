"""Plain data types shared by datasets, methods and the scorer."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from cxrbench.errors import DataError


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in original pixel coordinates (x to the right, y down), x_max > x_min, y_max > y_min.

    It covers columns floor(x_min) .. ceil(x_max) - 1 and rows floor(y_min) .. ceil(y_max) - 1 (SPEC 2.4).
    """

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    def __post_init__(self) -> None:
        coords = (self.x_min, self.y_min, self.x_max, self.y_max)
        if not all(isinstance(c, (int, float, np.integer, np.floating)) and math.isfinite(c) for c in coords):
            raise DataError(f"box {coords} has a missing or non-finite coordinate")
        if self.x_max <= self.x_min or self.y_max <= self.y_min:
            raise DataError(f"box {coords} has no positive size (need x_max > x_min and y_max > y_min)")

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x_min, self.y_min, self.x_max, self.y_max)


@dataclass(frozen=True)
class ImageSource:
    """Where a sample's image comes from: `load()` gives float32 (H, W) in [0, 1]; `fingerprint` identifies
    the pixels (a content hash for files, a generator version and seed for synthetic images)."""

    load: Callable[[], np.ndarray]
    fingerprint: Callable[[], str]
    description: str = ""
    provenance: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One (image, prompt, boxes) pair. The image is loaded on demand through `image.load()`."""

    pair_id: str
    image_id: str
    class_name: str
    prompt: str
    boxes: tuple[Box, ...]
    height: int
    width: int
    image: ImageSource = field(repr=False, compare=False)
    error: str | None = field(default=None, compare=False)

    @classmethod
    def broken(cls, pair_id: str, image_id: str, class_name: str, error: str) -> Sample:
        """A pair the dataset could not build (bad row, unreadable header): the runner reports `error` for it
        (stops with --on-error fail, logs it with skip) instead of the whole dataset failing to load."""

        def fail() -> np.ndarray:
            raise DataError(error)

        return cls(pair_id, image_id, class_name, "", (), 0, 0, ImageSource(fail, lambda: "unreadable"), error)

    def load_image(self) -> np.ndarray:
        """The image as float32 (H, W) in [0, 1]; checks that its size matches the dataset's record."""
        image = np.asarray(self.image.load())
        if image.ndim != 2 or image.shape != (self.height, self.width):
            raise DataError(
                f"pair {self.pair_id}: image {self.image.description or self.image_id} has shape "
                f"{image.shape}, the dataset says ({self.height}, {self.width})"
            )
        return image.astype(np.float32, copy=False)


@runtime_checkable
class Method(Protocol):
    """A grounding method. `heatmap` returns a 2-D float map of any size covering the centred min(H, W)
    square of the image (NaN where it did not look); see DESIGN.md "The one interface".

    Optional attributes read by the runner (defaults in brackets):
      frame: "square" | "full" | "auto" ["square"] -- "full" maps are already H x W and are not resized or
        padded; "auto" decides per map (H x W = full, anything else = square);
      interpolation: "bilinear" | "nearest" ["bilinear"] -- used to resize square maps to min(H, W);
      cacheable: bool [True] -- False for methods cheaper to recompute than to read back;
      batch_size: int [1] -- with a `heatmaps(images, prompts)` method, images are passed in batches;
      config() -> dict -- every parameter that changes the heatmap (weights' hashes included): the cache key;
      heatmap_for_sample(sample) -- called instead of `heatmap` when defined: the oracle (the one method that
        sees the ground truth) and prediction importers (which read the pair id only); no image is loaded;
      output: "heatmap" | "boxes" ["heatmap"] -- box methods define `boxes_for_sample(sample)` instead and get
        mIoU only (SPEC 2.5).
    """

    name: str

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray: ...


@runtime_checkable
class Dataset(Protocol):
    """A dataset adapter: iterating yields `Sample`s lazily; `classes` lists its pathology classes."""

    name: str
    classes: tuple[str, ...]

    def __iter__(self) -> Iterator[Sample]: ...


Interpolation = Literal["bilinear", "nearest"]
