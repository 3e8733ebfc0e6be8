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

    It covers columns floor(x_min) .. ceil(x_max) - 1 and rows floor(y_min) .. ceil(y_max) - 1 under the cxrbench
    protocol (docs/protocol.md explains the published protocol's rasterisation).
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
class Dataset(Protocol):
    """A dataset adapter: iterating yields `Sample`s lazily; `classes` lists its pathology classes.

    Optional: `config()` -> its effective options, defaults included (part of a run's identity,
    docs/results.md). Methods are described in `cxrbench.capabilities`.
    """

    name: str
    classes: tuple[str, ...]

    def __iter__(self) -> Iterator[Sample]: ...


Interpolation = Literal["bilinear", "nearest"]
