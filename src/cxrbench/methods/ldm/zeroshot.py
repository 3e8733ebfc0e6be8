"""ldm-zeroshot: phrase grounding from the frozen MONAI CXR latent diffusion model (docs/methods.md, "The LDM
heatmap")."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxrbench.methods.ldm.attention import DEFAULT_LAYERS, RECORDED_STEPS
from cxrbench.methods.ldm.codebook import Codebook
from cxrbench.methods.ldm.model import load_ldm
from cxrbench.methods.ldm.pipeline import fast_heatmaps
from cxrbench.weights import weights_root


class LdmZeroShot:
    """Cross-attention of the frozen LDM during DDIM inversion, kept above its Otsu threshold; returns the
    512 x 512 centre square, mapped back with nearest interpolation as the published evaluation does."""

    name = "ldm-zeroshot"
    interpolation = "nearest"
    otsu = True
    codebook: Codebook | None = None  # ldm-tuned's prompt embeddings

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 4,
        layers: str | Sequence[str] = DEFAULT_LAYERS,
        allow_unverified_weights: bool = False,
    ):
        self.models = load_ldm(weights_root(weights), device, dtype, bool(allow_unverified_weights))
        self.batch_size = int(batch_size)
        self.layers = tuple(layers.split(",")) if isinstance(layers, str) else tuple(layers)
        self.dtype = dtype

    def config(self) -> dict[str, object]:
        return {
            "weights": self.models.hashes,
            "dtype": self.dtype,
            "layers": list(self.layers),
            "steps": [RECORDED_STEPS.start, RECORDED_STEPS.stop],
            "otsu": "threshold_multiotsu(classes=2)" if self.otsu else False,
        }

    def heatmaps(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[np.ndarray]:
        return fast_heatmaps(self.models, images, prompts, self.layers, self.otsu, self.codebook)

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        return self.heatmaps([image], [prompt])[0]
