"""Per-pair descriptors against a full-resolution mask and hand-placed boxes."""

import numpy as np
import pytest

from cxrbench.benchmark.metrics import boxes_to_mask
from cxrbench.benchmark.strata import box_fraction, box_side
from cxrbench.types import Box


@pytest.mark.parametrize("protocol", ["cxrbench", "published"])
def test_box_fraction_equals_mask_area(protocol):
    rng = np.random.default_rng(0)
    for _ in range(300):
        height, width = rng.integers(1, 40, size=2)
        boxes = []
        for _ in range(rng.integers(0, 5)):
            x0, y0 = rng.uniform(-10, 45, size=2)
            boxes.append(Box(x0, y0, x0 + rng.uniform(0.1, 30), y0 + rng.uniform(0.1, 30)))
        mask = boxes_to_mask(boxes, height, width, protocol)
        assert box_fraction(boxes, height, width, protocol) == pytest.approx(mask.mean(), abs=1e-15)


def test_box_fraction_edges():
    assert box_fraction([], 10, 10) == 0.0
    assert box_fraction([Box(20, 20, 30, 30)], 10, 10) == 0.0  # outside the image
    assert box_fraction([Box(0, 0, 10, 10), Box(2, 2, 5, 5)], 10, 10) == 1.0  # nested, whole image
    assert box_fraction([Box(3.2, 3.2, 3.4, 3.4)], 10, 10) == pytest.approx(0.01)  # sub-pixel: one pixel


def test_box_side_radiological_convention():
    assert box_side([], 100) == "none"
    assert box_side([Box(0, 0, 20, 20)], 100) == "right"  # image left = patient right
    assert box_side([Box(70, 0, 90, 20)], 100) == "left"
    assert box_side([Box(0, 0, 20, 20), Box(70, 0, 90, 20)], 100) == "bilateral"
    assert box_side([Box(40, 0, 70, 20)], 100) == "left"  # centre 55 is right of the midline
