"""The contract between a method and the runner: four capabilities, one Protocol each (docs/methods.md).

A method is an object with a `name` and exactly one way to produce predictions:

- `ImageHeatmaps`: `heatmap(image, prompt)`, image float32 (H, W) in [0, 1] -> a 2-D map covering the centred
  min(H, W) square (NaN where it did not look), at any resolution;
- `BatchedHeatmaps`: `heatmaps(images, prompts)` and `batch_size`: several pairs per call (a method that also
  has `heatmap` is run in batches);
- `SampleHeatmaps`: `heatmap_for_sample(sample)`: maps from the sample itself, no image loaded -- the oracle,
  the one method that sees the ground truth, and importers of heatmaps made elsewhere;
- `SampleBoxes`: `boxes_for_sample(sample)` -> boxes: box-only methods, scored by mIoU only.

Optional attributes, checked here too: `frame` ("square", "full" = already H x W, "auto" = decide per map),
`interpolation` ("bilinear", "nearest") for resizing square maps, `cacheable` (False for methods cheaper to
recompute than to read back), `bound` (True for a reference that is not a competitor, such as an oracle upper
bound or an image-independent floor: tables set it apart and never mark it best; docs/results.md, "Tables"),
`config()` (everything that changes the output: the cache key), `share_work(folder)` (called once before any pair
with `<out>/<dataset>/heatmaps/.shared/`, where a method may keep intermediate results that its other
configurations reuse, keyed by everything that determines them and written atomically: the LDM's inversion
trajectories, docs/ldm.md section 6), `uses_class_names` (True: `heatmaps` / `heatmap` also get the pairs' classes
as `class_names=` / `class_name=`; for ablations that read the pathology's own tokens, never for a competitor, since
the class is part of the ground truth; docs/ldm.md section 5). `describe` checks a method once, when a run
starts, and the runner picks its path from the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

from cxrbench.errors import CxrbenchError
from cxrbench.types import Box, Interpolation, Sample

Frame = Literal["square", "full", "auto"]
Capability = Literal["batched", "image", "sample", "boxes"]


@runtime_checkable
class ImageHeatmaps(Protocol):
    name: str

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray: ...


@runtime_checkable
class BatchedHeatmaps(Protocol):
    name: str
    batch_size: int

    def heatmaps(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> Sequence[np.ndarray]: ...


@runtime_checkable
class SampleHeatmaps(Protocol):
    name: str

    def heatmap_for_sample(self, sample: Sample) -> np.ndarray: ...


@runtime_checkable
class SampleBoxes(Protocol):
    name: str

    def boxes_for_sample(self, sample: Sample) -> Sequence[Box]: ...


_PROTOCOLS: dict[Capability, type] = {
    "batched": BatchedHeatmaps,
    "image": ImageHeatmaps,
    "sample": SampleHeatmaps,
    "boxes": SampleBoxes,
}


class MethodContractError(CxrbenchError):
    """A method object that does not meet the contract above."""


@dataclass(frozen=True)
class MethodSpec:
    """What the runner needs to know about a method, resolved once."""

    name: str
    capability: Capability
    frame: Frame
    interpolation: Interpolation
    cacheable: bool
    batch_size: int
    bound: bool = False
    class_names: bool = False

    @property
    def needs_image(self) -> bool:
        """Whether the runner loads the image for it (sample-based methods never get one)."""
        return self.capability in ("batched", "image")

    @property
    def boxes(self) -> bool:
        return self.capability == "boxes"


def describe(method: Any) -> MethodSpec:
    """Check `method` against the contract and say how to run it; one clear error naming what is wrong."""
    label = f"method {getattr(method, 'name', type(method).__name__)!r}"
    name = getattr(method, "name", None)
    if not isinstance(name, str) or not name:
        raise MethodContractError(f"{label} needs a non-empty string attribute `name`")
    found = [c for c, proto in _PROTOCOLS.items() if isinstance(method, proto)]
    if not found:
        raise MethodContractError(
            f"{label} has none of heatmap(image, prompt), heatmaps(images, prompts) with batch_size, "
            f"heatmap_for_sample(sample) or boxes_for_sample(sample) (docs/methods.md)"
        )
    per_sample = [c for c in found if c in ("sample", "boxes")]
    if len(per_sample) > 1 or (per_sample and len(found) > 1):
        raise MethodContractError(f"{label} defines several kinds of prediction ({', '.join(found)}); keep one")
    frame = getattr(method, "frame", "square")
    interpolation = getattr(method, "interpolation", "bilinear")
    batch_size = getattr(method, "batch_size", 1) if found[0] == "batched" else 1
    if frame not in get_args(Frame):
        raise MethodContractError(f"{label}: frame must be one of {', '.join(get_args(Frame))}, not {frame!r}")
    if interpolation not in get_args(Interpolation):
        raise MethodContractError(f"{label}: interpolation must be 'bilinear' or 'nearest', not {interpolation!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise MethodContractError(f"{label}: batch_size must be a positive integer, not {batch_size!r}")
    bound = getattr(method, "bound", False)
    if not isinstance(bound, bool):
        raise MethodContractError(f"{label}: bound must be True or False, not {bound!r}")
    class_names = getattr(method, "uses_class_names", False)
    if not isinstance(class_names, bool) or (class_names and found[0] not in ("batched", "image")):
        raise MethodContractError(f"{label}: uses_class_names must be True or False, and True only with heatmap(s)")
    cacheable = bool(getattr(method, "cacheable", True))
    return MethodSpec(name, found[0], frame, interpolation, cacheable, batch_size, bound, class_names)
