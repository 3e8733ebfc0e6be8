"""Loading the MONAI CXR latent diffusion model and its SD-2.1-base CLIP text encoder from local files.

The bundle's `configs/inference.json` is read as plain JSON (its `$` expressions are never evaluated):
`autoencoder_def` and `diffusion_def` give the network arguments, which build MONAI core's AutoencoderKL and
DiffusionModelUNet; the `.pth` files use the older GenerativeModels parameter names and are converted by
MONAI's `load_old_state_dict`, after which the output projection of every converted GenerativeModels
`AttentionBlock` is set to the identity, as GenerativeModels computed it (`_load_generative`; docs/ldm.md).
Every file is verified (sha256) before it is read (cxrbench.weights).
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
PROJ_ATTN = (".proj_attn.weight", ".proj_attn.bias")


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


def network_args(definition: dict[str, Any], network: type, where: str) -> dict[str, Any]:
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


def _load_generative(network: Any, state: dict[str, Any], where: str) -> None:
    """Load a GenerativeModels state dict into MONAI core's `network` so that it computes what GenerativeModels
    computed (docs/ldm.md section 2).

    MONAI's `load_old_state_dict` renames the parameters. GenerativeModels' `AttentionBlock` (the autoencoder's
    attention, the U-Net's self-attention without text) creates a `proj_attn` layer that its forward never
    applies (GenerativeModels issue #503, MONAI issue #7991), while MONAI's `SpatialAttentionBlock` applies
    `attn.out_proj`. MONAI 1.4-1.5 set the autoencoder's out_proj to the identity but copy `proj_attn` into the
    U-Net's; MONAI >= 1.6 copies it in both (MONAI pull request #8786). So every converted block's out_proj is
    set to the identity with zero bias here, whatever the MONAI version. WeightsError unless the conversion is
    one to one: every checkpoint tensor but `proj_attn` used, every parameter but those out_proj filled (MONAI
    does not check), and the SpatialAttentionBlocks exactly the checkpoint's AttentionBlocks.
    """
    import monai
    from monai.networks.blocks import SpatialAttentionBlock

    names = set(network.state_dict())
    if set(state) <= names:
        raise WeightsError(
            f"{where} uses MONAI core's parameter names; cxrbench reads the bundle's GenerativeModels file"
        )
    remaining = dict(state)
    network.load_old_state_dict(remaining)  # pops what it converts
    attention = {n: m for n, m in network.named_modules() if isinstance(m, SpatialAttentionBlock)}
    blocks = {k.removesuffix(PROJ_ATTN[0]) for k in state if k.endswith(PROJ_ATTN[0])}
    filled = names - {k for k in names if k.rpartition(".attn.out_proj.")[0] in attention}
    unused = sorted(k for k in remaining if not k.endswith(PROJ_ATTN))
    loaded = sum(not k.endswith(PROJ_ATTN) for k in state) - len(unused)
    square = _square_projections(attention.values())
    if unused or loaded != len(filled) or set(attention) != blocks or not square:
        raise WeightsError(
            f"{where}: MONAI {monai.__version__} did not convert the checkpoint one to one ({loaded} tensors for "
            f"{len(filled)} parameters; unused: {', '.join(unused[:3]) or 'none'}; GenerativeModels attention "
            f"blocks {sorted(blocks)}, MONAI SpatialAttentionBlocks {sorted(attention)}, each with a square linear "
            f"attn.out_proj: {square}): the checkpoint does not fit the network definition, or this MONAI converts "
            f"unlike the versions checked in docs/ldm.md"
        )
    for block in attention.values():
        _set_identity(block.attn.out_proj)


def _square_projections(blocks: Any) -> bool:
    import torch

    projections = [getattr(block.attn, "out_proj", None) for block in blocks]
    return all(
        isinstance(p, torch.nn.Linear) and p.bias is not None and p.in_features == p.out_features for p in projections
    )


def _set_identity(linear: Any) -> None:
    import torch

    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.in_features, dtype=linear.weight.dtype))
        linear.bias.zero_()


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
    autoencoder = AutoencoderKL(**network_args(definitions[0], AutoencoderKL, str(config_file)))
    unet = DiffusionModelUNet(**network_args(definitions[1], DiffusionModelUNet, str(config_file)))
    for network, name in ((autoencoder, "autoencoder.pth"), (unet, "diffusion_model.pth")):
        state = load_state_dict(_file(name), root, allow_unverified)
        where = f"{root / _file(name).path} (network from {config_file})"
        try:
            _load_generative(network, state, where)
        except (RuntimeError, KeyError) as exc:
            raise WeightsError(f"{where}: the checkpoint does not fit the network definition: {exc}") from exc
    tokenizer, text_encoder = load_text(root, allow_unverified)
    hashes = {f.path: sha256_file(root / f.path) for f in files_of("ldm") if (root / f.path).is_file()}
    models = [
        m.to(device=device, dtype=torch_dtype).eval().requires_grad_(False) for m in (autoencoder, unet, text_encoder)
    ]
    return LdmModels(models[0], models[1], tokenizer, models[2], torch.device(device), torch_dtype, hashes)
