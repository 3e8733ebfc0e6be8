"""What the LDM methods record (methods/ldm/attention.py): layer order and selection, step windows and schedules,
and the heatmap reduction against a naive mean of resized maps."""

import numpy as np
import pytest

from ..conftest import require

torch = require("torch")
require("monai")
require("transformers")

# The tiny bundle's U-Net has the real structure (levels, blocks, attention levels), so the same 11 layers.
TINY_LAYERS = [
    "down_blocks.1.attentions.0",
    "down_blocks.1.attentions.1",
    "down_blocks.2.attentions.0",
    "down_blocks.2.attentions.1",
    "middle_block.attention",
    "up_blocks.0.attentions.0",
    "up_blocks.0.attentions.1",
    "up_blocks.0.attentions.2",
    "up_blocks.1.attentions.0",
    "up_blocks.1.attentions.1",
    "up_blocks.1.attentions.2",
]


def published_collection(module, found=None):
    """models_local/attention.py `find_cross_attention_layers` of the published code, on MONAI's class."""
    from monai.networks.blocks.crossattention import CrossAttentionBlock

    found = [] if found is None else found
    for name, child in module.named_children():
        if isinstance(child, CrossAttentionBlock) and name == "attn2":
            found.append(child)
        else:
            published_collection(child, found)
    return found


def test_layer_indices_are_the_published_collection_order(models):
    from cxrbench.methods.ldm.attention import (
        DEFAULT_LAYERS,
        TUNING_LAYERS,
        cross_attention_layers,
        cross_attention_name,
    )

    layers = cross_attention_layers(models.unet)
    assert layers == TINY_LAYERS
    modules = dict(models.unet.named_modules())
    assert [modules[cross_attention_name(n)] for n in layers] == published_collection(models.unet)
    registered = [n for n, _ in models.unet.named_modules() if n.endswith("attn2")]  # registration order
    assert [cross_attention_name(n) for n in layers] == registered
    assert [layers[i] for i in (3, 4, 6, 7)] == list(DEFAULT_LAYERS)
    assert [layers[i] for i in (4, 5, 6, 7)] == list(TUNING_LAYERS)
    called = []  # the order the forward pass runs them in: the recorder's early stop relies on it
    handles = [
        modules[cross_attention_name(n)].register_forward_hook(lambda m, a, o, n=n: called.append(n)) for n in layers
    ]
    try:
        with torch.no_grad():
            models.unet(torch.randn(1, 3, 8, 8), torch.tensor([10]), torch.randn(1, 77, 32))
    finally:
        for handle in handles:
            handle.remove()
    assert called == layers


def test_layers_option_takes_indices_ranges_and_names():
    from cxrbench.errors import CxrbenchError
    from cxrbench.methods.ldm.attention import DEFAULT_LAYERS, select_layers

    assert select_layers("3,4,6,7", TINY_LAYERS) == DEFAULT_LAYERS
    assert select_layers(" 7, 6,4 ,3,3", TINY_LAYERS) == DEFAULT_LAYERS  # module order, once each
    assert select_layers("3-8", TINY_LAYERS) == tuple(TINY_LAYERS[3:9])  # the paper's L = 6
    assert select_layers("0-10", TINY_LAYERS) == tuple(TINY_LAYERS)
    assert select_layers(list(DEFAULT_LAYERS), TINY_LAYERS) == DEFAULT_LAYERS
    mixed = "middle_block.attention,up_blocks.1.attentions.2.transformer_blocks.0.attn2,0"
    assert select_layers(mixed, TINY_LAYERS) == (TINY_LAYERS[0], TINY_LAYERS[4], TINY_LAYERS[10])
    for bad in ("11", "8-3", "3,,4", "up_blocks.9.attentions.0", "", "-1", "3-"):
        with pytest.raises(CxrbenchError, match=r"option layers=.*0 down_blocks\.1\.attentions\.0"):
            select_layers(bad, TINY_LAYERS)


def test_schedules_and_windows_follow_the_published_evaluation():
    from cxrbench.errors import CxrbenchError
    from cxrbench.methods.ldm.attention import TUNING_TIMESTEPS, check_schedule, parse_window, published_window
    from cxrbench.methods.ldm.ddim import schedule_timesteps

    for steps in (300, 100, 50, 7, 1000, 1):
        stride, trailing, t = 1000 // steps, [], 999  # set_timesteps_new(T, "trailing"), then flipped
        while t >= 0:
            trailing.append(t)
            t -= stride
        assert schedule_timesteps(steps).tolist() == trailing[::-1]
        assert schedule_timesteps(steps, "leading").tolist() == [k * stride for k in range(steps)]
        t_min, t_max = steps // 2 - 10 * steps // 100, steps // 2 + 10 * steps // 100  # eval_ldm.py
        assert published_window(steps) == range(t_min, t_max)
    assert published_window(300) == range(120, 180) and published_window(100) == range(40, 60)
    assert schedule_timesteps(300)[[120, 179]].tolist() == [360, 537]
    assert schedule_timesteps(100)[[40, 59]].tolist() == [409, 599]
    assert tuple(range(300, 600, 10)) == TUNING_TIMESTEPS
    assert parse_window("40-60", 100) == range(40, 60)
    assert parse_window((0, 334), 334) == range(0, 334)
    for bad in ("60-40", "0-101", "40", "a-b", "40-40"):
        with pytest.raises(CxrbenchError, match="option steps="):
            parse_window(bad, 100)
    for bad in (0, 1001, True, 2.5):
        with pytest.raises(CxrbenchError, match="option schedule="):
            check_schedule(bad)


def test_pair_reduction_equals_the_mean_of_resized_maps():
    from cxrbench.methods.ldm.attention import PairMaps, mean_map
    from cxrbench.methods.ldm.heatmap import token_map

    rng = np.random.default_rng(0)
    spans = [slice(1, 4), slice(2, 3)]
    maps = PairMaps(spans)
    naive = [[], []]
    for queries in (256, 64, 256, 1024):  # layers at different grids, as over several steps
        probs = rng.random((2, queries, 77))
        probs[1, :, 2] = rng.random(queries) ** 8  # adversarial: one column of very unequal values
        maps.add(torch.from_numpy(probs).float())
        for j, span in enumerate(spans):
            naive[j].append(token_map(probs[j].astype(np.float32).astype(np.float64), span))
    got = np.stack([mean_map(*maps.pair(j)) for j in range(2)])
    assert got.shape == (2, 512, 512) and maps.count == 4
    for j in range(2):
        np.testing.assert_allclose(got[j], np.mean(naive[j], axis=0), rtol=0, atol=1e-6)
