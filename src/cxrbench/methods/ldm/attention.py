"""Cross-attention recording on the MONAI U-Net, for the heatmap and for prompt tuning: which layers, which steps,
and how the recorded maps are reduced -- the one place that decides these (docs/methods.md, "The LDM heatmap";
docs/tuning.md section 4; the options: docs/ldm.md section 5).

- `Recording`: the layers (names of spatial transformers, module order) and the U-Net timesteps recorded. The
  heatmap's default and the tuning default are the published settings and stand here side by side.
- `AttentionRecorder`: hooks on those layers' cross-attention; a recorded U-Net pass stops after the last of them.
- Two reductions of the head-averaged probabilities softmax(QK^T / sqrt(d)): `PairMaps` (the heatmap: per
  (layer, step) map the token mean, min-maxed, then the mean over layers and steps) and `TimestepMaps` (tuning:
  the mean over layers and timesteps of the raw probabilities, with gradients).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cxrbench.benchmark.protocol import resize
from cxrbench.errors import CxrbenchError, WeightsError
from cxrbench.methods.ldm.ddim import schedule_timesteps
from cxrbench.methods.ldm.heatmap import SIZE, grid_map

SUFFIX = ".transformer_blocks.0.attn2"
DEFAULT_SCHEDULE = 300  # inversion steps T of the published zero-shot evaluation (eval_ldm.py --num-timesteps)


def published_window(schedule: int) -> range:
    """The published evaluation's recorded steps, T/2 -+ 10 % of T (eval_ldm.py): range(t_min, t_max) with
    t_min = T // 2 - 10 * T // 100, t_max = T // 2 + 10 * T // 100: 120 .. 179 for T = 300, 40 .. 59 for T = 100."""
    return range(schedule // 2 - 10 * schedule // 100, schedule // 2 + 10 * schedule // 100)


# The heatmap (docs/methods.md): positions 3, 4, 6, 7 of the 11 cross-attention layers in module order, during
# inversion U-Net calls i = 120 .. 179 of T = 300 (t = 3i = 360 .. 537).
DEFAULT_LAYERS = (
    "down_blocks.2.attentions.1",
    "middle_block.attention",
    "up_blocks.0.attentions.1",
    "up_blocks.0.attentions.2",
)
RECORDED_STEPS = published_window(DEFAULT_SCHEDULE)
# Prompt tuning (docs/tuning.md section 3): the bottleneck and the first three decoder layers (positions 4 .. 7),
# at the 30 timesteps t = 300, 310, ..., 590 (steps 30 .. 59 of a 100-step schedule with leading spacing).
TUNING_LAYERS = (
    "middle_block.attention",
    "up_blocks.0.attentions.0",
    "up_blocks.0.attentions.1",
    "up_blocks.0.attentions.2",
)
TUNING_SCHEDULE, TUNING_STEPS = 100, range(30, 60)


@dataclass(frozen=True)
class Recording:
    """What is recorded: `layers` at the U-Net calls `steps` (indices into the `schedule`-step schedule's timesteps,
    ascending; trailing spacing for the heatmap's inversion, leading for tuning: docs/ldm.md section 5)."""

    layers: tuple[str, ...] = DEFAULT_LAYERS
    steps: range = RECORDED_STEPS
    schedule: int = DEFAULT_SCHEDULE
    spacing: Literal["trailing", "leading"] = "trailing"

    def timesteps(self) -> np.ndarray:
        """Every timestep of the schedule, ascending (the inversion visits them in this order)."""
        return schedule_timesteps(self.schedule, self.spacing)

    def recorded_timesteps(self) -> tuple[int, ...]:
        return tuple(int(t) for t in self.timesteps()[self.steps.start : self.steps.stop])


HEATMAP = Recording()
TUNING = Recording(TUNING_LAYERS, TUNING_STEPS, TUNING_SCHEDULE, "leading")
TUNING_TIMESTEPS = TUNING.recorded_timesteps()


# ---------------------------------------------------------------- choosing layers and steps from option text


def cross_attention_name(layer: str) -> str:
    """The CrossAttentionBlock inside a spatial transformer named by `layer`."""
    return layer if layer.endswith("attn2") else f"{layer}{SUFFIX}"


def cross_attention_layers(unet: Any) -> list[str]:
    """The U-Net's cross-attention layers in module registration order: down blocks, middle, up blocks, as the
    published `find_cross_attention_layers` (models_local/attention.py) collects them; 11 in the real U-Net."""
    return [name.removesuffix(SUFFIX) for name, _ in unet.named_modules() if name.endswith(".attn2")]


def _option_error(option: str, value: object, problem: str) -> CxrbenchError:
    """One line naming the option: a method's `-o` KEY, or a command's --flag."""
    given = f"{option} {value!r}" if option.startswith("--") else f"option {option}={value!r}"
    return CxrbenchError(f"{given}: {problem}")


def select_layers(spec: str | Sequence[str], available: Sequence[str]) -> tuple[str, ...]:
    """Layers given by name or by 0-based index in `available` (module order); text is a comma-separated list of
    names, indices and inclusive index ranges A-B ("3-8" is the paper's L = 6). Returned in module order, once
    each, so "3,4,6,7" is DEFAULT_LAYERS exactly."""
    items = [item.strip() for item in (spec.split(",") if isinstance(spec, str) else spec)]
    listing = ", ".join(f"{i} {name}" for i, name in enumerate(available))
    chosen: set[str] = set()
    for item in items:
        bounds = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if bounds:
            first, last = int(bounds[1]), int(bounds[2] or bounds[1])
            if first > last or last >= len(available):
                raise _option_error(
                    "layers", spec, f"{item} is not an index or range within 0-{len(available) - 1} ({listing})"
                )
            chosen.update(available[first : last + 1])
        elif item.removesuffix(SUFFIX) in available:
            chosen.add(item.removesuffix(SUFFIX))
        else:
            raise _option_error("layers", spec, f"{item or 'an empty item'} is not a layer; the layers are {listing}")
    return tuple(name for name in available if name in chosen)


def parse_window(spec: str | Sequence[int], total: int, option: str = "steps") -> range:
    """A window of steps "A-B": the steps A <= i < B (half-open, as the published range(t_min, t_max)), within
    0 .. `total`; a pair of numbers is taken as (A, B)."""
    if isinstance(spec, str):
        bounds = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", spec)
        if not bounds:
            raise _option_error(option, spec, "give the window as A-B (steps A <= i < B), e.g. 120-180")
        first, stop = int(bounds[1]), int(bounds[2])
    else:
        first, stop = (int(v) for v in spec)
    if not 0 <= first < stop <= total:
        raise _option_error(option, spec, f"the window must satisfy 0 <= A < B <= {total} (the schedule's steps)")
    return range(first, stop)


def check_schedule(schedule: int, option: str = "schedule") -> int:
    """T: the number of steps of a schedule over the 1000 training timesteps (1 .. 1000)."""
    if isinstance(schedule, bool) or not isinstance(schedule, int) or not 1 <= schedule <= 1000:
        raise _option_error(option, schedule, "must be a whole number of steps from 1 to 1000")
    return schedule


# ---------------------------------------------------------------- recording


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
                + ", ".join(cross_attention_layers(unet))
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


# ---------------------------------------------------------------- reductions


class PairMaps:
    """The heatmap's reduction, one batch row per (image, prompt) pair: per recorded (layer, step) map, the mean
    over the pair's token positions `spans[j]`, min-maxed on the layer's grid (heatmap.grid_map); the mean of
    these maps over layers and steps at 512 x 512.

    Bilinear resizing is linear and its weights sum to 1, so the mean of the resized maps equals the resized
    mean of the grid maps: summing on each grid and resizing once gives the documented mean of 512 x 512 maps
    (to float rounding) without resizing every (layer, step) map.
    """

    def __init__(self, spans: Sequence[slice]):
        self.spans = list(spans)
        self.sums: dict[int, np.ndarray] = {}
        self.count = 0

    def add(self, probs: Any) -> None:
        probs = probs.detach().cpu().numpy().astype(np.float64)
        maps = np.stack([grid_map(probs[j], span) for j, span in enumerate(self.spans)])
        side = maps.shape[-1]
        self.sums[side] = self.sums.get(side, 0) + maps
        self.count += 1

    def pair(self, j: int) -> tuple[dict[int, np.ndarray], int]:
        """Pair j's sums per grid side and the number of maps summed (what `mean_map` takes)."""
        return {side: grid[j] for side, grid in self.sums.items()}, self.count


def mean_map(sums: dict[int, np.ndarray], count: int) -> np.ndarray:
    """One pair's 512 x 512 mean over its `count` recorded (layer, step) maps, from their sums per grid side."""
    return sum(resize(grid, SIZE, SIZE).astype(np.float64) for grid in sums.values()) / count


class TimestepMaps:
    """The tuning reduction, one batch row per timestep: the recorded probabilities (with gradients) as
    (77, side, side) grids, the smaller layers' grids brought to the largest bilinearly; their mean over layers
    and timesteps. Use the recorder as a context manager around the forward AND backward pass (activation
    checkpointing replays the forward during backward)."""

    def __init__(self, unet: Any, layers: Sequence[str]):
        self.recorder = AttentionRecorder(unet, layers, self._record)
        self.recorded: list[Any] = []

    def _record(self, probs: Any) -> None:
        self.recorded.append(probs)

    def __enter__(self) -> TimestepMaps:
        self.recorder.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.recorder.__exit__(*exc)

    def _chunk_sum(self, z: Any, t: Any, context: Any) -> Any:
        """Sum over the chunk's timesteps and the layers of (77, side, side) maps at the largest grid."""
        import torch

        self.recorded = []
        self.recorder.recorded_pass(z, t, context.expand(len(z), -1, -1))
        side = max(round(p.shape[1] ** 0.5) for p in self.recorded)
        total = 0
        for probs in self.recorded:
            s = round(probs.shape[1] ** 0.5)
            grid = probs.sum(dim=0).T.reshape(1, probs.shape[2], s, s)
            if s != side:
                grid = torch.nn.functional.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
            total = total + grid[0]
        return total

    def mean(self, z: Any, t: Any, context: Any, chunk: int) -> Any:
        """(77, side, side): mean over timesteps (the batch of z) and layers; `chunk` timesteps per U-Net pass,
        under activation checkpointing when that is fewer than all."""
        from torch.utils.checkpoint import checkpoint

        if chunk >= len(z):  # one pass: checkpointing would only add a recomputation
            return self._chunk_sum(z, t, context) / (len(z) * len(self.recorder.modules))
        total = 0
        for start in range(0, len(z), chunk):
            part = z[start : start + chunk], t[start : start + chunk], context
            total = total + checkpoint(self._chunk_sum, *part, use_reentrant=False)
        return total / (len(z) * len(self.recorder.modules))
