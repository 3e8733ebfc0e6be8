import dataclasses

import numpy as np
import pytest

from cxrbench.anatomy.lut import load_lut
from cxrbench.baselines.lut_prior import LutPrior
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.errors import MethodOutputError


def _gaussian(g, size=512):
    y, x = np.mgrid[0:size, 0:size] + 0.5
    return np.exp(-0.5 * (((x - g.mu_x) / g.sigma_x) ** 2 + ((y - g.mu_y) / g.sigma_y) ** 2))


def test_heatmap_is_the_tables_gaussian_max_over_locations():
    table = load_lut()
    prior = LutPrior()
    one = prior.heatmap(np.zeros((10, 10)), "left lower atelectasis")
    np.testing.assert_allclose(one, _gaussian(table.gaussians["left lower"]), atol=1e-6)
    two = prior.heatmap(np.zeros((10, 10)), "right apical <and> left lower pneumonia")
    expected = np.maximum(_gaussian(table.gaussians["right apical"]), _gaussian(table.gaussians["left lower"]))
    np.testing.assert_allclose(two, expected, atol=1e-6)
    assert one[:, :256].sum() < one[:, 256:].sum()  # patient left = image right


def test_free_text_prompt_is_a_clear_error():
    with pytest.raises(MethodOutputError, match="lut-prior: 'Small right effusion' is not a"):
        LutPrior().heatmap(np.zeros((4, 4)), "Small right effusion")


def test_custom_table_and_the_image_is_ignored(tmp_path):
    table = load_lut()
    path = tmp_path / "lut.json"
    path.write_text(table.to_json())
    prior = LutPrior(lut=str(path))
    assert prior.config() == LutPrior().config()  # the same table: the same run, wherever its file lies
    other = dataclasses.replace(table, gaussians={**table.gaussians, "cardiomegaly": table.gaussians["left lower"]})
    (tmp_path / "other.json").write_text(other.to_json())
    assert LutPrior(lut=str(tmp_path / "other.json")).config() != prior.config()
    a = prior.heatmap(np.zeros((5, 5)), "cardiomegaly cardiomegaly")
    b = prior.heatmap(np.ones((50, 70)), "cardiomegaly cardiomegaly")
    np.testing.assert_array_equal(a, b)


def test_prior_sits_between_floor_and_oracle_on_demo(tmp_path):
    kwargs = {"out": tmp_path, "n_resamples": 100, "progress": False}
    miou = {
        m: run_benchmark(m, "demo", **kwargs).summary.classes["Average"]["miou"]["mean"]
        for m in ("center-gaussian", "lut-prior", "oracle-gaussian")
    }
    assert miou["center-gaussian"] < miou["lut-prior"] < miou["oracle-gaussian"]
