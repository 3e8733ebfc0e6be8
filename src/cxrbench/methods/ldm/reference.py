"""The literal heatmap pipeline of docs/methods.md ("The LDM heatmap"), for tests and benchmarks only: every inversion
step, both passes in one U-Net call, the full U-Net, every cross-attention map of every step kept, reduced at the
end. It shares with the fast path only what to record (attention.Recording) and the probabilities
(attention.attention_probs); hooks, step loop and reduction are its own."""

from __future__ import annotations

import numpy as np

from cxrbench.methods.ldm.attention import HEATMAP, Recording, attention_probs, cross_attention_name
from cxrbench.methods.ldm.ddim import alphas_cumprod, invert_step
from cxrbench.methods.ldm.heatmap import finish, token_map
from cxrbench.methods.ldm.model import LdmModels
from cxrbench.methods.ldm.pipeline import Tokens, encode_images, encode_text, token_spans


def reference_maps(
    models: LdmModels, image: np.ndarray, prompt: str, schedule_steps: np.ndarray | None = None
) -> tuple[list[dict[str, np.ndarray]], int]:
    """Every U-Net call's head-averaged cross-attention probabilities of the prompt context, (queries, 77) per
    attention layer name, one dict per inversion step of HEATMAP's schedule (or `schedule_steps`); and the number
    of U-Net calls made."""
    import torch

    z = encode_images(models, [image])
    context = encode_text(models, ["", prompt])
    attention = [n for n, m in models.unet.named_modules() if n.endswith("attn2")]
    kept: list[dict[str, np.ndarray]] = []
    current: dict[str, np.ndarray] = {}
    handles = [
        dict(models.unet.named_modules())[n].register_forward_hook(
            lambda m, a, k, o, name=n: current.__setitem__(name, attention_probs(m, a, k)[1].cpu().numpy()),
            with_kwargs=True,
        )
        for n in attention
    ]
    timesteps = HEATMAP.timesteps() if schedule_steps is None else schedule_steps
    alphas, calls = alphas_cumprod(), 0
    try:
        for i, t in enumerate(timesteps):
            t_batch = torch.full((2,), int(t), dtype=torch.long, device=models.device)
            with torch.no_grad():
                out = models.unet(torch.cat([z, z]).to(models.dtype), t_batch, context).float()
            calls += 1
            kept.append(dict(current))
            if i + 1 < len(timesteps):
                z = invert_step(z, out[:1], float(alphas[t]), float(alphas[timesteps[i + 1]]))
    finally:
        for handle in handles:
            handle.remove()
    return kept, calls


def reference_heatmap(
    models: LdmModels,
    image: np.ndarray,
    prompt: str,
    recording: Recording = HEATMAP,
    otsu: bool = True,
    tokens: Tokens = "all",
    class_name: str | None = None,
) -> tuple[np.ndarray, int]:
    """(the 512 x 512 heatmap, the number of U-Net calls made); `class_name` for tokens="pathology"."""
    kept, calls = reference_maps(models, image, prompt, recording.timesteps())
    span = token_spans(models.tokenizer, [prompt], tokens, None if class_name is None else [class_name])[0]
    chosen = [cross_attention_name(layer) for layer in recording.layers]
    maps = [token_map(kept[i][name].astype(np.float64), span) for i in recording.steps for name in chosen]
    return finish(np.mean(maps, axis=0), otsu), calls
