"""The ablation options of ldm-zeroshot / ldm-tuned (docs/ldm.md section 5): parsed from `-o` text, part of the
config, each changing what it should (checked against the literal reference reduced by naive loops), defaults
unchanged."""

import numpy as np
import pytest

from ..conftest import require

torch = require("torch")
require("monai")
require("transformers")

OTSU = "threshold_multiotsu(classes=2)"


@pytest.fixture(scope="module")
def pairs():
    from cxrbench.datasets.demo import DemoDataset

    samples = list(DemoDataset())
    chosen = [samples[0], samples[7]]  # "right lower pneumonia", "right pleural pleural effusion"
    return [s.load_image() for s in chosen], [s.prompt for s in chosen]


@pytest.fixture(scope="module")
def codebook_folder(models, tmp_path_factory):
    from cxrbench.methods.ldm.codebook import Codebook

    folder = tmp_path_factory.mktemp("codebook")
    Codebook.from_text_encoder(models.tokenizer, models.text_encoder).save(folder)
    return folder


@pytest.fixture(scope="module")
def literal(models, pairs):
    """The literal pipeline's kept maps (every layer, every step of T = 300) for the first pair."""
    from cxrbench.methods.ldm.reference import reference_maps

    kept, calls = reference_maps(models, pairs[0][0], pairs[1][0])
    assert calls == 334
    return kept


def naive_heatmap(kept, steps, layers, columns, otsu=False):
    """The documented reduction written out: per (step, layer) the mean of the token columns, min-max on its
    grid, bilinear resize to 512, then the mean, blur, min-max (and Otsu)."""
    from cxrbench.benchmark.protocol import resize
    from cxrbench.methods.ldm.attention import cross_attention_name
    from cxrbench.methods.ldm.heatmap import finish

    maps = []
    for i in steps:
        for layer in layers:
            probs = kept[i][cross_attention_name(layer)].astype(np.float64)
            values = np.zeros(probs.shape[0])
            for c in columns:
                values += probs[:, c]
            values /= len(columns)
            side = round(len(values) ** 0.5)
            grid = values.reshape(side, side)
            grid = (grid - grid.min()) / (grid.max() - grid.min())
            maps.append(resize(grid, 512, 512).astype(np.float64))
    return finish(np.mean(maps, axis=0), otsu)


def naive_pathology_columns(tokenizer, prompt, pathology):
    """sampler.py (published): positions of the prompt's ids that are sub-tokens of the name, first to last,
    the last excluded unless it is the first."""
    ids = tokenizer(prompt).input_ids
    name = tokenizer(pathology).input_ids[1:-1]
    hits = [p for p, token in enumerate(ids) if token in name]
    first, last = hits[0], hits[-1]
    return list(range(first, last if last > first else first + 1))


def test_defaults_keep_the_config_and_text_options_give_the_same(bundle, models):
    from cxrbench.methods.ldm.zeroshot import LdmZeroShot
    from cxrbench.registry import load_method

    default = LdmZeroShot(weights=bundle)
    assert default.config() == {  # the keys and values of runs made before the options existed
        "weights": models.hashes,
        "dtype": "float32",
        "layers": [
            "down_blocks.2.attentions.1",
            "middle_block.attention",
            "up_blocks.0.attentions.1",
            "up_blocks.0.attentions.2",
        ],
        "steps": [120, 180],
        "otsu": OTSU,
    }
    spelled = load_method(
        "ldm-zeroshot",
        weights=str(bundle),
        layers="3,4,6,7",
        steps="120-180",
        schedule="300",
        otsu="true",
        tokens="all",
    )
    assert spelled.config() == default.config()
    ablation = load_method(
        "ldm-zeroshot",
        weights=str(bundle),
        layers="3-8",
        steps="40-60",
        schedule="100",
        otsu="false",
        tokens="pathology",
    )
    config = ablation.config()
    assert len(config["layers"]) == 6 and config["layers"][0] == "down_blocks.2.attentions.1"
    assert (config["steps"], config["schedule"], config["otsu"], config["tokens"]) == (
        [40, 60],
        100,
        False,
        "pathology",
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("layers", "11", "option layers='11'"),
        ("layers", "3-2", "option layers='3-2'"),
        ("layers", "mid_block", "option layers='mid_block'"),
        ("steps", "180-120", "option steps='180-120'"),
        ("steps", "300-335", "option steps='300-335'"),
        ("steps", "all", "option steps='all'"),
        ("schedule", "0", "option schedule=0"),
        ("schedule", "abc", "option schedule='abc'"),
        ("otsu", "maybe", "option otsu='maybe'"),
        ("tokens", "some", "option tokens='some'"),
    ],
)
def test_bad_option_values_are_one_clear_error(bundle, codebook_folder, option, value, message):
    from cxrbench.errors import CxrbenchError
    from cxrbench.registry import load_method

    for method in ("ldm-zeroshot", "ldm-tuned"):
        extra = {"checkpoint": str(codebook_folder)} if method == "ldm-tuned" else {}
        with pytest.raises(CxrbenchError, match=message) as caught:
            load_method(method, weights=str(bundle), **{option: value}, **extra)
        assert "Traceback" not in str(caught.value)


def test_layers_steps_and_otsu_change_what_they_should(models, pairs, literal):
    from skimage.filters import threshold_multiotsu

    from cxrbench.methods.ldm.attention import DEFAULT_LAYERS, Recording
    from cxrbench.methods.ldm.pipeline import fast_heatmaps
    from cxrbench.methods.ldm.reference import reference_heatmap

    image, prompt = pairs[0][0], pairs[1][0]
    n = len(models.tokenizer(prompt).input_ids)
    real = list(range(1, n - 1))
    default = fast_heatmaps(models, [image], [prompt], otsu=False)[0]
    assert np.abs(default - naive_heatmap(literal, range(120, 180), DEFAULT_LAYERS, real)).max() <= 1e-4
    reference, _ = reference_heatmap(models, image, prompt, otsu=False)
    assert np.abs(reference - naive_heatmap(literal, range(120, 180), DEFAULT_LAYERS, real)).max() <= 1e-6

    few = Recording(layers=("middle_block.attention",), steps=range(30, 40))
    chosen = fast_heatmaps(models, [image], [prompt], few, otsu=False)[0]
    assert np.abs(chosen - naive_heatmap(literal, range(30, 40), few.layers, real)).max() <= 1e-4
    assert np.abs(chosen - default).max() > 1e-2  # the options changed the map

    masked = fast_heatmaps(models, [image], [prompt])[0]
    threshold = threshold_multiotsu(default, classes=2)[0]
    np.testing.assert_array_equal(masked, np.where(default > threshold, default, 0).astype(np.float32))
    assert (masked == 0).mean() > 0.2 and (default == 0).sum() <= 1  # otsu=false: no mask, one minimum


def test_tokens_pathology_averages_only_the_pathology_columns(models, pairs, literal):
    from cxrbench.errors import CxrbenchError, DataError, PairsDataError
    from cxrbench.methods.ldm.attention import DEFAULT_LAYERS
    from cxrbench.methods.ldm.pipeline import fast_heatmaps, pathology_span, token_spans

    (image, _), (prompt, effusion) = pairs
    assert prompt.endswith("pneumonia") and effusion.endswith("pleural effusion")
    columns = naive_pathology_columns(models.tokenizer, prompt, "pneumonia")
    got = fast_heatmaps(models, [image], [prompt], otsu=False, tokens="pathology", class_names=["Pneumonia"])[0]
    assert np.abs(got - naive_heatmap(literal, range(120, 180), DEFAULT_LAYERS, columns)).max() <= 1e-4
    n = len(models.tokenizer(prompt).input_ids)
    assert columns != list(range(1, n - 1))  # the location words are left out
    for text in (effusion, "left lower pleural effusion"):
        span = pathology_span(models.tokenizer, text, "Pleural Effusion")
        assert list(range(span.start, span.stop)) == naive_pathology_columns(models.tokenizer, text, "pleural effusion")
    assert (span.start, span.stop) == (3, 6)  # <bos> left lower ple ural ef fusion: the published slice drops "fusion"
    # the class decides, not the words: a prompt naming two pathologies reads its class's tokens
    two = "left lower atelectasis and edema"
    assert pathology_span(models.tokenizer, two, "Edema") != pathology_span(models.tokenizer, two, "Atelectasis")
    with pytest.raises(DataError, match="holds no token of its class 'Pneumonia'"):
        fast_heatmaps(models, [image], ["left lower lung"], tokens="pathology", class_names=["Pneumonia"])
    with pytest.raises(CxrbenchError, match="needs the pairs' class names"):
        fast_heatmaps(models, [image], [prompt], tokens="pathology")
    # in a batch, every prompt lacking its class is named by its position, so that the others stay one batch
    with pytest.raises(PairsDataError) as bad:
        token_spans(models.tokenizer, [prompt, "left lower lung", effusion, "edema"], "pathology",
                    ["Pneumonia", "Pneumonia", "Pleural Effusion", "Atelectasis"])  # fmt: skip
    assert sorted(bad.value.reasons) == [1, 3] and "'left lower lung' holds no token" in bad.value.reasons[1]


def test_tokens_pathology_gets_each_pairs_class_from_the_runner(bundle, tmp_path):
    """Through the runner, in a batch of four pairs of four classes: each pair's stored heatmap is the one computed
    alone with its own class (to float rounding: another batch size)."""
    from cxrbench.benchmark.cache import HeatmapCache, cache_key
    from cxrbench.benchmark.runner import run_benchmark
    from cxrbench.benchmark.store import cache_dir
    from cxrbench.benchmark.summary import method_config
    from cxrbench.datasets.demo import DemoDataset
    from cxrbench.methods.ldm.zeroshot import LdmZeroShot

    method = LdmZeroShot(weights=bundle, tokens="pathology", otsu=False, schedule=20, batch_size=4)
    result = run_benchmark(method, "demo", out=tmp_path, limit=4, progress=False, score_workers=0)
    assert len(result.scores) == 4
    assert result.summary.settings["uses_class_names"] and result.summary.settings["bound"]  # never a competitor
    samples = list(DemoDataset())[:4]
    assert len({s.class_name for s in samples}) == 4
    cache, config = HeatmapCache(cache_dir(tmp_path, "demo", method.name)), method_config(method)
    method.shared = None  # computed afresh, not read from the run's shared work
    for s in samples:
        stored = cache.get(cache_key(method.name, config, s.pair_id, s.prompt, s.image.fingerprint(), s.class_name))
        np.testing.assert_allclose(stored, method.heatmap(s.load_image(), s.prompt, s.class_name), atol=1e-4)


def test_schedule_option_equals_the_literal_pipeline_at_that_schedule(models, pairs):
    from cxrbench.methods.ldm.attention import DEFAULT_LAYERS, Recording, published_window
    from cxrbench.methods.ldm.pipeline import fast_heatmaps
    from cxrbench.methods.ldm.reference import reference_heatmap

    image, prompt = pairs[0][1], pairs[1][1]
    short = Recording(DEFAULT_LAYERS, published_window(100), 100)
    expected, calls = reference_heatmap(models, image, prompt, short, otsu=False)
    assert calls == 100
    got = fast_heatmaps(models, [image], [prompt], short, otsu=False)[0]
    assert np.abs(got - expected).max() <= 1e-4
    default = fast_heatmaps(models, [image], [prompt], otsu=False)[0]
    assert np.abs(got - default).max() > 1e-3  # 0.0044 on the tiny random model (windows t 409-599 vs 360-537)
