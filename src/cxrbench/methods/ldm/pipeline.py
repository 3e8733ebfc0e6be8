"""The LDM heatmap pipeline (docs/methods.md, "The LDM heatmap"): preprocessing, text and image encoding, DDIM
inversion with cross-attention recording, and the fast path used by the methods.

The fast path gives the literal pipeline's heatmap (reference.py) while doing less: the inversion stops after
the last recorded step; the prompt-conditioned U-Net pass runs only on recorded steps and stops after the
last recorded layer; only the chosen layers' attention probabilities are computed and each is reduced to its
512 x 512 map at once (running sum, never all maps held); each distinct prompt is encoded once; each distinct
image is encoded and inverted once, however many prompts it has; images and prompts are batched. Which layers and
steps are recorded and how their maps are reduced: attention.py.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark.protocol import resize
from cxrbench.errors import DataError
from cxrbench.hashing import array_digest
from cxrbench.methods.ldm.attention import HEATMAP, AttentionRecorder, PairMaps, Recording
from cxrbench.methods.ldm.ddim import alphas_cumprod, invert_step
from cxrbench.methods.ldm.heatmap import SIZE, finish, real_tokens
from cxrbench.methods.ldm.model import LATENT_SCALE, LdmModels

if TYPE_CHECKING:
    from cxrbench.methods.ldm.codebook import Codebook

MAX_TOKENS = 77
Tokens = Literal["all", "pathology"]


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


def token_spans(tokenizer, prompts: Sequence[str], tokens: Tokens = "all") -> list[slice]:
    """The token positions each prompt's map averages: its real tokens (1 .. n-2), or with `tokens="pathology"`
    those of the pathology it names (pathology_span)."""
    if tokens == "pathology":
        return [pathology_span(tokenizer, prompt) for prompt in prompts]
    return [real_tokens(n) for n in token_counts(tokenizer, prompts)]


def pathology_span(tokenizer, prompt: str) -> slice:
    """The published attribution experiment's token positions (sampler.py, `cls_name`): the positions p of the
    prompt's ids that are sub-tokens of the pathology's name, from the first (a) to the last (b), taken as
    slice(a, b) -- b itself only when a == b. The pathology is the one name of the vocabulary whose sub-tokens
    all occur, in order and adjacent, in the prompt; a prompt naming none or several is a DataError."""
    ids = tokenizer(prompt, truncation=True, max_length=MAX_TOKENS).input_ids
    found = {}
    for name in PATHOLOGIES:
        sub = tokenizer(name.lower(), add_special_tokens=False).input_ids
        if any(ids[i : i + len(sub)] == sub for i in range(len(ids) - len(sub) + 1)):
            found[name] = set(sub)
    if len(found) != 1:
        what = "none" if not found else "several (" + ", ".join(found) + ")"
        raise DataError(
            f"prompt {prompt!r} names {what} of the pathologies {', '.join(PATHOLOGIES)}: option tokens=pathology "
            "needs exactly one"
        )
    (sub,) = found.values()
    positions = [i for i, token in enumerate(ids) if token in sub]
    first, last = positions[0], positions[-1]
    return slice(first, last + 1 if last == first else last)


def fast_heatmaps(
    models: LdmModels,
    images: Sequence[np.ndarray],
    prompts: Sequence[str],
    recording: Recording = HEATMAP,
    otsu: bool = True,
    codebook: Codebook | None = None,
    tokens: Tokens = "all",
) -> list[np.ndarray]:
    """512 x 512 heatmaps for (image, prompt) pairs; see the module docstring for what is skipped."""
    import torch

    spans = token_spans(models.tokenizer, prompts, tokens)  # before any work: a bad prompt fails at once
    keys = [array_digest(im) for im in images]
    distinct_images = list(dict.fromkeys(keys))
    distinct_prompts = list(dict.fromkeys(prompts))
    image_of = torch.tensor([distinct_images.index(k) for k in keys], device=models.device)
    first = {k: images[keys.index(k)] for k in distinct_images}
    z = encode_images(models, [first[k] for k in distinct_images])
    context = encode_text(models, ["", *distinct_prompts], codebook)
    empty = context[:1].expand(len(distinct_images), -1, -1)
    pair_context = context[[1 + distinct_prompts.index(p) for p in prompts]]
    maps = PairMaps(spans)
    timesteps, alphas = recording.timesteps(), alphas_cumprod()
    last_step = recording.steps[-1]
    with AttentionRecorder(models.unet, recording.layers, maps.add) as recorder, torch.no_grad():
        for i, t in enumerate(timesteps[: last_step + 1]):
            t_batch = torch.full((len(distinct_images),), int(t), device=models.device, dtype=torch.long)
            if i in recording.steps:
                recorder.recorded_pass(z[image_of].to(models.dtype), t_batch[image_of], pair_context)
            if i == last_step:
                break
            v = models.unet(z.to(models.dtype), t_batch, empty).float()
            z = invert_step(z, v, float(alphas[t]), float(alphas[timesteps[i + 1]]))
    return [finish(m, otsu) for m in maps.mean()]
