import numpy as np
import pytest

from cxrbench.anatomy.vocabulary import LOCATIONS, PATHOLOGIES
from cxrbench.benchmark.metrics import boxes_to_mask
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.datasets.demo import DemoDataset, _Phantom


@pytest.fixture(scope="module")
def samples():
    return list(DemoDataset())


def test_size_classes_and_prompts(samples):
    assert len(samples) == 64
    assert {s.class_name for s in samples} == set(PATHOLOGIES)
    assert all(sum(s.class_name == c for s in samples) == 8 for c in PATHOLOGIES)
    assert len({s.pair_id for s in samples}) == 64
    for s in samples:
        pathology = s.class_name.lower()
        assert s.prompt.endswith(" " + pathology)
        locations = s.prompt[: -len(pathology) - 1].split(" <and> ")
        assert all(loc in LOCATIONS for loc in locations), s.prompt


def test_sizes_include_square_portrait_and_landscape(samples):
    shapes = {(s.height, s.width) for s in samples}
    assert any(h == w for h, w in shapes)
    assert any(h > w for h, w in shapes)
    assert any(h < w for h, w in shapes)


def test_images_are_deterministic_in_range_and_match_their_size(samples):
    for s in samples[:10]:
        image = s.load_image()
        assert image.dtype == np.float32 and image.shape == (s.height, s.width)
        assert image.min() >= 0.0 and image.max() <= 1.0
        np.testing.assert_array_equal(image, DemoDataset().sample(int(s.pair_id[-3:])).load_image())


def test_side_convention_patient_right_is_image_left(samples):
    for s in samples:
        centres = [(b.x_min + b.x_max) / 2 / s.width for b in s.boxes]
        if s.prompt.startswith("right"):
            assert all(c < 0.5 for c in centres), s
        if s.prompt.startswith("left"):
            assert all(c > 0.5 for c in centres), s
        if s.prompt.startswith(("bilateral", "bibasilar", "pulmonary")):
            assert min(centres) < 0.5 < max(centres)


def test_findings_are_drawn_inside_their_boxes(samples):
    """The pixels a finding changes lie inside its ground-truth boxes (compared with the same phantom without it)."""
    for s in samples:
        phantom = _Phantom(int(s.pair_id[-3:]))
        change = np.abs(phantom.draw() - phantom.draw(finding=False))
        inside = boxes_to_mask(s.boxes, s.height, s.width)
        assert change[inside].sum() > 0.97 * change.sum(), s.prompt
        assert change[inside].mean() > 0.03, s.prompt


def test_oracle_beats_the_centre_floor_on_every_class(tmp_path):
    kwargs = {"out": tmp_path, "n_resamples": 200, "progress": False}
    oracle = run_benchmark("oracle-gaussian", "demo", **kwargs).summary.classes
    floor = run_benchmark("center-gaussian", "demo", **kwargs).summary.classes
    for name in [*PATHOLOGIES, "Average"]:
        assert oracle[name]["cnr"]["low"] > floor[name]["cnr"]["high"], name
        assert oracle[name]["miou"]["low"] > floor[name]["miou"]["high"] + 0.2, name


def test_config_lists_every_option_with_its_default():
    assert DemoDataset().config() == {"n_per_class": 8, "generator": "demo-v1"}
    assert DemoDataset(n_per_class=2).config()["n_per_class"] == 2
