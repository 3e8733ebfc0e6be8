"""A tiny LDM "bundle" in the real layout, with random weights: the MONAI-zoo configs/inference.json and
models/*.pth in the older GenerativeModels parameter names, plus an SD-2.1-style CLIP tokenizer and text
encoder folder. Same structure as the real model (3-level U-Net with cross-attention at 16 x 16 for a 512
image, 4-level autoencoder), tiny widths. Needs torch, monai, transformers and monai-generative (test-only,
installed with --no-deps) to write the old names."""

from __future__ import annotations

import json
from pathlib import Path

TINY_AUTOENCODER = {
    "_target_": "generative.networks.nets.AutoencoderKL",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "latent_channels": 3,
    "num_channels": [8, 8, 8, 8],
    "num_res_blocks": 1,
    "norm_num_groups": 4,
    "attention_levels": [False, False, False, False],
    "with_encoder_nonlocal_attn": False,
    "with_decoder_nonlocal_attn": False,
}
TINY_UNET = {
    "_target_": "generative.networks.nets.DiffusionModelUNet",
    "spatial_dims": 2,
    "in_channels": 3,
    "out_channels": 3,
    "num_res_blocks": 2,
    "num_channels": [8, 16, 16],
    "attention_levels": [False, True, True],
    "num_head_channels": [0, 16, 16],
    "norm_num_groups": 4,
    "with_conditioning": True,
    "cross_attention_dim": 32,
}
# The real model's definitions, as the bundle writes them (for construction without weights).
FULL_AUTOENCODER = {**TINY_AUTOENCODER, "num_channels": [64, 128, 128, 128], "num_res_blocks": 2, "norm_num_groups": 32}
FULL_UNET = {
    **TINY_UNET,
    "num_channels": [256, 512, 768],
    "num_head_channels": [0, 512, 768],
    "norm_num_groups": 32,
    "cross_attention_dim": 1024,
    "transformer_num_layers": 1,
    "norm_eps": 1e-6,
}
BUNDLE = "cxr_image_synthesis_latent_diffusion_model"
SD = "stable-diffusion-2-1-base"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, n = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def write_tiny_bundle(root: Path, seed: int = 0) -> Path:
    import torch
    from generative.networks.nets import AutoencoderKL, DiffusionModelUNet

    torch.manual_seed(seed)
    models = root / BUNDLE / "models"
    models.mkdir(parents=True, exist_ok=True)
    (root / BUNDLE / "configs").mkdir(exist_ok=True)
    config = {
        "autoencoder_def": TINY_AUTOENCODER,
        "diffusion_def": TINY_UNET,
        "scale_factor": 0.3,
        "load_old": 1,
        "network_def": "$@diffusion_def",
    }
    (root / BUNDLE / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    for cls, definition, name in (
        (AutoencoderKL, TINY_AUTOENCODER, "autoencoder.pth"),
        (DiffusionModelUNet, TINY_UNET, "diffusion_model.pth"),
    ):
        net = cls(**{k: v for k, v in definition.items() if not k.startswith("_")})
        with torch.no_grad():  # larger than default init so the tiny model's attention is not uniform
            for p in net.parameters():
                p.mul_(3.0)
        torch.save(net.state_dict(), models / name)
    # a character-level CLIP BPE vocabulary (no merges): the real tokenizer class and file format
    characters = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(characters + [c + "</w>" for c in characters])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    tokenizer = root / SD / "tokenizer"
    tokenizer.mkdir(parents=True, exist_ok=True)
    (tokenizer / "vocab.json").write_text(json.dumps(vocab))
    (tokenizer / "merges.txt").write_text("#version: 0.2\n")
    (tokenizer / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "model_max_length": 77,
            }
        )
    )
    text = text_encoder(len(vocab), vocab["<|startoftext|>"], vocab["<|endoftext|>"], hidden_size=32, heads=2)
    text.save_pretrained(root / SD / "text_encoder", safe_serialization=True)
    return root


def text_encoder(vocab_size: int, bos: int, eos: int, hidden_size: int, heads: int):
    """A one-layer CLIP text encoder with random weights (77 positions, SD-2.1's layout)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=heads,
        max_position_embeddings=77,
        bos_token_id=bos,
        eos_token_id=eos,
    )
    return CLIPTextModel(config)
