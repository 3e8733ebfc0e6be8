import json

import numpy as np
import pytest

from cxrbench.anatomy.lut import (
    Gaussian2D,
    LocationTable,
    build_lut,
    load_lut,
    nearest_location,
    to_lut_frame,
)
from cxrbench.anatomy.vocabulary import LOCATIONS
from cxrbench.datasets.imagenome import read_gold_boxes
from cxrbench.errors import DataError
from cxrbench.testing.imagenome import anatomy_boxes, write_gold_csv
from cxrbench.types import Box

SIZES = {"img1": (2000, 2500), "img2": (3000, 2400), "img3": (2800, 2800)}  # (width, height)


@pytest.fixture
def gold(tmp_path):
    rows = [(image, name, box, w, h) for image, (w, h) in SIZES.items() for name, box in anatomy_boxes(w, h).items()]
    return write_gold_csv(tmp_path / "gold_bbox_coordinate_annotations_1000images.csv", rows)


def _expected(name_groups, k=3.0):
    """mean over images of (centre, extent / k) in the 512 frame of the centred square, by hand."""
    params = []
    for w, h in SIZES.values():
        boxes = anatomy_boxes(w, h)
        side = min(w, h)
        top, left, s = (h - side) / 2, (w - side) / 2, 512 / side
        x0 = min(boxes[n][0] for n in name_groups)
        y0 = min(boxes[n][1] for n in name_groups)
        x1 = max(boxes[n][2] for n in name_groups)
        y1 = max(boxes[n][3] for n in name_groups)
        x0, x1 = (x0 - left) * s, (x1 - left) * s
        y0, y1 = (y0 - top) * s, (y1 - top) * s
        params.append(((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / k, (y1 - y0) / k))
    return tuple(np.mean(params, axis=0))


def test_build_from_imagenome_gold_file(gold):
    table = build_lut(read_gold_boxes(gold), k=3)
    assert set(table.gaussians) == set(LOCATIONS)
    g = table.gaussians
    assert tuple(vars(g["right lower"]).values()) == pytest.approx(_expected(["right lower lung zone"]), abs=1e-2)
    assert tuple(vars(g["bibasilar"]).values()) == pytest.approx(
        _expected(["right lower lung zone", "left lower lung zone"]), abs=1e-2
    )
    assert tuple(vars(g["pulmonary"]).values()) == pytest.approx(_expected(["right lung", "left lung"]), abs=1e-2)
    assert g["lingular"] == g["left middle"]
    assert g["left base"] == g["left pleural"] == g["left lower"]
    assert g["cardiomegaly"].mu_x > 256  # the heart sits to the patient's left
    assert table.counts["right apical"] == 3


def test_k_scales_sigma(gold):
    boxes = read_gold_boxes(gold)
    a, b = build_lut(boxes, k=3).gaussians["left"], build_lut(boxes, k=6).gaussians["left"]
    assert (a.mu_x, a.mu_y) == (b.mu_x, b.mu_y)
    assert a.sigma_x == pytest.approx(2 * b.sigma_x)


def test_missing_location_names_what_is_needed(tmp_path):
    path = write_gold_csv(tmp_path / "g.csv", [("a", "right lung", (1, 1, 50, 90), 100, 100)])
    with pytest.raises(Exception, match="left lung"):
        build_lut(read_gold_boxes(path))


def test_w2_formula():
    a, b = Gaussian2D(1, 2, 3, 4), Gaussian2D(4, 6, 1, 1)
    assert a.w2(b) == (1 - 4) ** 2 + (2 - 6) ** 2 + (3 - 1) ** 2 + (4 - 1) ** 2


@pytest.mark.parametrize(("height", "width"), [(1000, 800), (800, 1000), (512, 512)])
def test_lut_frame_is_the_centred_square(height, width):
    side = min(height, width)
    top, left = (height - side) / 2, (width - side) / 2
    box = Box(left, top, left + side, top + side)
    assert to_lut_frame(box, height, width) == pytest.approx((0, 0, 512, 512))


def test_side_convention_patient_right_is_image_left():
    table = load_lut()
    # a box in the image's LEFT upper area is in the patient's RIGHT lung
    assert nearest_location(Box(100, 150, 300, 330), 1024, 1024, table) in {"right upper", "right apical"}
    assert nearest_location(Box(724, 150, 924, 330), 1024, 1024, table) in {"left upper", "left apical"}
    assert table.gaussians["right"].mu_x < 256 < table.gaussians["left"].mu_x
    flipped = {loc: Gaussian2D(512 - g.mu_x, g.mu_y, g.sigma_x, g.sigma_y) for loc, g in table.gaussians.items()}
    text = LocationTable(flipped, 3.0, "flipped", {}).to_json()
    with pytest.raises(DataError, match="left-right flipped"):
        LocationTable.from_json(text)


def _box_of(g, k):
    return Box(
        g.mu_x - k * g.sigma_x / 2, g.mu_y - k * g.sigma_y / 2, g.mu_x + k * g.sigma_x / 2, g.mu_y + k * g.sigma_y / 2
    )


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("left costophrenic", "left costophrenic"),
        ("right apical", "right apical"),
        ("cardiomegaly", "cardiomegaly"),
        ("bilateral middle", "bilateral middle"),
        ("left base", "left lower"),  # same Gaussian: the first in vocabulary order wins
        ("lingular", "left middle"),  # lingular -> left mid lung zone, by definition
        ("pulmonary", "bilateral"),  # both lungs either way
    ],
)
def test_the_box_of_an_entry_maps_back_to_it(location, expected):
    table = load_lut()
    assert nearest_location(_box_of(table.gaussians[location], table.k), 512, 512, table) == expected


def test_nearest_location_is_the_w2_argmin_on_random_boxes():
    table = load_lut()
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = rng.integers(300, 3000, size=2)
        x0, y0 = rng.uniform(0, width - 20), rng.uniform(0, height - 20)
        box = Box(x0, y0, rng.uniform(x0 + 5, width), rng.uniform(y0 + 5, height))
        side = min(height, width)
        s, top, left = 512 / side, (height - side) / 2, (width - side) / 2
        mu = ((box.x_min + box.x_max) / 2 - left) * s, ((box.y_min + box.y_max) / 2 - top) * s
        sigma = (box.x_max - box.x_min) * s / 3, (box.y_max - box.y_min) * s / 3
        distances = {
            loc: (mu[0] - g.mu_x) ** 2
            + (mu[1] - g.mu_y) ** 2
            + (sigma[0] - g.sigma_x) ** 2
            + (sigma[1] - g.sigma_y) ** 2
            for loc, g in table.gaussians.items()
        }
        best = min(distances.values())
        assert distances[nearest_location(box, height, width, table)] == pytest.approx(best)


def test_table_round_trips_and_bad_files_are_named(tmp_path, gold):
    table = build_lut(read_gold_boxes(gold), source="test")
    path = tmp_path / "lut.json"
    path.write_text(table.to_json())
    assert load_lut(path) == table
    payload = json.loads(path.read_text())
    del payload["locations"]["lingular"]
    path.write_text(json.dumps(payload))
    with pytest.raises(DataError, match=r"lut\.json lacks the location\(s\) lingular"):
        load_lut(path)
    with pytest.raises(DataError, match="cannot read location table"):
        load_lut(tmp_path / "nope.json")


def test_cli_build_and_show(cli, gold, tmp_path):
    built = cli("lut", "build", "--imagenome", str(gold.parent), "--output", "lut.json", "--k", "3")
    assert built.returncode == 0, built.stderr
    assert load_lut(tmp_path / "lut.json").counts["left"] == 3
    shown = cli("lut", "show", "--lut", "lut.json", "--output", "atlas.png")
    assert shown.returncode == 0, shown.stderr
    assert (tmp_path / "atlas.png").read_bytes()[:4] == b"\x89PNG"
    missing = cli("lut", "build", "--imagenome", "nowhere.csv", "--output", "x.json")
    assert missing.returncode == 2
    assert "ImaGenome gold box file not found: nowhere.csv" in missing.stderr


def test_a_table_that_is_not_text_is_one_clear_error(tmp_path):
    from cxrbench.anatomy.lut import load_lut
    from cxrbench.errors import DataError

    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(DataError, match=r"cannot read location table .*bin\.json: not UTF-8 text"):
        load_lut(tmp_path / "bin.json")
