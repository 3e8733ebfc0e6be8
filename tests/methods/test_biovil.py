"""biovil / biovil-t against hi-ml-multimodal's own similarity map, on tiny random models in the real layout."""

import numpy as np
import pytest
from PIL import Image

from ..conftest import require

torch = require("torch")
require("torchvision")
require("health_multimodal")

SHAPES = ((600, 520), (517, 731), (512, 512), (333, 300))
PROMPTS = ("left lower pneumonia", "right upper <and> left upper atelectasis", "bilateral pleural effusion")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from cxrbench.testing.biovil import write_tiny_biovil
    from cxrbench.weights import pin

    root = tmp_path_factory.mktemp("biovil")
    write_tiny_biovil(root, "biovil", seed=3)  # seeds whose maps cross 0 (clamping is exercised)
    write_tiny_biovil(root, "biovil-t", seed=1)
    pin(root)
    return root


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate(SHAPES):
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        pixels = 100 + 60 * np.sin(xx / (20 + 5 * i)) * np.cos(yy / 30) + rng.normal(0, 10, shape)
        paths.append(folder / f"image{i}.png")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize("name", ["biovil", "biovil-t"])
def test_map_equals_the_library_map(name, weights, image_files):
    from health_multimodal.vlp import ImageTextInferenceEngine

    from cxrbench.benchmark.protocol import pad_to_frame, resize
    from cxrbench.datasets.images import load_jpg
    from cxrbench.registry import load_method

    method = load_method(name, weights=str(weights))
    library = ImageTextInferenceEngine(method.image_engine, method.text_engine)
    images = [load_jpg(p) for p in image_files]
    pairs = [(i, p) for i in range(len(images)) for p in PROMPTS[:2]]
    batched = method.heatmaps([images[i] for i, _ in pairs], [p for _, p in pairs])
    negative = 0
    for (i, prompt), ours in zip(pairs, batched, strict=True):
        height, width = images[i].shape
        expected = library.get_similarity_map_from_raw_data(image_files[i], prompt)
        negative += int(np.nanmin(expected) < 0)
        side = min(height, width)
        framed = pad_to_frame(resize(ours, side, side, method.interpolation), height, width)  # the scorer's frame
        np.testing.assert_array_equal(np.isnan(framed), np.isnan(expected))
        # batched convolutions may round differently from the library's one-image batches
        np.testing.assert_allclose(framed, np.maximum(expected, 0), rtol=0, atol=1e-6, equal_nan=True)
        crop = method.crop * min(height, width) // 512
        assert np.count_nonzero(~np.isnan(expected)) == int(crop) ** 2
    assert negative, "the tiny models should give some negative similarities, so clamping is exercised"
    single = method.heatmap(images[1], PROMPTS[1])
    np.testing.assert_array_equal(single, batched[3])


def test_each_prompt_is_embedded_once_and_images_in_batches(weights, image_files):
    from cxrbench.datasets.images import load_jpg
    from cxrbench.methods.biovil import BioVil

    method = BioVil(weights=weights, batch_size=2)
    text_calls, image_batches = [], []
    embed_text = method.text_engine.get_embeddings_from_prompt
    embed_images = method.image_engine.model.get_patchwise_projected_embeddings

    def counting_text(prompts, **kwargs):
        text_calls.append(list(prompts))
        return embed_text(prompts, **kwargs)

    def counting_images(pixels, **kwargs):
        image_batches.append(len(pixels))
        return embed_images(pixels, **kwargs)

    method.text_engine.get_embeddings_from_prompt = counting_text
    method.image_engine.model.get_patchwise_projected_embeddings = counting_images
    images = [load_jpg(p) for p in image_files[:3]]
    method.heatmaps([images[0], images[0], images[1], images[2]], [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[0]])
    method.heatmaps([images[1]], [PROMPTS[1]])  # the next pair of an image already seen
    method.heatmaps([images[0], images[2]], [PROMPTS[2], PROMPTS[2]])  # only "bilateral ..." is new
    assert text_calls == [[PROMPTS[0], PROMPTS[1]], [PROMPTS[2]]]
    assert image_batches == [2, 1]  # 3 distinct images in batches of 2; later pairs reuse their embeddings


def test_missing_or_unfitting_weights_say_what_and_where(weights, tmp_path):
    from cxrbench.errors import WeightsError
    from cxrbench.methods.biovil import BioVilT
    from cxrbench.weights import pin

    with pytest.raises(WeightsError, match=r"biovil_t_image_model_proj_size_128\.pt.*microsoft/BiomedVLP-BioViL-T"):
        BioVilT(weights=tmp_path)
    # the BioViL image weights under BioViL-T's name: the multi-image encoder has other parameters
    (tmp_path / "biovil_t_image_model_proj_size_128.pt").write_bytes(
        (weights / "biovil_image_resnet50_proj_size_128.pt").read_bytes()
    )
    (tmp_path / "BiomedVLP-BioViL-T").symlink_to(weights / "BiomedVLP-BioViL-T")
    pin(tmp_path)
    with pytest.raises(WeightsError, match="does not fit the biovil-t image model"):
        BioVilT(weights=tmp_path)


def test_biovil_runs_in_the_benchmark(weights, cli):
    result = cli("run", "--method", "biovil", "--dataset", "demo", "--weights", str(weights), "--limit", "3")
    assert result.returncode == 0, result.stderr
    assert "| **Average** | 3 |" in result.stdout
