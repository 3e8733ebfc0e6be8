"""A tiny LDM "bundle" in the real layout, with random weights: the MONAI-zoo configs/inference.json and
models/*.pth in the older GenerativeModels parameter names, plus SD-2.1-base's CLIP tokenizer (the real BPE
sub-token splits) and a random one-layer text encoder. Same structure as the real model (3-level U-Net with
cross-attention at 16 x 16 for a 512 image, 4-level autoencoder), tiny widths. Needs torch, monai,
transformers, monai-generative (test-only, installed with --no-deps, writes the old names) and open_clip's
BPE table (`pip install --no-deps open_clip_torch`, never imported)."""

from __future__ import annotations

import gzip
import importlib.util
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
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
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


def clip_bpe_table() -> Path:
    """CLIP's BPE merge table as open_clip's wheel ships it (install `open_clip_torch` with --no-deps; the
    package is never imported)."""
    spec = importlib.util.find_spec("open_clip")
    table = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz" if spec else None
    if table is None or not table.is_file():
        raise FileNotFoundError("CLIP's BPE table comes from open_clip's wheel: pip install --no-deps open_clip_torch")
    return table


def write_clip_tokenizer(folder: Path) -> dict[str, int]:
    """SD-2.1-base's tokenizer files (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json)
    from CLIP's BPE table, with open_clip's vocabulary order: 256 byte characters, the same with </w>, the
    48,894 merges, then <|startoftext|> and <|endoftext|> (49,408 entries). Padding is "!" (id 0), as in SD-2.x.
    Returns the vocab."""
    with gzip.open(clip_bpe_table()) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    characters = list(_bytes_to_unicode().values())
    tokens = characters + [c + "</w>" for c in characters] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": "!",
        "unk_token": EOS,
        "do_lower_case": True,
        "model_max_length": 77,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    specials = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials), encoding="utf-8")
    return vocab


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
    vocab = write_clip_tokenizer(root / SD / "tokenizer")
    text = text_encoder(len(vocab), vocab[BOS], vocab[EOS], hidden_size=32, heads=2)
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


def full_unet():
    """The real model's U-Net architecture with random weights (float32, CPU)."""
    from monai.networks.nets import DiffusionModelUNet

    from cxrbench.methods.ldm.model import _network_args

    return DiffusionModelUNet(**_network_args(FULL_UNET, DiffusionModelUNet, "full size"))


def random_full_size_models(device: str, dtype):
    """LdmModels with the full-size autoencoder and U-Net (random weights), SD-2.1's real tokenizer and a
    1-layer 1024-wide CLIP text encoder (it runs once per prompt and does not matter for speed)."""
    import tempfile

    import torch
    from monai.networks.nets import AutoencoderKL
    from transformers import CLIPTokenizer

    from cxrbench.methods.ldm.model import LdmModels, _network_args

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    text = text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, hidden_size=1024, heads=16)
    autoencoder = AutoencoderKL(**_network_args(FULL_AUTOENCODER, AutoencoderKL, "full size"))
    nets = [m.to(device=device, dtype=dtype).eval().requires_grad_(False) for m in (autoencoder, full_unet(), text)]
    return LdmModels(nets[0], nets[1], tokenizer, nets[2], torch.device(device), dtype, {})
