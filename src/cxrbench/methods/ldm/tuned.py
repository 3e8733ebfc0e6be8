"""ldm-tuned: the cross-attention heatmap of the frozen LDM (docs/methods.md) with the prompt embedded through a
codebook tuned by `cxrbench tune` (docs/tuning.md), without the Otsu mask (the published protocol applies it to the
frozen model only). Takes ldm-zeroshot's options (docs/ldm.md section 5); its config names the checkpoint and what
it was tuned with."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cxrbench.errors import CxrbenchError
from cxrbench.hashing import sha256_file
from cxrbench.methods.ldm.attention import DEFAULT_LAYERS, DEFAULT_SCHEDULE
from cxrbench.methods.ldm.checkpoints import STATE_FILE, read_state, resolve_checkpoint, tuned_with
from cxrbench.methods.ldm.codebook import FILE, Codebook
from cxrbench.methods.ldm.zeroshot import LdmZeroShot


class LdmTuned(LdmZeroShot):
    """The frozen LDM read through its cross-attention, prompts embedded through the tuned location rows."""

    name = "ldm-tuned"
    otsu = False

    def __init__(
        self,
        checkpoint: str | Path | None = None,
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
        if checkpoint is None:
            raise CxrbenchError("ldm-tuned needs --checkpoint: the --output folder of `cxrbench tune` (or a step-*/)")
        folder = resolve_checkpoint(Path(checkpoint))
        super().__init__(
            weights,
            device,
            dtype,
            batch_size,
            layers=layers,
            steps=steps,
            schedule=schedule,
            otsu=otsu,
            tokens=tokens,
            allow_unverified_weights=allow_unverified_weights,
        )
        self.codebook = Codebook.load(folder / FILE, self.models.tokenizer, self.models.text_encoder)
        self.codebook.to(self.models.device)
        state = read_state(folder) if (folder / STATE_FILE).is_file() else {}
        if state and not state.get("finished", False):
            warnings.warn(f"{folder} is an intermediate checkpoint (step {state.get('step')})", stacklevel=2)
        self.checkpoint: dict[str, Any] = {"sha256": sha256_file(folder / FILE), "step": state.get("step")}
        if state:
            self.checkpoint["tuned_with"] = tuned_with(state)

    def config(self) -> dict[str, object]:
        return {**super().config(), "checkpoint": self.checkpoint}
