"""lut-prior: the location table's Gaussian(s) for the prompt's location(s), image unseen.

It measures what a method gains by reading the image: a prompt "left lower <and> right upper pneumonia"
becomes the maximum of the two locations' Gaussians on the 512 x 512 square (the location table's frame,
docs/anatomy.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cxrbench.anatomy.lut import LUT_SIZE, load_lut, render
from cxrbench.anatomy.vocabulary import parse_prompt
from cxrbench.errors import MethodOutputError


class LutPrior:
    """Gaussian prior of the prompt's location(s); needs "{location} {pathology}" prompts."""

    name = "lut-prior"
    bound = True  # a reference, not a competitor (docs/results.md, "Tables")
    cacheable = False

    def __init__(self, lut: str | Path | None = None):
        self.lut_path = str(lut) if lut else None
        self.table = load_lut(lut)

    def config(self) -> dict[str, object]:
        """The table's content (its file is provenance, not identity)."""
        return {"lut_sha256": hashlib.sha256(self.table.to_json().encode("utf-8")).hexdigest()}

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        try:
            locations, _ = parse_prompt(prompt)
        except ValueError as exc:
            raise MethodOutputError(
                f"lut-prior: {exc}; use a dataset with location prompts (demo, vindr, mscxr-loc)"
            ) from exc
        return np.maximum.reduce([render(self.table.gaussians[loc], LUT_SIZE) for loc in locations])
