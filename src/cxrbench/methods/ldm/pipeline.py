"""The LDM heatmap pipeline (docs/methods.md, "The LDM heatmap"): preprocessing, text and image encoding, DDIM
inversion with cross-attention recording, and the fast path used by the methods.

The fast path gives the literal pipeline's heatmap (reference.py) while doing less: the inversion stops after
the last recorded step; the prompt-conditioned U-Net pass runs only on recorded steps and stops after the
last recorded layer; only the chosen layers' attention probabilities are computed and each is reduced to its
512 x 512 map at once (running sum, never all maps held); each distinct prompt is encoded once; each distinct
image is encoded and inverted once, however many prompts it has; images and prompts are batched.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cxrbench.benchmark.protocol import resize
from cxrbench.hashing import array_digest
from cxrbench.methods.ldm.attention import DEFAULT_LAYERS, RECORDED_STEPS, AttentionRecorder
from cxrbench.methods.ldm.ddim import alphas_cumprod, inversion_timesteps, invert_step
from cxrbench.methods.ldm.heatmap import SIZE, finish, grid_map
from cxrbench.methods.ldm.model import LATENT_SCALE, LdmModels

if TYPE_CHECKING:
    from cxrbench.methods.ldm.codebook import Codebook

MAX_TOKENS = 77


def preprocess(image: np.ndarray) -> np.ndarray:
    """Grayscale [0, 1] -> shorter side resized to 512 (bilinear), centre crop 512 x 512."""
    height, width = image.shape
    scale = SIZE / min(height, width)
    h, w = max(SIZE, int(height * scale)), max(SIZE, int(width * scale))
    resized = resize(image, h, w) if (h, w) != (height, width) else image.astype(np.float32)
    top, left = round((h - SIZE) / 2), round((w - SIZE) / 2)
    return resized[top : top + SIZE, left : left + SIZE]


def token_counts(tokenizer, prompts: Sequence[str]) -> list[int]:
    """Unpadded id counts (with <bos> and <eos>), truncated to 77 with a warning."""
    counts = []
    for prompt in prompts:
        n = len(tokenizer(prompt, truncation=False).input_ids)
        if n > MAX_TOKENS:
            warnings.warn(f"prompt {prompt[:40]!r}... has {n} tokens; truncated to {MAX_TOKENS}", stacklevel=3)
        counts.append(min(n, MAX_TOKENS))
    return counts


def encode_text(models: LdmModels, prompts: Sequence[str], codebook: Codebook | None = None):
    """77 x D last hidden states, one per prompt; with a codebook, its rows replace the token embeddings."""
    import torch

    ids = models.tokenizer(
        list(prompts), padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
    ).input_ids.to(models.device)
    embedding = codebook.applied(models.text_encoder) if codebook is not None else contextlib.nullcontext()
    with torch.no_grad(), embedding:
        return models.text_encoder(ids).last_hidden_state.to(models.dtype)


def encode_images(models: LdmModels, images: Sequence[np.ndarray]):
    """Encoder mean x 0.3, float32, one latent per image."""
    import torch

    batch = torch.from_numpy(np.stack([preprocess(im) for im in images])[:, None]).to(models.device, models.dtype)
    with torch.no_grad():
        mean, _ = models.autoencoder.encode(batch)
    return mean.float() * LATENT_SCALE


@dataclass
class _Accumulator:
    """Running sums of the min-maxed grid maps per pair and grid size, fed by hooks on the recorded layers.

    Bilinear resizing is linear and its weights sum to 1, so the mean of the resized maps equals the resized
    mean of the grid maps: summing on the 16 x 16 grid and resizing once gives the documented mean of 512 x 512
    maps (to float rounding) without resizing every (layer, step) map.
    """

    n_ids: list[int]
    sums: dict[int, np.ndarray] = field(default_factory=dict)
    count: int = 0

    def add(self, probs) -> None:
        probs = probs.detach().cpu().numpy().astype(np.float64)
        maps = np.stack([grid_map(probs[j], n) for j, n in enumerate(self.n_ids)])
        side = maps.shape[-1]
        self.sums[side] = self.sums.get(side, 0) + maps
        self.count += 1

    def mean(self) -> np.ndarray:
        """(pairs, 512, 512): the mean over every recorded (layer, step) map."""
        total = sum(np.stack([resize(m, SIZE, SIZE) for m in grid]).astype(np.float64) for grid in self.sums.values())
        return total / self.count


def fast_heatmaps(
    models: LdmModels,
    images: Sequence[np.ndarray],
    prompts: Sequence[str],
    layers: Sequence[str] = DEFAULT_LAYERS,
    otsu: bool = True,
    codebook: Codebook | None = None,
) -> list[np.ndarray]:
    """512 x 512 heatmaps for (image, prompt) pairs; see the module docstring for what is skipped."""
    import torch

    keys = [array_digest(im) for im in images]
    distinct_images = list(dict.fromkeys(keys))
    distinct_prompts = list(dict.fromkeys(prompts))
    image_of = torch.tensor([distinct_images.index(k) for k in keys], device=models.device)
    first = {k: images[keys.index(k)] for k in distinct_images}
    z = encode_images(models, [first[k] for k in distinct_images])
    context = encode_text(models, ["", *distinct_prompts], codebook)
    empty = context[:1].expand(len(distinct_images), -1, -1)
    pair_context = context[[1 + distinct_prompts.index(p) for p in prompts]]
    counts = token_counts(models.tokenizer, distinct_prompts)
    accumulator = _Accumulator([counts[distinct_prompts.index(p)] for p in prompts])
    timesteps, alphas = inversion_timesteps(), alphas_cumprod()
    last_step = RECORDED_STEPS[-1]
    with AttentionRecorder(models.unet, layers, accumulator.add) as recorder, torch.no_grad():
        for i, t in enumerate(timesteps[: last_step + 1]):
            t_batch = torch.full((len(distinct_images),), int(t), device=models.device, dtype=torch.long)
            if i in RECORDED_STEPS:
                recorder.recorded_pass(z[image_of].to(models.dtype), t_batch[image_of], pair_context)
            if i == last_step:
                break
            v = models.unet(z.to(models.dtype), t_batch, empty).float()
            z = invert_step(z, v, float(alphas[t]), float(alphas[timesteps[i + 1]]))
    return [finish(m, otsu) for m in accumulator.mean()]
