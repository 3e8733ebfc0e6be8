"""ldm-zeroshot: phrase grounding from the frozen MONAI CXR latent diffusion model (docs/methods.md, "The LDM
heatmap"); its ablation options (layers, steps, schedule, otsu, tokens): docs/ldm.md section 5."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from cxrbench.errors import CxrbenchError
from cxrbench.methods.ldm.attention import (
    DEFAULT_LAYERS,
    DEFAULT_SCHEDULE,
    Recording,
    check_schedule,
    cross_attention_layers,
    parse_window,
    published_window,
    select_layers,
)
from cxrbench.methods.ldm.codebook import Codebook
from cxrbench.methods.ldm.ddim import inversion_timesteps
from cxrbench.methods.ldm.model import load_ldm
from cxrbench.methods.ldm.pipeline import Tokens, fast_heatmaps
from cxrbench.methods.ldm.shared import SharedWork
from cxrbench.weights import weights_root

OTSU = "threshold_multiotsu(classes=2)"


class LdmZeroShot:
    """Cross-attention of the frozen LDM during DDIM inversion, kept above its Otsu threshold; returns the
    512 x 512 centre square, mapped back with nearest interpolation as the published evaluation does.

    Options (`-o KEY=VALUE`): `layers` (names or 0-based indices in module order, ranges A-B inclusive; default
    3,4,6,7), `steps` (recorded inversion steps A-B, A <= i < B; default the published window for the schedule),
    `schedule` (inversion steps T, default 300), `otsu` (true/false), `tokens` (all or pathology)."""

    name = "ldm-zeroshot"
    interpolation = "nearest"
    otsu = True
    codebook: Codebook | None = None  # ldm-tuned's prompt embeddings
    shared: SharedWork | None = None  # work shared with other configurations, when the runner gives a folder

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 4,
        layers: str | Sequence[str] = DEFAULT_LAYERS,
        steps: str | Sequence[int] | None = None,
        schedule: int = DEFAULT_SCHEDULE,
        otsu: bool | None = None,
        tokens: Literal["all", "pathology"] = "all",
        allow_unverified_weights: bool = False,
    ):
        schedule = check_schedule(schedule)
        total = len(inversion_timesteps(schedule))
        window = published_window(schedule) if steps is None else parse_window(steps, total)
        if tokens not in ("all", "pathology"):
            raise CxrbenchError(f"option tokens={tokens!r}: must be 'all' or 'pathology'")
        if otsu is not None and not isinstance(otsu, bool):
            raise CxrbenchError(f"option otsu={otsu!r}: must be true or false")
        self.tokens: Tokens = tokens
        self.otsu = type(self).otsu if otsu is None else otsu
        self.models = load_ldm(weights_root(weights), device, dtype, bool(allow_unverified_weights))
        self.batch_size = int(batch_size)
        chosen = select_layers(layers, cross_attention_layers(self.models.unet))
        self.recording = Recording(chosen, window, schedule)
        self.dtype = dtype

    @property
    def layers(self) -> tuple[str, ...]:
        return self.recording.layers

    def config(self) -> dict[str, object]:
        """What changes the heatmap; schedule and tokens appear only when not the default, so a default run's
        config (and cache key) is what it was before these options existed."""
        config: dict[str, object] = {
            "weights": self.models.hashes,
            "dtype": self.dtype,
            "layers": list(self.recording.layers),
            "steps": [self.recording.steps.start, self.recording.steps.stop],
            "otsu": OTSU if self.otsu else False,
        }
        if self.recording.schedule != DEFAULT_SCHEDULE:
            config["schedule"] = self.recording.schedule
        if self.tokens != "all":
            config["tokens"] = self.tokens
        return config

    def share_work(self, folder: Path) -> None:
        """Keep inversion trajectories and unthresholded maps in `folder`, for this and other configurations
        (docs/ldm.md section 6)."""
        self.shared = SharedWork(folder)

    @property
    def uses_class_names(self) -> bool:
        """tokens=pathology reads the pair's class, as the published attribution experiment (docs/ldm.md 5)."""
        return self.tokens == "pathology"

    def heatmaps(
        self, images: Sequence[np.ndarray], prompts: Sequence[str], class_names: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        models, recording = self.models, self.recording
        return fast_heatmaps(
            models, images, prompts, recording, self.otsu, self.codebook, self.tokens, self.shared, class_names
        )

    def heatmap(self, image: np.ndarray, prompt: str, class_name: str | None = None) -> np.ndarray:
        return self.heatmaps([image], [prompt], None if class_name is None else [class_name])[0]
