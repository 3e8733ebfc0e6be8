"""cxrbench: phrase grounding on chest X-rays, scored with one exact protocol.

Importing this package never imports torch; heavy methods load on first use.
"""

from cxrbench.errors import CxrbenchError
from cxrbench.registry import load_dataset, load_method, register_dataset, register_method
from cxrbench.types import Box, Dataset, ImageSource, Method, Sample

__version__ = "0.1.0"

__all__ = [
    "Box",
    "CxrbenchError",
    "Dataset",
    "ImageSource",
    "Method",
    "Sample",
    "__version__",
    "load_dataset",
    "load_method",
    "register_dataset",
    "register_method",
]
