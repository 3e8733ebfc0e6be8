"""ldm-zeroshot on a tiny random model saved in the real bundle formats (old GenerativeModels names)."""

import copy

import numpy as np
import pytest

from ..conftest import require

torch = require("torch")
require("monai")
require("transformers")


@pytest.fixture(scope="module")
def images():
    from cxrbench.datasets.demo import DemoDataset

    samples = list(DemoDataset())[:2]
    return [s.load_image() for s in samples], [s.prompt for s in samples]


def test_schedule_and_inversion_step_match_diffusers():
    diffusers = require("diffusers")
    from cxrbench.methods.ldm.ddim import alphas_cumprod, inversion_timesteps, invert_step

    scheduler = diffusers.DDIMInverseScheduler(
        num_train_timesteps=1000,
        beta_start=0.0015,
        beta_end=0.0205,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        clip_sample=False,
    )
    scheduler.set_timesteps(300)
    ours = alphas_cumprod()
    np.testing.assert_allclose(ours, scheduler.alphas_cumprod.double().numpy(), rtol=1e-6)
    steps = inversion_timesteps()
    assert (len(steps), steps[0], steps[1], steps[-1]) == (334, 0, 3, 999)
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    for t in (0, 3, 360, 537, 993):
        v = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
        expected = scheduler.step(v, t + 3, z).prev_sample
        got = invert_step(z, v, float(scheduler.alphas_cumprod[t]), float(scheduler.alphas_cumprod[t + 3]))
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
        ours_step = invert_step(z, v, float(ours[t]), float(ours[t + 3]))
        torch.testing.assert_close(ours_step, expected, rtol=1e-5, atol=1e-5)
        z = expected


def test_full_size_unet_is_built_from_the_bundle_definition():
    from monai.networks.nets import DiffusionModelUNet

    from cxrbench.methods.ldm.model import network_args

    definition = {
        "_target_": "generative.networks.nets.DiffusionModelUNet",
        "spatial_dims": 2,
        "in_channels": 3,
        "out_channels": 3,
        "num_res_blocks": 2,
        "num_channels": [256, 512, 768],
        "attention_levels": [False, True, True],
        "with_conditioning": True,
        "cross_attention_dim": 1024,
        "num_head_channels": [0, 512, 768],
        "transformer_num_layers": 1,
        "norm_eps": 1e-6,
    }
    unet = DiffusionModelUNet(**network_args(definition, DiffusionModelUNet, "inference.json"))
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(264e6, rel=0.01)
    names = [n for n, _ in unet.named_modules() if n.endswith("attn2")]
    assert [names[i] for i in (3, 4, 6, 7)] == [
        "down_blocks.2.attentions.1.transformer_blocks.0.attn2",
        "middle_block.attention.transformer_blocks.0.attn2",
        "up_blocks.0.attentions.1.transformer_blocks.0.attn2",
        "up_blocks.0.attentions.2.transformer_blocks.0.attn2",
    ]


def test_old_parameter_names_load_with_identical_outputs(bundle, models):
    """The tiny bundle's networks as load_ldm returns them equal GenerativeModels' own on the same files
    (the real definitions at full size: tests/methods/test_ldm_bundle.py)."""
    from cxrbench.testing.ldm import BUNDLE, TINY_AUTOENCODER, TINY_UNET, generative_networks

    old_autoencoder, old_unet = generative_networks(TINY_AUTOENCODER, TINY_UNET)
    for network, name in ((old_autoencoder, "autoencoder.pth"), (old_unet, "diffusion_model.pth")):
        network.load_state_dict(torch.load(bundle / BUNDLE / "models" / name, weights_only=True))
        network.double().eval()
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(1, 1, 64, 64, generator=generator, dtype=torch.float64)
    x = torch.randn(1, 3, 16, 16, generator=generator, dtype=torch.float64)
    t, context = torch.tensor([400]), torch.randn(1, 77, 32, generator=generator, dtype=torch.float64)
    autoencoder, unet = copy.deepcopy(models.autoencoder).double(), copy.deepcopy(models.unet).double()
    with torch.no_grad():
        mean = autoencoder.encode(image)[0]
        torch.testing.assert_close(mean, old_autoencoder.encode(image)[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(autoencoder.decode(mean), old_autoencoder.decode(mean), rtol=0, atol=1e-5)
        torch.testing.assert_close(unet(x, t, context), old_unet(x, t, context), rtol=0, atol=1e-5)


def test_fast_path_equals_the_literal_pipeline(models, images):
    from cxrbench.methods.ldm.pipeline import fast_heatmaps
    from cxrbench.methods.ldm.reference import reference_heatmap

    # Without the Otsu mask: a threshold turns float rounding at its edge into jumps of the whole map value
    # (the mask itself is checked in test_reduction_selects_real_tokens_and_applies_otsu).
    (first, second), (prompt_a, prompt_b) = images
    fast = fast_heatmaps(models, [first, first, second], [prompt_a, prompt_b, prompt_a], otsu=False)
    for heatmap, prompt in zip(fast[:2], (prompt_a, prompt_b), strict=True):
        expected, calls = reference_heatmap(models, first, prompt, otsu=False)
        assert calls == 334
        assert heatmap.shape == (512, 512)
        assert np.abs(heatmap - expected).max() <= 1e-4
    alone = fast_heatmaps(models, [second], [prompt_a], otsu=False)[0]
    assert np.abs(fast[2] - alone).max() <= 1e-4  # batching does not change a heatmap
    assert np.abs(fast[0] - fast[1]).max() > 1e-3  # the prompt matters


def test_reduction_selects_real_tokens_and_applies_otsu():
    from skimage.filters import threshold_multiotsu

    from cxrbench.methods.ldm.heatmap import finish, real_tokens, token_map

    probs = np.full((256, 77), 1e-3)
    probs[17, 3] = 1.0  # real token 3 (of "<bos> t1 t2 t3 <eos>": n_ids = 5) peaks at grid cell (1, 1)
    probs[200, 0] = probs[200, 4] = probs[200, 30] = 5.0  # <bos>, <eos> and padding are ignored
    grid = token_map(probs, real_tokens(5))
    assert np.unravel_index(grid.argmax(), grid.shape) == (47, 47)  # centre of cell (1, 1) in 512 / 16 = 32 px
    heat = finish(grid, otsu=True)
    plain = finish(grid, otsu=False)
    assert np.array_equal(heat > 0, plain > threshold_multiotsu(plain, classes=2)[0])  # as the published sampler
    assert heat.max() == 1.0


def test_method_runs_in_the_benchmark(bundle, cli, tmp_path):
    result = cli(
        "run",
        "-m",
        "ldm-zeroshot",
        "-d",
        "demo",
        "--weights",
        str(bundle),
        "--limit",
        "1",
        "--no-progress",
        "--n-resamples",
        "100",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads((tmp_path / "runs" / "demo" / "ldm-zeroshot" / "summary.json").read_text())
    assert summary["settings"]["interpolation"] == "nearest"
    assert summary["torch"]["torch"] == torch.__version__
    assert any(k.endswith("diffusion_model.pth") for k in summary["identity"]["method_config"]["weights"])


def test_missing_weights_and_unknown_layers_say_what_to_do(bundle, models, images, tmp_path):
    from cxrbench.errors import WeightsError
    from cxrbench.methods.ldm.attention import Recording
    from cxrbench.methods.ldm.model import load_ldm
    from cxrbench.methods.ldm.pipeline import fast_heatmaps

    with pytest.raises(WeightsError, match=r"missing weight file .*inference\.json .*MONAI model zoo bundle"):
        load_ldm(tmp_path)
    with pytest.raises(WeightsError, match="no cross-attention layer"):
        fast_heatmaps(models, images[0][:1], images[1][:1], Recording(layers=("up_blocks.9.attentions.0",)))


def test_long_prompt_is_truncated_with_a_warning(models):
    from cxrbench.methods.ldm.pipeline import token_counts

    with pytest.warns(UserWarning, match="truncated to 77"):
        assert token_counts(models.tokenizer, ["left lower " * 40]) == [77]


def test_bfloat16_runs_and_agrees_with_float32(bundle, models, images):
    from cxrbench.methods.ldm.model import load_ldm
    from cxrbench.methods.ldm.pipeline import fast_heatmaps

    half = load_ldm(bundle, dtype="bfloat16")
    assert next(half.unet.parameters()).dtype == torch.bfloat16
    low = fast_heatmaps(half, images[0][:1], images[1][:1], otsu=False)[0]
    full = fast_heatmaps(models, images[0][:1], images[1][:1], otsu=False)[0]
    assert np.corrcoef(low.ravel(), full.ravel())[0, 1] > 0.9
