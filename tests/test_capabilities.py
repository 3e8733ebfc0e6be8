"""The method contract: one capability per method, checked once, and the runner's path chosen from it."""

import numpy as np
import pytest

from cxrbench.baselines.gaussians import CenterGaussian, OracleGaussian
from cxrbench.baselines.lut_prior import LutPrior
from cxrbench.baselines.predictions import BoxPredictions
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.capabilities import MethodContractError, describe
from cxrbench.types import ImageSource, Sample


class Image:
    name = "image"

    def heatmap(self, image, prompt):
        return np.ones((4, 4))


class Batched(Image):
    name = "batched"
    batch_size = 3

    def heatmaps(self, images, prompts):
        return [self.heatmap(i, p) for i, p in zip(images, prompts, strict=True)]


class PerSample:
    name = "per-sample"

    def heatmap_for_sample(self, sample):
        return np.ones((sample.height, sample.width))


def test_capabilities_of_the_built_in_kinds(tmp_path):
    (tmp_path / "b.csv").write_text("pair_id,x_min,y_min,x_max,y_max\n")
    assert describe(Image()).capability == "image"
    assert describe(Batched()).capability == "batched" and describe(Batched()).batch_size == 3
    assert describe(PerSample()).capability == "sample" and not describe(PerSample()).needs_image
    assert describe(OracleGaussian()).capability == "sample" and describe(OracleGaussian()).frame == "full"
    assert describe(BoxPredictions(tmp_path / "b.csv")).boxes
    assert describe(CenterGaussian()).needs_image and not describe(CenterGaussian()).cacheable


def test_bounds_declare_themselves():
    assert describe(OracleGaussian()).bound and describe(CenterGaussian()).bound and describe(LutPrior()).bound
    assert not describe(Image()).bound and not describe(Batched()).bound

    class Ceiling(Image):
        name = "ceiling"
        bound = True

    assert describe(Ceiling()).bound


class NoName:
    def heatmap(self, image, prompt):
        return image


class Nothing:
    name = "nothing"


class Both(PerSample):
    name = "both"

    def boxes_for_sample(self, sample):
        return []


class SampleAndImage(PerSample, Image):
    name = "mixed"


class BadFrame(Image):
    frame = "cropped"


class BadInterpolation(Image):
    interpolation = "bicubic"


class BadBatch(Batched):
    batch_size = 0


class BadBound(Image):
    bound = "yes"


class BadClassNames(Image):
    uses_class_names = "yes"


class SampleWithClassNames(PerSample):
    uses_class_names = True


@pytest.mark.parametrize(
    ("method", "message"),
    [
        (NoName(), "needs a non-empty string attribute `name`"),
        (Nothing(), "has none of heatmap\\(image, prompt\\)"),
        (Both(), "several kinds of prediction \\(sample, boxes\\)"),
        (SampleAndImage(), "several kinds of prediction \\(image, sample\\)"),
        (BadFrame(), "frame must be one of square, full, auto, not 'cropped'"),
        (BadInterpolation(), "interpolation must be 'bilinear' or 'nearest', not 'bicubic'"),
        (BadBatch(), "batch_size must be a positive integer, not 0"),
        (BadBound(), "bound must be True or False, not 'yes'"),
        (BadClassNames(), "uses_class_names must be True or False, and True only with heatmap"),
        (SampleWithClassNames(), "uses_class_names must be True or False, and True only with heatmap"),
    ],
)
def test_contract_errors_name_what_is_wrong(method, message, tmp_path):
    with pytest.raises(MethodContractError, match=message):
        describe(method)
    with pytest.raises(MethodContractError, match=message):  # checked before any work
        run_benchmark(method, "demo", out=tmp_path, limit=2, n_resamples=100, progress=False)
    assert not (tmp_path / "demo").exists()


def test_sample_methods_never_load_an_image(tmp_path):
    def unreadable():
        raise AssertionError("the image of a per-sample method must not be read")

    class OneSample:
        name = "one"
        classes = ("Edema",)

        def __iter__(self):
            from cxrbench.types import Box

            image = ImageSource(unreadable, lambda: "fixed")
            yield Sample("p1", "i1", "Edema", "left edema", (Box(2, 2, 6, 6),), 10, 12, image)

    result = run_benchmark(PerSample(), OneSample(), out=tmp_path, n_resamples=100, progress=False)
    assert result.summary.n_scored == 1 and result.summary.settings["capability"] == "sample"
