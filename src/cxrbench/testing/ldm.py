"""A tiny LDM "bundle" in the real layout, with random weights: the bundle's configs/inference.json (the
GenerativeModels model-zoo version, key for key, `$` expressions included) and models/*.pth in the older
GenerativeModels parameter names, plus SD-2.1-base's CLIP tokenizer (the real BPE sub-token splits) and a random
one-layer text encoder. The network definitions are the real ones scaled down: the same structure (4-level
autoencoder with non-local attention in encoder and decoder, 3-level U-Net with one-head cross-attention at
32 x 32 and 16 x 16 for a 512 image, `norm_eps` 1e-6), channels / 8 in the autoencoder and / 32 in the U-Net.
Needs torch, monai, transformers and the `fixtures` extra: monai-generative (writes the old names) and
open_clip's BPE table (its wheel's data file; open_clip is never imported). See docs/ldm.md."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

# The real bundle's network definitions (GenerativeModels' model-zoo
# cxr_image_synthesis_latent_diffusion_model/configs/inference.json).
FULL_AUTOENCODER = {
    "_target_": "generative.networks.nets.AutoencoderKL",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "latent_channels": 3,
    "num_channels": [64, 128, 128, 128],
    "num_res_blocks": 2,
    "norm_num_groups": 32,
    "norm_eps": 1e-06,
    "attention_levels": [False, False, False, False],
    "with_encoder_nonlocal_attn": True,
    "with_decoder_nonlocal_attn": True,
}
FULL_UNET = {
    "_target_": "generative.networks.nets.DiffusionModelUNet",
    "spatial_dims": 2,
    "in_channels": 3,
    "out_channels": 3,
    "num_channels": [256, 512, 768],
    "num_res_blocks": 2,
    "attention_levels": [False, True, True],
    "norm_num_groups": 32,
    "norm_eps": 1e-06,
    "resblock_updown": False,
    "num_head_channels": [0, 512, 768],
    "with_conditioning": True,
    "transformer_num_layers": 1,
    "cross_attention_dim": 1024,
}
# The same structure, scaled down (channels per group 2; one attention head per level as in the real model).
TINY_AUTOENCODER = {**FULL_AUTOENCODER, "num_channels": [8, 16, 16, 16], "norm_num_groups": 4}
TINY_UNET = {
    **FULL_UNET,
    "num_channels": [8, 16, 24],
    "num_head_channels": [0, 16, 24],
    "norm_num_groups": 4,
    "cross_attention_dim": 32,
}


def inference_config(autoencoder_def: dict[str, Any], diffusion_def: dict[str, Any]) -> dict[str, Any]:
    """The real bundle's configs/inference.json, key for key (`$` expressions included), with these network
    definitions."""
    return {
        "imports": [
            "$import torch",
            "$from datetime import datetime",
            "$from pathlib import Path",
            "$from transformers import CLIPTextModel",
            "$from transformers import CLIPTokenizer",
        ],
        "//bundle_root": ".",
        "bundle_root": "/media/walter/Storage/Projects/GenerativeModels/model-zoo/models/"
        "cxr_image_synthesis_latent_diffusion_model",
        "model_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/output'",
        "create_output_dir": "$Path(@output_dir).mkdir(exist_ok=True)",
        "prompt": "Big right-sided pleural effusion",
        "prompt_list": "$['', @prompt]",
        "guidance_scale": 7.0,
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "tokenizer": '$CLIPTokenizer.from_pretrained("stabilityai/stable-diffusion-2-1-base", subfolder="tokenizer")',
        "text_encoder": '$CLIPTextModel.from_pretrained("stabilityai/stable-diffusion-2-1-base", '
        'subfolder="text_encoder")',
        "tokenized_prompt": '$@tokenizer(@prompt_list, padding="max_length", max_length=@tokenizer.model_max_length, '
        'truncation=True,return_tensors="pt")',
        "prompt_embeds": "$@text_encoder(@tokenized_prompt.input_ids.squeeze(1))[0].to(@device)",
        "out_file": "$datetime.now().strftime('sample_%H%M%S_%d%m%Y')",
        "autoencoder_def": autoencoder_def,
        "load_autoencoder_path": "$@model_dir + '/autoencoder.pth'",
        "load_autoencoder": "$@autoencoder_def.load_state_dict(torch.load(@load_autoencoder_path))",
        "autoencoder": "$@autoencoder_def.to(@device)",
        "diffusion_def": diffusion_def,
        "load_diffusion_path": "$@model_dir + '/diffusion_model.pth'",
        "load_diffusion": "$@diffusion_def.load_state_dict(torch.load(@load_diffusion_path))",
        "diffusion": "$@diffusion_def.to(@device)",
        "scheduler": {
            "_target_": "generative.networks.schedulers.DDIMScheduler",
            "_requires_": ["@load_diffusion", "@load_autoencoder"],
            "beta_start": 0.0015,
            "beta_end": 0.0205,
            "num_train_timesteps": 1000,
            "beta_schedule": "scaled_linear",
            "prediction_type": "v_prediction",
            "clip_sample": False,
        },
        "noise": "$torch.randn((1, 3, 64, 64)).to(@device)",
        "set_timesteps": "$@scheduler.set_timesteps(num_inference_steps=50)",
        "sampler": {"_target_": "scripts.sampler.Sampler", "_requires_": "@set_timesteps"},
        "sample": "$@sampler.sampling_fn(@noise, @autoencoder, @diffusion, @scheduler, @prompt_embeds)",
        "saver": {
            "_target_": "scripts.saver.JPGSaver",
            "_requires_": "@create_output_dir",
            "output_dir": "@output_dir",
        },
        "save_nii": "$@saver.save(@sample, @out_file)",
        "save": "$torch.save(@sample, @output_dir + '/' + @out_file + '.pt')",
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
    """CLIP's BPE merge table as open_clip's wheel ships it (the `fixtures` extra installs `open_clip_torch`; the
    package is never imported)."""
    spec = importlib.util.find_spec("open_clip")
    table = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz" if spec else None
    if table is None or not table.is_file():
        raise FileNotFoundError("CLIP's BPE table comes from open_clip's wheel: pip install -e \".[fixtures]\"")
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


def generative_networks(autoencoder_def: dict[str, Any], diffusion_def: dict[str, Any]) -> tuple[Any, Any]:
    """GenerativeModels' own AutoencoderKL and DiffusionModelUNet built from bundle definitions (default
    initialisation), as the bundle's `_target_`s build them."""
    from generative.networks.nets import AutoencoderKL, DiffusionModelUNet

    def plain(definition: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in definition.items() if not k.startswith("_")}

    return AutoencoderKL(**plain(autoencoder_def)), DiffusionModelUNet(**plain(diffusion_def))


def write_bundle(root: Path, autoencoder: Any, unet: Any, definitions: tuple[dict, dict]) -> Path:
    """The bundle layout under `root`: configs/inference.json (the real file with these network `definitions`),
    models/autoencoder.pth and models/diffusion_model.pth (the GenerativeModels networks' state dicts), SD-2.1's
    tokenizer and a random one-layer text encoder as wide as the U-Net's cross-attention (32 without)."""
    import torch

    bundle = root / BUNDLE
    (bundle / "models").mkdir(parents=True, exist_ok=True)
    (bundle / "configs").mkdir(exist_ok=True)
    config = inference_config(*definitions)
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=4), encoding="utf-8")
    torch.save(autoencoder.state_dict(), bundle / "models" / "autoencoder.pth")
    torch.save(unet.state_dict(), bundle / "models" / "diffusion_model.pth")
    vocab = write_clip_tokenizer(root / SD / "tokenizer")
    width = definitions[1].get("cross_attention_dim") or 32
    text = text_encoder(len(vocab), vocab[BOS], vocab[EOS], hidden_size=width, heads=2)
    text.save_pretrained(root / SD / "text_encoder", safe_serialization=True)
    return root


def write_tiny_bundle(root: Path, seed: int = 2) -> Path:
    """The tiny bundle (TINY_AUTOENCODER, TINY_UNET) with random weights. Seeds 0 and 1 draw tiny models on
    which the method tests' statistical checks are marginal (tuning's gain in test_tuning, bfloat16 agreement
    in test_ldm); 2 is the first that is not."""
    import torch

    torch.manual_seed(seed)
    autoencoder, unet = generative_networks(TINY_AUTOENCODER, TINY_UNET)
    with torch.no_grad():  # larger than default init so the tiny model's attention is not uniform
        for p in [*autoencoder.parameters(), *unet.parameters()]:
            p.mul_(3.0)
    return write_bundle(root, autoencoder, unet, (TINY_AUTOENCODER, TINY_UNET))


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

    from cxrbench.methods.ldm.model import network_args

    return DiffusionModelUNet(**network_args(FULL_UNET, DiffusionModelUNet, "full size"))


def full_unet_pass_flops() -> dict[int | None, int]:
    """FLOPs of the full-size U-Net at batch 1 (torch's FlopCounterMode on meta tensors: shapes only, no compute):
    for a pass stopped after its k-th cross-attention layer in module order (k = 1 .. 11), and for a whole pass
    (None)."""
    import contextlib

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cxrbench.methods.ldm.attention import StopForward

    def stop(*_: Any) -> None:
        raise StopForward

    unet = full_unet().eval().to("meta")
    layers = [m for n, m in unet.named_modules() if n.endswith(".attn2")]
    x = torch.randn(1, 3, 64, 64, device="meta")
    t, context = torch.tensor([400], device="meta"), torch.randn(1, 77, 1024, device="meta")
    flops: dict[int | None, int] = {}
    for k in [*range(1, len(layers) + 1), None]:
        handle = layers[k - 1].register_forward_hook(stop) if k is not None else None
        with FlopCounterMode(display=False) as counter, torch.no_grad(), contextlib.suppress(StopForward):
            unet(x, t, context)
        if handle is not None:
            handle.remove()
        flops[k] = counter.get_total_flops()
    return flops


def random_full_size_models(device: str, dtype):
    """LdmModels with the full-size autoencoder and U-Net (random weights), SD-2.1's real tokenizer and a
    1-layer 1024-wide CLIP text encoder (it runs once per prompt and does not matter for speed)."""
    import tempfile

    import torch
    from monai.networks.nets import AutoencoderKL
    from transformers import CLIPTokenizer

    from cxrbench.methods.ldm.model import LdmModels, network_args

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    text = text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, hidden_size=1024, heads=16)
    autoencoder = AutoencoderKL(**network_args(FULL_AUTOENCODER, AutoencoderKL, "full size"))
    nets = [m.to(device=device, dtype=dtype).eval().requires_grad_(False) for m in (autoencoder, full_unet(), text)]
    return LdmModels(nets[0], nets[1], tokenizer, nets[2], torch.device(device), dtype, {})
