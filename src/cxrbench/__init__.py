"""cxrbench: phrase grounding on chest X-rays, scored with one exact protocol.

Importing this package never imports torch; heavy methods load on first use.
"""

from importlib.metadata import version

from cxrbench.capabilities import BatchedHeatmaps, ImageHeatmaps, SampleBoxes, SampleHeatmaps
from cxrbench.errors import CxrbenchError
from cxrbench.registry import load_dataset, load_method, register_dataset, register_method
from cxrbench.types import Box, Dataset, ImageSource, Sample

__version__ = version("cxrbench")  # one source: pyproject.toml

__all__ = [
    "BatchedHeatmaps",
    "Box",
    "CxrbenchError",
    "Dataset",
    "ImageHeatmaps",
    "ImageSource",
    "Sample",
    "SampleBoxes",
    "SampleHeatmaps",
    "__version__",
    "load_dataset",
    "load_method",
    "register_dataset",
    "register_method",
]
