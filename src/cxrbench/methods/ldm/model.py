"""Loading the MONAI CXR latent diffusion model and its SD-2.1-base CLIP text encoder from local files.

The bundle's `configs/inference.json` is read as plain JSON (its `$` expressions are never evaluated):
`autoencoder_def` and `diffusion_def` give the network arguments, which build MONAI core's AutoencoderKL and
DiffusionModelUNet; the `.pth` files use the older GenerativeModels parameter names and are converted by
MONAI's `load_old_state_dict`. Every file is verified (sha256) before it is read (cxrbench.weights).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrbench.errors import WeightsError
from cxrbench.hashing import sha256_file
from cxrbench.weights import files_of, load_state_dict, verify

LATENT_SCALE = 0.3
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class LdmModels:
    autoencoder: Any
    unet: Any
    tokenizer: Any
    text_encoder: Any
    device: Any
    dtype: Any
    hashes: dict[str, str]


def _file(name: str):
    return next(f for f in files_of("ldm") if f.path.endswith(name))


def _network_args(definition: dict[str, Any], network: type, where: str) -> dict[str, Any]:
    """Constructor arguments from a bundle definition: GenerativeModels' `num_channels` is MONAI's `channels`."""
    args = {("channels" if k == "num_channels" else k): v for k, v in definition.items() if not k.startswith("_")}
    expressions = [k for k, v in args.items() if isinstance(v, str) and v.startswith(("$", "@", "%"))]
    if expressions:
        raise WeightsError(
            f"{where}: {', '.join(expressions)} are bundle expressions; cxrbench reads plain values only"
        )
    accepted = set(inspect.signature(network.__init__).parameters)
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise WeightsError(f"{where}: {network.__name__} takes no argument(s) {', '.join(unknown)}")
    return args


def load_text(root: Path, allow_unverified: bool = False) -> tuple[Any, Any]:
    """The SD-2.1-base CLIP tokenizer and text encoder (frozen, float32, CPU) from `root`."""
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()  # cxrbench shows its own progress
    text_files = [
        verify(_file(n), root, allow_unverified) for n in ("text_encoder/config.json", "text_encoder/model.safetensors")
    ]
    tokenizer_files = [
        verify(_file(f"tokenizer/{n}"), root, allow_unverified)
        for n in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
    ]
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_files[0].parent), local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(str(text_files[0].parent), local_files_only=True, use_safetensors=True)
    return tokenizer, text_encoder.eval().requires_grad_(False)


def load_ldm(root: Path, device: str = "cpu", dtype: str = "float32", allow_unverified: bool = False) -> LdmModels:
    """Build and load the autoencoder, U-Net, tokenizer and text encoder from `root` (see cxrbench.weights)."""
    import torch
    from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

    if dtype not in DTYPES:
        raise WeightsError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    torch_dtype = getattr(torch, dtype)
    config_file = verify(_file("configs/inference.json"), root, allow_unverified)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        definitions = config["autoencoder_def"], config["diffusion_def"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise WeightsError(f"{config_file} is not the bundle's inference config: {exc}") from exc
    autoencoder = AutoencoderKL(**_network_args(definitions[0], AutoencoderKL, str(config_file)))
    unet = DiffusionModelUNet(**_network_args(definitions[1], DiffusionModelUNet, str(config_file)))
    for network, name in ((autoencoder, "autoencoder.pth"), (unet, "diffusion_model.pth")):
        state = load_state_dict(_file(name), root, allow_unverified)
        try:
            network.load_old_state_dict(state)
        except (RuntimeError, KeyError) as exc:
            raise WeightsError(f"{root / _file(name).path} does not fit the network in {config_file}: {exc}") from exc
    tokenizer, text_encoder = load_text(root, allow_unverified)
    hashes = {f.path: sha256_file(root / f.path) for f in files_of("ldm") if (root / f.path).is_file()}
    models = [
        m.to(device=device, dtype=torch_dtype).eval().requires_grad_(False) for m in (autoencoder, unet, text_encoder)
    ]
    return LdmModels(models[0], models[1], tokenizer, models[2], torch.device(device), torch_dtype, hashes)
