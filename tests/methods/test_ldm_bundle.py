"""load_ldm on the real bundle's network definitions: the MONAI networks it returns compute what GenerativeModels'
own networks compute with the same checkpoint (docs/ldm.md section 2), whatever MONAI converts on the way."""

import pytest

from ..conftest import require

torch = require("torch")
require("monai")
require("transformers")
require("generative")  # monai-generative, test-only: the reference networks and the old parameter names

# Beside the real definitions: more GenerativeModels AttentionBlocks (autoencoder levels 3 and 4, and the U-Net's
# self-attention without text, whose `proj_attn` MONAI's U-Net conversion copies in every version), with 2 and 3
# heads where the real model has 1.
SELF_ATTENTION_AUTOENCODER = {"attention_levels": [False, False, True, True]}
SELF_ATTENTION_UNET = {"with_conditioning": False, "cross_attention_dim": None, "num_head_channels": [0, 8, 8]}


def randomise(network, seed: int) -> None:
    """Every parameter drawn anew, `proj_attn` and the norms included: weights N(0, 1 / fan_in), norm scales
    N(1, 0.3^2), biases and norm shifts N(0, 0.3^2)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in network.named_parameters():
            if p.ndim > 1:
                mean, std = 0.0, p[0].numel() ** -0.5
            else:
                mean, std = (1.0 if name.endswith("weight") else 0.0), 0.3
            p.copy_(mean + std * torch.randn(p.shape, generator=generator))


def write(root, definitions, seed=0, written=None):
    """GenerativeModels networks from `definitions`, randomised, saved in the bundle layout under `root` with
    the config of `written` (default: the same definitions) and pinned; returns the networks (float64)."""
    from cxrbench.testing.ldm import generative_networks, write_bundle
    from cxrbench.weights import pin

    networks = generative_networks(*definitions)
    for i, network in enumerate(networks):
        randomise(network, seed + i)
    write_bundle(root, *networks, written or definitions)
    pin(root)
    return [n.double().eval() for n in networks]


def definitions(case: str) -> tuple[dict, dict]:
    from cxrbench.testing.ldm import FULL_AUTOENCODER, TINY_UNET

    if case == "real":  # the autoencoder at full size; the U-Net's structure at 1/32 of its channels
        return FULL_AUTOENCODER, TINY_UNET
    return {**FULL_AUTOENCODER, **SELF_ATTENTION_AUTOENCODER}, {**TINY_UNET, **SELF_ATTENTION_UNET}


@pytest.mark.parametrize("case", ["real", "self-attention"])
def test_loaded_networks_compute_what_generative_models_computes(case, tmp_path):
    from cxrbench.methods.ldm.model import load_ldm

    old_autoencoder, old_unet = write(tmp_path, definitions(case))
    models = load_ldm(tmp_path)
    autoencoder, unet = models.autoencoder.double(), models.unet.double()
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(2, 1, 64, 96, generator=generator, dtype=torch.float64)  # 8 x 12 latent, not square
    latent = torch.randn(2, 3, 8, 12, generator=generator, dtype=torch.float64)
    noisy = torch.randn(2, 3, 16, 24, generator=generator, dtype=torch.float64)
    steps = torch.tensor([10, 700])
    context = None if case == "self-attention" else torch.randn(2, 77, 32, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        pairs = {
            "encoder mean": (autoencoder.encode(image)[0], old_autoencoder.encode(image)[0]),
            "decoder": (autoencoder.decode(latent), old_autoencoder.decode(latent)),
            "U-Net": (unet(noisy, steps, context), old_unet(noisy, steps, context)),
        }
    for name, (ours, theirs) in pairs.items():
        assert theirs.std() > 0.1, name  # the check is not on a constant output
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_a_checkpoint_that_does_not_fit_its_definition_is_refused(tmp_path):
    """The two public inference.json versions differ in the autoencoder's non-local attention: a checkpoint with
    it under a definition without it must not load with layers left at their initial values."""
    from cxrbench.errors import WeightsError
    from cxrbench.methods.ldm.model import load_ldm
    from cxrbench.testing.ldm import TINY_AUTOENCODER, TINY_UNET

    without = {**TINY_AUTOENCODER, "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False}
    write(tmp_path, (TINY_AUTOENCODER, TINY_UNET), written=(without, TINY_UNET))
    with pytest.raises(WeightsError, match=r"autoencoder\.pth .*does not fit the network"):
        load_ldm(tmp_path)


def drop_output_projection(monkeypatch):
    """A MONAI whose self-attention has no output projection."""
    from monai.networks.blocks import selfattention

    init = selfattention.SABlock.__init__

    def without(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.out_proj = torch.nn.Identity()

    monkeypatch.setattr(selfattention.SABlock, "__init__", without)


def rename_attention_block(monkeypatch):
    """A MONAI whose networks no longer build SpatialAttentionBlocks (another class in their place)."""
    import monai.networks.blocks

    monkeypatch.setattr(monai.networks.blocks, "SpatialAttentionBlock", type("Renamed", (torch.nn.Module,), {}))


@pytest.mark.parametrize("change", [drop_output_projection, rename_attention_block])
def test_a_monai_whose_attention_blocks_changed_is_refused(change, monkeypatch, tmp_path):
    from cxrbench.errors import WeightsError
    from cxrbench.methods.ldm.model import load_ldm
    from cxrbench.testing.ldm import TINY_AUTOENCODER, TINY_UNET

    write(tmp_path, (TINY_AUTOENCODER, TINY_UNET))
    change(monkeypatch)
    with pytest.raises(WeightsError, match=r"autoencoder\.pth .*(docs/ldm\.md|does not fit)"):
        load_ldm(tmp_path)


def test_a_checkpoint_in_monai_names_is_refused():
    from monai.networks.nets import AutoencoderKL

    from cxrbench.errors import WeightsError
    from cxrbench.methods.ldm.model import _load_generative, network_args
    from cxrbench.testing.ldm import TINY_AUTOENCODER

    network = AutoencoderKL(**network_args(TINY_AUTOENCODER, AutoencoderKL, "inference.json"))
    with pytest.raises(WeightsError, match="uses MONAI core's parameter names"):
        _load_generative(network, dict(network.state_dict()), "autoencoder.pth")
