"""The LDM heatmap pipeline (docs/methods.md, "The LDM heatmap"): preprocessing, text and image encoding, DDIM
inversion with cross-attention recording, and the fast path used by the methods.

The fast path gives the literal pipeline's heatmap (reference.py) while doing less: the inversion stops after
the last recorded step; the prompt-conditioned U-Net pass runs only on recorded steps and stops after the
last recorded layer; only the chosen layers' attention probabilities are computed and each is reduced to its
512 x 512 map at once (running sum, never all maps held); each distinct prompt is encoded once; each distinct
image is encoded and inverted once, however many prompts it has; images and prompts are batched. Which layers and
steps are recorded and how their maps are reduced: attention.py. Given the run's shared folder (shared.py), a
configuration reuses the inversion trajectories and unthresholded maps that other configurations stored there.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from cxrbench.benchmark.protocol import resize
from cxrbench.errors import CxrbenchError, DataError, PairsDataError
from cxrbench.hashing import array_digest
from cxrbench.methods.ldm.attention import HEATMAP, AttentionRecorder, PairMaps, Recording, mean_map
from cxrbench.methods.ldm.ddim import alphas_cumprod, invert_step
from cxrbench.methods.ldm.heatmap import SIZE, finish, real_tokens
from cxrbench.methods.ldm.model import LATENT_SCALE, LdmModels
from cxrbench.methods.ldm.shared import SharedWork, work_key

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


def token_spans(
    tokenizer, prompts: Sequence[str], tokens: Tokens = "all", class_names: Sequence[str] | None = None
) -> list[slice]:
    """The token positions each prompt's map averages: its real tokens (1 .. n-2), or with `tokens="pathology"`
    those of the pair's class (pathology_span; prompts holding none: PairsDataError naming their positions)."""
    if tokens == "pathology":
        if class_names is None:
            raise CxrbenchError("option tokens=pathology needs the pairs' class names (the runner passes them)")
        spans, bad = [], {}
        for i, (prompt, class_name) in enumerate(zip(prompts, class_names, strict=True)):
            try:
                spans.append(pathology_span(tokenizer, prompt, class_name))
            except DataError as exc:
                bad[i] = str(exc)
        if bad:  # named all at once, so that the runner computes the others as one batch, not one by one
            raise PairsDataError(bad)
        return spans
    return [real_tokens(n) for n in token_counts(tokenizer, prompts)]


def pathology_span(tokenizer, prompt: str, pathology: str) -> slice:
    """The published attribution experiment's token positions (sampler.py, `cls_name`, the pair's class): the
    positions p of the prompt's ids that are any sub-token of the pathology's name, from the first (a) to the last
    (b), taken as slice(a, b) -- b itself only when a == b. A prompt holding none is a DataError (the published
    sampler returns a NaN map for it; the paper's 694 MS-CXR pairs leave such pairs out)."""
    ids = tokenizer(prompt, truncation=True, max_length=MAX_TOKENS).input_ids
    sub = set(tokenizer(pathology, add_special_tokens=False).input_ids)
    positions = [i for i, token in enumerate(ids) if token in sub]
    if not positions:
        raise DataError(
            f"prompt {prompt!r} holds no token of its class {pathology!r}: option tokens=pathology leaves such pairs "
            "out, as the paper's attribution experiment does"
        )
    first, last = positions[0], positions[-1]
    return slice(first, last + 1 if last == first else last)


def invert(models: LdmModels, z, empty, recording: Recording):
    """DDIM inversion of the latents `z` (float32, one per image) with the empty prompt's context `empty` (1 x 77 x D),
    up to the recording's last step: the latents fed to the U-Net at each recorded step, (steps, images, C, H, W)."""
    import torch

    timesteps, alphas = recording.timesteps(), alphas_cumprod()
    last_step, kept = recording.steps[-1], []
    with torch.no_grad():
        for i, t in enumerate(timesteps[: last_step + 1]):
            if i in recording.steps:
                kept.append(z)
            if i == last_step:
                break
            t_batch = torch.full((len(z),), int(t), device=models.device, dtype=torch.long)
            v = models.unet(z.to(models.dtype), t_batch, empty.expand(len(z), -1, -1)).float()
            z = invert_step(z, v, float(alphas[t]), float(alphas[timesteps[i + 1]]))
    return torch.stack(kept)


class _Keys:
    """Keys of the shared work (shared.py) for one batch: everything the inversion depends on besides the image."""

    def __init__(self, models: LdmModels, recording: Recording, empty):
        self.base = {
            "weights": models.hashes,
            "dtype": str(models.dtype),
            "schedule": recording.schedule,
            "spacing": recording.spacing,
            "empty": array_digest(empty.float().cpu().numpy()),
        }
        self.recording = recording

    def trajectory(self, image: str) -> str:
        return work_key(kind="trajectory", image=image, **self.base)

    def maps(self, image: str, context, span: slice) -> str:
        recording = self.recording
        return work_key(
            kind="maps",
            image=image,
            context=array_digest(context.float().cpu().numpy()),
            span=[span.start, span.stop],
            layers=list(recording.layers),
            steps=[recording.steps.start, recording.steps.stop],
            **self.base,
        )


def window_latents(
    models: LdmModels,
    images: Sequence[np.ndarray],
    digests: Sequence[str],
    keys: _Keys,
    empty,
    shared: SharedWork | None,
):
    """The recorded window's latents of each image, (steps, images, C, H, W): stored trajectories where the shared
    work holds them, the others inverted together (and stored)."""
    import torch

    steps = keys.recording.steps
    found = [shared.trajectory(keys.trajectory(d), steps) if shared else None for d in digests]
    missing = [i for i, latents in enumerate(found) if latents is None]
    if missing:
        computed = invert(models, encode_images(models, [images[i] for i in missing]), empty, keys.recording)
        for k, i in enumerate(missing):
            found[i] = computed[:, k]
            if shared is not None:
                shared.put_trajectory(keys.trajectory(digests[i]), steps, computed[:, k].cpu().numpy())
    # one memory layout whatever their source: the U-Net's result can depend on it (oneDNN picks kernels by layout)
    return torch.stack([torch.as_tensor(latents, device=models.device) for latents in found], dim=1).contiguous()


def fast_heatmaps(
    models: LdmModels,
    images: Sequence[np.ndarray],
    prompts: Sequence[str],
    recording: Recording = HEATMAP,
    otsu: bool = True,
    codebook: Codebook | None = None,
    tokens: Tokens = "all",
    shared: SharedWork | None = None,
    class_names: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """512 x 512 heatmaps for (image, prompt) pairs; see the module docstring for what is skipped. With `shared`,
    attention maps and trajectories other configurations stored there are reused, and this call's are stored.
    `class_names`: the pairs' classes, for `tokens="pathology"`."""
    import torch

    spans = token_spans(models.tokenizer, prompts, tokens, class_names)  # a bad prompt fails before any work
    digests = [f"{array_digest(im)}-{im.shape}-{im.dtype}" for im in images]  # content, shape and type
    distinct_prompts = list(dict.fromkeys(prompts))
    context = encode_text(models, ["", *distinct_prompts], codebook)
    pair_context = context[[1 + distinct_prompts.index(p) for p in prompts]]
    keys = _Keys(models, recording, context[:1])
    map_keys = [keys.maps(d, c, span) for d, c, span in zip(digests, pair_context, spans, strict=True)]
    found = [shared.maps(k) if shared else None for k in map_keys]
    todo = [j for j, entry in enumerate(found) if entry is None]
    if todo:
        distinct = list(dict.fromkeys(digests[j] for j in todo))
        first = {d: images[digests.index(d)] for d in distinct}
        latents = window_latents(models, [first[d] for d in distinct], distinct, keys, context[:1], shared)
        image_of = torch.tensor([distinct.index(digests[j]) for j in todo], device=models.device)
        maps = PairMaps([spans[j] for j in todo])
        timesteps = recording.timesteps()
        with AttentionRecorder(models.unet, recording.layers, maps.add) as recorder, torch.no_grad():
            for step, z in zip(recording.steps, latents, strict=True):
                t_batch = torch.full((len(todo),), int(timesteps[step]), device=models.device, dtype=torch.long)
                recorder.recorded_pass(z[image_of].to(models.dtype), t_batch, pair_context[todo])
        for k, j in enumerate(todo):
            found[j] = maps.pair(k)
            if shared is not None:
                shared.put_maps(map_keys[j], *found[j])
    return [finish(mean_map(*entry), otsu) for entry in found]
