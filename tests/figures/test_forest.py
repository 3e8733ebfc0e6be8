"""The forest plot (docs/analysis.md, "Forest plot"): what the Axes draw, read back from the artists, equals the
stored means and intervals; one row per class and the Average set apart; the files are valid PDF (vector), PNG
and SVG; refusals; `cxrbench plot` end to end."""

import copy
import dataclasses
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cxrbench.benchmark import store
from cxrbench.benchmark.aggregate import AVERAGE
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.cli import cli as cxrbench_cli
from cxrbench.errors import CxrbenchError
from cxrbench.figures.forest import forest_plot, save_figure

CLASSES = (
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Atelectasis",
    "Edema",
    "Cardiomegaly",
    "Lung Opacity",
    "Pleural Effusion",
)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for method in ("oracle-gaussian", "center-gaussian"):
        run_benchmark(method, "demo", out=out, n_resamples=100, progress=False)
    return out


@pytest.fixture
def runs(demo_runs):
    return {r.name: r for r in store.find_runs(demo_runs).runs}


def _drawn(fig):
    """{method: {row label: (x, low, high)}} read back from the errorbar artists and the y tick labels."""
    ax = fig.axes[0]
    ticks = ax.get_yticks()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    out = {}
    for container in ax.containers:
        line, _, (bars,) = container.lines
        points = {}
        for x, y, segment in zip(line.get_xdata(), line.get_ydata(), bars.get_segments(), strict=True):
            row = labels[int(np.argmin(np.abs(ticks - y)))]
            assert segment[0][1] == segment[1][1] == y  # a horizontal bar through the marker
            assert row not in points
            points[row] = (x, segment[0][0], segment[1][0])
        out[container.get_label()] = points
    return out


def _expected(run, metric, scale):
    return {
        cls: tuple(scale * run.classes[cls][metric][k] for k in ("mean", "low", "high"))
        for cls in run.classes
        if run.classes[cls][metric]["mean"] is not None
    }


@pytest.mark.parametrize(("metric", "scale"), [("cnr", 1.0), ("miou", 100.0)])
def test_markers_and_bars_are_the_stored_means_and_intervals(runs, metric, scale):
    fig = forest_plot(list(runs.values()), metric)
    drawn = _drawn(fig)
    assert list(drawn) == ["center-gaussian", "oracle-gaussian"]  # all runs, by name
    for name, points in drawn.items():
        want = _expected(runs[name], metric, scale)
        got = {label.split(" (n=")[0]: value for label, value in points.items()}
        assert got.keys() == want.keys()
        for cls, value in want.items():
            np.testing.assert_allclose(got[cls], value, rtol=1e-12, err_msg=f"{name} {cls}")


def test_one_row_per_class_and_the_average_set_apart(runs):
    fig = forest_plot(list(runs.values()), "cnr", methods=["oracle-gaussian", "center-gaussian"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{c} (n=8)" for c in CLASSES] + [f"{AVERAGE} (n=64)"]
    assert [c.get_label() for c in ax.containers] == ["oracle-gaussian", "center-gaussian"]
    ticks = ax.get_yticks()
    assert np.allclose(np.diff(ticks[:-1]), 1.0) and ticks[-1] - ticks[-2] > 1.0  # a gap before the Average
    assert ax.get_yticklabels()[-1].get_fontweight() == "bold"
    assert all(t.get_fontweight() == "normal" for t in ax.get_yticklabels()[:-1])
    owned = [line for c in ax.containers for line in (c.lines[0], *c.lines[1])]  # markers and caps
    rules = [line.get_ydata()[0] for line in ax.get_lines() if line not in owned]
    assert len(rules) == 1 and ticks[-2] < rules[0] < ticks[-1]  # a rule between the classes and the Average
    assert ax.get_xlabel() == "CNR" and "95% bootstrap interval" in ax.get_title()


def test_missing_cells_and_extra_classes(runs):
    oracle = runs["oracle-gaussian"]
    classes = copy.deepcopy(oracle.classes)
    del classes["Edema"]
    classes["Cardiomegaly"]["cnr"] = {"mean": None, "low": None, "high": None, "n": 0}
    classes["Nodule"] = {"n": 3, "cnr": {"mean": 1.0, "low": 0.5, "high": 1.5, "n": 3}}
    edited = dataclasses.replace(oracle, name="edited", classes=classes)
    drawn = _drawn(forest_plot([runs["center-gaussian"], edited], "cnr"))
    assert "Edema (n=8)" not in drawn["edited"] and "Cardiomegaly (n=8)" not in drawn["edited"]
    assert drawn["edited"]["Nodule (n=3)"] == (1.0, 0.5, 1.5)
    assert "Edema (n=8)" in drawn["center-gaussian"]
    assert not any(label.startswith("Nodule") for label in drawn["center-gaussian"])


def test_files_are_valid_pdf_png_and_svg(runs, tmp_path):
    fig = forest_plot(list(runs.values()), "auc")
    pdf = save_figure(fig, tmp_path / "out" / "forest.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert b"/Subtype /Image" not in pdf  # vector: no raster image inside
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType fonts, as publishers ask
    assert save_figure(fig, tmp_path / "again.pdf").read_bytes() == pdf  # no creation date: reproducible
    with Image.open(save_figure(fig, tmp_path / "forest.png", dpi=100)) as image:
        assert image.format == "PNG"
        assert image.size == tuple(round(v * 100) for v in fig.get_size_inches())
        pixels = np.asarray(image.convert("L"))
        assert pixels.min() < 50 and pixels.max() > 250  # something drawn on a white page
    assert ET.parse(save_figure(fig, tmp_path / "forest.svg")).getroot().tag.endswith("svg")


def test_bad_requests_are_refused(runs, tmp_path):
    oracle, center = runs["oracle-gaussian"], runs["center-gaussian"]
    fig = forest_plot([oracle], "cnr")
    with pytest.raises(CxrbenchError, match=r"forest.jpg: give a .pdf"):
        save_figure(fig, tmp_path / "forest.jpg")
    with pytest.raises(CxrbenchError, match="unknown metric 'iou'"):
        forest_plot([oracle], "iou")
    with pytest.raises(CxrbenchError, match="cannot plot lut-prior"):
        forest_plot([oracle, center], "cnr", methods=["lut-prior"])
    other = dataclasses.replace(center, identity=dataclasses.replace(center.identity, protocol="published"))
    with pytest.raises(CxrbenchError, match="different protocols"):
        forest_plot([oracle, other], "cnr")
    other = dataclasses.replace(center, identity=dataclasses.replace(center.identity, dataset="mscxr"))
    with pytest.raises(CxrbenchError, match=r"several datasets \(demo, mscxr\)"):
        forest_plot([oracle, other], "cnr")


def test_cli_plot(demo_runs, tmp_path):
    runner = CliRunner()
    output = tmp_path / "figs" / "forest.pdf"
    args = ["plot", str(demo_runs), "-d", "demo", "--methods", "oracle-gaussian", "--metric", "miou"]
    result = runner.invoke(cxrbench_cli, [*args, "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_bytes().startswith(b"%PDF-")
    result = runner.invoke(cxrbench_cli, [*args, "--output", str(tmp_path / "forest.gif")])
    assert isinstance(result.exception, CxrbenchError) and not (tmp_path / "forest.gif").exists()
