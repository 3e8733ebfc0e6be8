"""Prompt tuning (docs/tuning.md) of the location rows of the codebook, everything else frozen.

One training step (batch size 1, one tuning sample):
- z0 = encoder mean x 0.3 of the preprocessed image (computed once per image, before training);
- z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps for ALL 30 timesteps t = 300, 310, ..., 590 (indices 30..59 of a
  100-step schedule over the 1000 training steps; `steps`, `schedule`), one independent noise draw per timestep from a
  generator seeded by (seed, step), so a resumed run draws the same noise;
- the prompt is embedded through the codebook and the frozen text encoder; the U-Net runs on the 30 noised
  latents (one pass, or chunks of `timestep_chunk` under activation checkpointing) only as far as the last
  of the 4 layers (bottleneck + first 3 decoder cross-attention layers), whose head-averaged probabilities
  softmax(QK^T / sqrt(d)) are kept with gradients and averaged over layers and timesteps: a_k, one map per
  token position k on the 16 x 16 grid;
- losses, with A = mean of a_k over the prompt's real tokens (positions 1 .. n-2, the map ldm-tuned outputs,
  as in docs/methods.md) and u_k = a_k / |a_k| over its non-special tokens (not <bos>, <eos>, <pad>, the <and>
  sub-tokens):
      diversity    = mean over pairs k != l of <u_k, u_l>            (0 with fewer than 2 tokens)
      localization = 1 - cos(A, T),  T = alpha * M * sg(A) + beta * G
  G = the location Gaussians (LUT frame = the preprocessed 512 square) drawn on the grid, several locations
  joined by <and> combined by max (their union); M = [G >= exp(-2)], the union of their 2-sigma ellipses;
  loss = localization_weight * localization + diversity_weight * diversity; Adam on the location rows only.
Samples are visited in a fresh permutation per epoch (seeded by (seed, epoch)).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.anatomy.lut import Gaussian2D, render
from cxrbench.datasets.images import load_jpg
from cxrbench.datasets.mimic import TuningSample
from cxrbench.errors import CxrbenchError, DataError
from cxrbench.methods.ldm.attention import (
    TUNING,
    TUNING_LAYERS,
    Recording,
    TimestepMaps,
    check_schedule,
    parse_window,
)
from cxrbench.methods.ldm.checkpoints import (
    LOSSES_FILE,
    check_output,
    check_resumable,
    checkpoint_dirs,
    load_optimizer,
    read_state,
    save_checkpoint,
    truncate_losses,
)
from cxrbench.methods.ldm.codebook import FILE as CODEBOOK_FILE
from cxrbench.methods.ldm.codebook import Codebook
from cxrbench.methods.ldm.ddim import alphas_cumprod
from cxrbench.methods.ldm.model import LdmModels
from cxrbench.methods.ldm.pipeline import MAX_TOKENS, encode_images, token_counts

MASK_LEVEL = math.exp(-2.0)  # G >= this <=> inside the 2-sigma ellipse of one of the Gaussians


@dataclass(frozen=True)
class TuneConfig:
    """Defaults are cxrbench's (the published values are not stated): alpha = beta = 1, equal loss weights,
    Adam at lr 1e-3 for 1 epoch, the timesteps of `steps` 30 .. 59 of a `schedule` of 100 steps (leading
    spacing: t = 300, 310, ..., 590; docs/tuning.md section 4). `timestep_chunk` < 30 runs the 30 timesteps in
    chunks under activation checkpointing: about 30 / chunk times less activation memory for ~55 % more FLOPs
    (benchmarks/tune_speed.py); the default, one pass, needs ~0.3 GiB per timestep in float32 (measured on CPU).
    `steps` also takes the text "A-B" (`--steps`). Everything but `timestep_chunk` and `checkpoint_every` is
    recorded in the checkpoint and reported by ldm-tuned's config."""

    alpha: float = 1.0
    beta: float = 1.0
    localization_weight: float = 1.0
    diversity_weight: float = 1.0
    lr: float = 1e-3
    epochs: int = 1
    seed: int = 0
    timestep_chunk: int = 30
    checkpoint_every: int = 500
    steps: tuple[int, int] = (TUNING.steps.start, TUNING.steps.stop)
    schedule: int = TUNING.schedule

    def __post_init__(self) -> None:
        for name in ("lr", "epochs", "timestep_chunk", "checkpoint_every"):
            if not getattr(self, name) > 0:
                raise CxrbenchError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("alpha", "beta", "localization_weight", "diversity_weight"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                flag = f"--{name.replace('_', '-')}"
                raise CxrbenchError(f"{flag} must be a finite number >= 0, got {getattr(self, name)}")
        window = parse_window(self.steps, check_schedule(self.schedule, "--schedule"), "--steps")
        object.__setattr__(self, "steps", (window.start, window.stop))

    def recording(self) -> Recording:
        """The tuning layers at this config's timesteps."""
        return Recording(TUNING_LAYERS, range(*self.steps), self.schedule, "leading")


# ---------------------------------------------------------------- losses (torch tensors)


def gaussian_target(gaussians: Sequence[Gaussian2D], side: int) -> np.ndarray:
    """G on a side x side grid over the LUT frame: the max (union) of the locations' Gaussians, peak 1."""
    return np.max([render(g, side) for g in gaussians], axis=0)


def diversity_loss(maps: Any) -> Any:
    """Mean cosine similarity between the (tokens, pixels) maps over all ordered pairs of distinct tokens."""
    import torch

    if maps.shape[0] < 2:
        return maps.sum() * 0.0
    unit = torch.nn.functional.normalize(maps, dim=1)
    gram = unit @ unit.T
    return (gram.sum() - gram.diagonal().sum()) / (maps.shape[0] * (maps.shape[0] - 1))


def localization_loss(mean_map: Any, gaussian: Any, alpha: float, beta: float) -> Any:
    """1 - cos(A, alpha * M * sg(A) + beta * G), M = [G >= exp(-2)]; all flattened over the grid."""
    import torch

    mask = (gaussian >= MASK_LEVEL).to(mean_map.dtype)
    target = alpha * mask * mean_map.detach() + beta * gaussian
    return 1.0 - torch.nn.functional.cosine_similarity(mean_map, target, dim=0)


# ---------------------------------------------------------------- forward pass with gradients


@dataclass(frozen=True)
class EncodedPrompt:
    ids: Any  # (77,) long
    real: Any  # positions 1 .. n-2
    plain: Any  # real positions whose token is not special


def encode_prompt(tokenizer: Any, prompt: str, special_ids: set[int]) -> EncodedPrompt:
    import torch

    ids = tokenizer(prompt, padding="max_length", max_length=MAX_TOKENS, truncation=True).input_ids
    n = token_counts(tokenizer, [prompt])[0]
    real = list(range(1, n - 1))
    plain = [k for k in real if ids[k] not in special_ids]
    return EncodedPrompt(torch.tensor(ids), torch.tensor(real, dtype=torch.long), torch.tensor(plain, dtype=torch.long))


def noise_for_step(seed: int, step: int, shape: Sequence[int]) -> Any:
    """Standard normal noise that depends only on (seed, step), drawn on the CPU (device-independent)."""
    import torch

    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))
    return torch.randn(tuple(shape), generator=generator)


def training_losses(
    models: LdmModels,
    codebook: Codebook,
    maps: TimestepMaps,
    latent: Any,
    prompt: EncodedPrompt,
    gaussians: Sequence[Gaussian2D],
    noise: Any,
    config: TuneConfig,
    timesteps: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The step's losses as tensors (`loss` carries the gradient); noise is (timesteps, *latent.shape); the
    timesteps are the config's unless given."""
    import torch

    timesteps = config.recording().recorded_timesteps() if timesteps is None else timesteps
    a = torch.as_tensor(alphas_cumprod()[list(timesteps)], dtype=torch.float32, device=models.device)
    scale = a.sqrt()[:, None, None, None], (1 - a).sqrt()[:, None, None, None]
    z = (scale[0] * latent[None] + scale[1] * noise).to(models.dtype)
    t = torch.tensor(list(timesteps), device=models.device, dtype=torch.long)
    with codebook.applied(models.text_encoder):
        context = models.text_encoder(prompt.ids[None].to(models.device)).last_hidden_state.to(models.dtype)
    grid = maps.mean(z, t, context, config.timestep_chunk)  # (77, side, side)
    token_maps = grid.flatten(1).float()
    gaussian = torch.from_numpy(gaussian_target(gaussians, grid.shape[-1])).flatten().to(models.device)
    mean_map = token_maps[prompt.real.to(models.device)].mean(dim=0)
    localization = localization_loss(mean_map, gaussian, config.alpha, config.beta)
    diversity = diversity_loss(token_maps[prompt.plain.to(models.device)])
    return {
        "loss": config.localization_weight * localization + config.diversity_weight * diversity,
        "localization": localization,
        "diversity": diversity,
    }


# ---------------------------------------------------------------- the loop


def encode_latents(
    models: LdmModels, samples: Sequence[TuningSample], batch_size: int = 8, progress: bool = True
) -> tuple[dict[Path, Any], list[tuple[int, str]]]:
    """z0 (CPU float32) per distinct image, batched; (line, problem) for images that cannot be decoded."""
    from tqdm.auto import tqdm

    paths = list(dict.fromkeys(s.image for s in samples))
    latents: dict[Path, Any] = {}
    problems: dict[Path, str] = {}

    def load(path: Path) -> np.ndarray | None:
        try:
            return load_jpg(path)
        except DataError as exc:
            problems[path] = str(exc)
            return None

    bar = tqdm(total=len(paths), unit="image", desc="encoding images", disable=not progress, dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="cxrbench-load") as pool:
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            images = list(pool.map(load, batch))
            good = [(p, im) for p, im in zip(batch, images, strict=True) if im is not None]
            if good:
                for (path, _), z in zip(good, encode_images(models, [im for _, im in good]).cpu(), strict=True):
                    latents[path] = z
            bar.update(len(batch))
    bar.close()
    return latents, [(s.line, f"line {s.line}: {problems[s.image]}") for s in samples if s.image in problems]


@dataclass
class TuneResult:
    checkpoint: Path
    steps: int
    final_losses: dict[str, float]


def tune(
    models: LdmModels,
    samples: Sequence[TuningSample],
    config: TuneConfig,
    output: Path,
    tuning_set_sha256: str = "",
    resume: bool = False,
    progress: bool = True,
    latents: dict[Path, Any] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TuneResult:
    """Tune the codebook's location rows on `samples`; checkpoints go to `output/step-*/` every
    `config.checkpoint_every` steps and at the end. With `resume`, continue from the latest checkpoint."""
    import torch
    from tqdm.auto import tqdm

    if not samples:
        raise DataError("the tuning set has no usable sample")
    output.mkdir(parents=True, exist_ok=True)
    check_output(output, resume)
    latents = latents if latents is not None else encode_latents(models, samples, progress=progress)[0]
    recording = config.recording()
    state = {
        "format": 1,
        "config": json.loads(json.dumps(asdict(config))),
        "layers": list(recording.layers),
        "timesteps": list(recording.recorded_timesteps()),
        "tuning_set_sha256": tuning_set_sha256,
        "samples": len(samples),
        "weights": models.hashes,
    }
    step = 0
    if resume:
        latest = checkpoint_dirs(output)[-1]
        old = read_state(latest)
        check_resumable(old, state, latest, asdict(TuneConfig()))
        codebook = Codebook.load(latest / CODEBOOK_FILE, models.tokenizer, models.text_encoder)
    else:
        codebook = Codebook.from_text_encoder(models.tokenizer, models.text_encoder)
    codebook.to(models.device)
    optimizer = torch.optim.Adam([codebook.location], lr=config.lr)
    if resume:
        load_optimizer(latest, optimizer, old)
        step = int(old["step"])
    special = {r.token_id for r in codebook.rows if r.kind == "special"}
    prompts = {p: encode_prompt(models.tokenizer, p, special) for p in dict.fromkeys(s.prompt for s in samples)}
    total = config.epochs * len(samples)
    losses_file = output / LOSSES_FILE
    truncate_losses(losses_file, step)
    recent: deque[dict[str, float]] = deque(maxlen=50)
    bar = tqdm(total=total, initial=step, unit="step", desc="tuning", disable=not progress, dynamic_ncols=True)
    checkpoint = None
    with TimestepMaps(models.unet, recording.layers) as maps, losses_file.open("a", encoding="utf-8") as log:
        if step == 0:
            log.write("step,epoch,line,loss,localization,diversity\n")
        order_of: dict[int, np.ndarray] = {}
        while step < total:
            epoch, position = divmod(step, len(samples))
            if epoch not in order_of:
                order_of = {epoch: np.random.default_rng([config.seed, epoch]).permutation(len(samples))}
            order = order_of[epoch]
            sample = samples[int(order[position])]
            latent = latents[sample.image].to(models.device)
            noise = noise_for_step(config.seed, step, (len(state["timesteps"]), *latent.shape)).to(models.device)
            losses = training_losses(
                models, codebook, maps, latent, prompts[sample.prompt], sample.gaussians, noise, config
            )
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            step += 1
            values = {k: v.item() for k, v in losses.items()}
            recent.append(values)
            log.write(f"{step},{epoch},{sample.line},{values['loss']:.6g},{values['localization']:.6g},")
            log.write(f"{values['diversity']:.6g}\n")
            bar.update(1)
            bar.set_postfix({k: f"{np.mean([r[k] for r in recent]):.4f}" for k in values})
            if on_step is not None:
                on_step(step, values)
            if step % config.checkpoint_every == 0 or step == total:
                log.flush()
                checkpoint = save_checkpoint(output, step, codebook, optimizer, {**state, "finished": step == total})
    bar.close()
    final = {k: float(np.mean([r[k] for r in recent])) for k in recent[0]} if recent else {}
    return TuneResult(checkpoint or checkpoint_dirs(output)[-1], step, final)
