"""Cross-attention recording on the MONAI U-Net: one recorder for the heatmap and for prompt tuning.

The heatmap and tuning record different layers at different timesteps; both settings are the published ones
and stand here side by side (why they differ: docs/tuning.md section 4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from cxrbench.errors import WeightsError

# The heatmap (docs/methods.md, "The LDM heatmap"): positions 3, 4, 6, 7 of the 11 cross-attention layers in
# module order, during inversion U-Net calls i = 120 .. 179 (t = 3i = 360 .. 537).
DEFAULT_LAYERS = (
    "down_blocks.2.attentions.1",
    "middle_block.attention",
    "up_blocks.0.attentions.1",
    "up_blocks.0.attentions.2",
)
RECORDED_STEPS = range(120, 180)
# Prompt tuning (docs/tuning.md section 3): the bottleneck and the first three decoder layers, at the 30
# timesteps t = 300, 310, ..., 590 (indices 30 .. 59 of a 100-step schedule).
TUNING_LAYERS = (
    "middle_block.attention",
    "up_blocks.0.attentions.0",
    "up_blocks.0.attentions.1",
    "up_blocks.0.attentions.2",
)
TUNING_TIMESTEPS = tuple(range(300, 600, 10))


def cross_attention_name(layer: str) -> str:
    """The CrossAttentionBlock inside a spatial transformer named by `layer`."""
    return f"{layer}.transformer_blocks.0.attn2"


class StopForward(Exception):
    """Raised by the last recorded layer's hook to end a U-Net pass early."""


def attention_probs(module: Any, args: tuple, kwargs: dict) -> Any:
    """softmax(QK^T / sqrt(d)) of a MONAI CrossAttentionBlock call, averaged over heads: (B, queries, keys)."""
    import torch

    x = args[0]
    context = kwargs.get("context", args[1] if len(args) > 1 else None)
    q = module.input_rearrange(module.to_q(x))
    k = module.input_rearrange(module.to_k(context))
    probs = (torch.einsum("blxd,blyd->blxy", q.float(), k.float()) * module.scale).softmax(dim=-1)
    return probs.mean(dim=1)


class AttentionRecorder:
    """Hooks on the cross-attention blocks of `layers`. Inside `with recorder:`, `recorded_pass(...)` runs the
    U-Net, hands each recorded layer's head-averaged probabilities to `sink` (in module order) and stops the
    pass after the last of them; plain `unet(...)` calls in between are not recorded. The hooks stay in place
    for the whole `with` block, so activation checkpointing can replay a recorded pass during backward."""

    def __init__(self, unet: Any, layers: Sequence[str], sink: Callable[[Any], None]):
        modules = dict(unet.named_modules())
        names = [cross_attention_name(layer) for layer in layers]
        missing = [n for n in names if n not in modules]
        if missing:
            raise WeightsError(
                f"the U-Net has no cross-attention layer(s) {', '.join(missing)}; its layers are "
                + ", ".join(n.removesuffix(".transformer_blocks.0.attn2") for n in modules if n.endswith("attn2"))
            )
        self.unet = unet
        self.modules = [modules[n] for n in modules if n in names]  # module (execution) order
        self.sink = sink
        self.active = False
        self._handles: list[Any] = []

    def __enter__(self) -> AttentionRecorder:
        last = self.modules[-1]

        def hook(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            if self.active:
                self.sink(attention_probs(module, args, kwargs))
                if module is last:
                    raise StopForward  # the rest of the pass is not needed

        self._handles = [m.register_forward_hook(hook, with_kwargs=True) for m in self.modules]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def recorded_pass(self, *args: Any) -> None:
        """One U-Net call on `args`, recorded and stopped after the last recorded layer."""
        self.active = True
        try:
            with contextlib.suppress(StopForward):
                self.unet(*args)
        finally:
            self.active = False
