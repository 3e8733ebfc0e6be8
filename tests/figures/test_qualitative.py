"""The qualitative figure (docs/figures.md): boxes drawn where they are (artists and pixels), one shared colour
scale, the panels, the corner text against scores.csv, the displayed maps against the stored scores, pair choice
against a naive sort, the cache and recompute paths, and `cxrbench figure` end to end."""

import math
import shutil
from dataclasses import replace

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.patches import Rectangle

from cxrbench.benchmark import store
from cxrbench.benchmark.compare import read_scores
from cxrbench.benchmark.metrics import score_pair
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.cli import cli
from cxrbench.datasets.demo import DemoDataset
from cxrbench.errors import CxrbenchError
from cxrbench.figures import qualitative as q
from cxrbench.registry import METHODS as REGISTRY
from cxrbench.registry import register_method

N_PER_CLASS = 2
METHODS = ["center-gaussian", "oracle-gaussian"]


class Blob:
    """A cacheable square-map method that reads the image: the centred square, every 4th pixel."""

    name = "test-blob"
    calls = 0

    def __init__(self, power: float = 2.0):
        self.power = float(power)

    def config(self):
        return {"power": self.power}

    def heatmap(self, image, prompt):
        Blob.calls += 1
        h, w = image.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return image[top : top + side : 4, left : left + side : 4] ** self.power


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    register_method("test-blob", Blob)
    try:
        for method in [*METHODS, "test-blob"]:
            run_benchmark(
                method, "demo", dataset_options={"n_per_class": N_PER_CLASS}, out=out, n_resamples=100, progress=False
            )
        run_benchmark(
            "test-blob", "demo", dataset_options={"n_per_class": N_PER_CLASS}, method_options={"power": "3"},
            name="blob-cubed", out=out, n_resamples=100, progress=False,
        )  # fmt: skip
        yield out
    finally:
        REGISTRY.unregister("test-blob")


@pytest.fixture(scope="module")
def samples():
    return {s.pair_id: s for s in DemoDataset(N_PER_CLASS)}


def _runs(runs_dir, names=METHODS):
    return q.find_runs_named(runs_dir, "demo", names)


def _stored(runs_dir, name):
    """scores.csv read with pandas alone, indexed by pair id."""
    return pd.read_csv(runs_dir / "demo" / name / "scores.csv", dtype={"pair_id": str}).set_index("pair_id")


# pairs of every image shape: square, portrait, landscape (the demo's sizes cycle with the index)
PAIRS = ["demo-000", "demo-001", "demo-002"]


@pytest.fixture(scope="module")
def figure(runs_dir, samples):
    fig = q.qualitative_figure(_runs(runs_dir), samples, PAIRS)
    fig.canvas.draw()
    return fig


def _grid(fig, n_rows, n_cols):
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == n_rows * n_cols
    return [panels[r * n_cols : (r + 1) * n_cols] for r in range(n_rows)]


def test_panel_count_is_pairs_times_methods_plus_one(figure):
    grid = _grid(figure, len(PAIRS), len(METHODS) + 1)
    assert len([ax for ax in figure.axes if ax.get_label() == "<colorbar>"]) == 1
    for row in grid:
        assert len(row[0].get_images()) == 1  # the radiograph alone
        assert all(len(ax.get_images()) == 2 for ax in row[1:])  # radiograph + heatmap


def test_boxes_are_drawn_where_they_are(figure, samples):
    grid = _grid(figure, len(PAIRS), len(METHODS) + 1)
    for pair, row in zip(PAIRS, grid, strict=True):
        expected = sorted(b.as_tuple() for b in samples[pair].boxes)
        for ax in row:
            drawn = sorted(
                (p.get_x(), p.get_y(), p.get_x() + p.get_width(), p.get_y() + p.get_height())
                for p in ax.patches
                if isinstance(p, Rectangle) and p.get_gid() == "gt-box"
            )
            np.testing.assert_allclose(drawn, expected)
            image = ax.get_images()[0]
            assert image.get_extent() == [0, samples[pair].width, samples[pair].height, 0]


def test_box_pixels_are_red_on_the_box_edges(figure, samples):
    """In the rendered figure, the middle of each box edge (image coordinates -> display pixels) is box-red."""
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
    height = pixels.shape[0]
    red = np.array([255, 42, 42])
    grid = _grid(figure, len(PAIRS), len(METHODS) + 1)
    for pair, row in zip(PAIRS, grid, strict=True):
        ax = row[0]
        for box in samples[pair].boxes:
            cx, cy = (box.x_min + box.x_max) / 2, (box.y_min + box.y_max) / 2
            for x, y in ((cx, box.y_min), (cx, box.y_max), (box.x_min, cy), (box.x_max, cy)):
                dx, dy = ax.transData.transform((x, y))
                col, line = round(dx), round(height - dy)
                patch = pixels[line - 1 : line + 2, col - 1 : col + 2].reshape(-1, 3)
                assert np.abs(patch - red).sum(axis=1).min() < 60, (pair, x, y)
            inside = ax.transData.transform((cx, cy))
            centre = pixels[round(height - inside[1]), round(inside[0])]
            assert np.abs(centre - red).sum() > 60  # the box is an outline, not a filled patch


def test_every_heatmap_shares_one_colour_scale(figure):
    grid = _grid(figure, len(PAIRS), len(METHODS) + 1)
    heat = [ax.get_images()[1] for row in grid for ax in row[1:]]
    assert {(im.norm.vmin, im.norm.vmax) for im in heat} == {(0.0, 1.0)}
    assert len({im.get_cmap().name for im in heat}) == 1
    bar = next(ax for ax in figure.axes if ax.get_label() == "<colorbar>")
    assert bar.get_ylim() == pytest.approx((0.0, 1.0))
    for im in heat:
        values = np.ma.compressed(im.get_array())
        assert values.min() == pytest.approx(0.0) and values.max() == pytest.approx(1.0)


def test_displayed_maps_reproduce_the_stored_scores(figure, samples, runs_dir):
    """Each panel's map, scored as a full frame, gives the run's stored CNR and mIoU: it is the scorer's frame."""
    grid = _grid(figure, len(PAIRS), len(METHODS) + 1)
    for pair, row in zip(PAIRS, grid, strict=True):
        sample = samples[pair]
        for name, ax in zip(METHODS, row[1:], strict=True):
            frame = np.ma.filled(ax.get_images()[1].get_array().astype(np.float32), np.nan)
            assert frame.shape == (sample.height, sample.width)
            scores = score_pair(frame, sample.boxes)
            stored = _stored(runs_dir, name).loc[pair]
            assert scores.cnr == pytest.approx(stored["cnr"], abs=1e-5)
            assert scores.miou == pytest.approx(stored["miou"], abs=1e-5)


def test_square_maps_are_centred_with_nan_outside(figure, samples):
    grid = _grid(figure, len(PAIRS), len(METHODS) + 1)
    for pair, row in zip(PAIRS, grid, strict=True):
        h, w = samples[pair].height, samples[pair].width
        side = min(h, w)
        expected = np.ones((h, w), bool)
        expected[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side] = False
        center = row[1].get_images()[1].get_array()  # center-gaussian: a square map
        assert np.array_equal(np.ma.getmaskarray(center), expected)
        assert not np.ma.getmaskarray(row[2].get_images()[1].get_array()).any()  # oracle: full frame


def test_corner_text_is_the_stored_score(figure, runs_dir):
    grid = _grid(figure, len(PAIRS), len(METHODS) + 1)
    for pair, row in zip(PAIRS, grid, strict=True):
        for name, ax in zip(METHODS, row[1:], strict=True):
            stored = _stored(runs_dir, name).loc[pair]
            texts = [t.get_text() for t in ax.texts if t.get_gid() == "score"]
            assert texts == [f"CNR {stored['cnr']:.2f}\nmIoU {100 * stored['miou']:.1f}"]


def test_row_titles_are_the_prompts(figure, samples):
    grid = _grid(figure, len(PAIRS), len(METHODS) + 1)
    for pair, row in zip(PAIRS, grid, strict=True):
        label = row[0].get_ylabel()
        assert " ".join(label.split()).startswith(samples[pair].prompt) and pair in label
    assert [ax.get_title() for ax in grid[0][1:]] == METHODS


def _naive(frame, n, reverse):
    rows = [(p, v) for p, v in zip(frame["pair_id"], frame["cnr"], strict=True) if not math.isnan(v)]
    rows.sort(key=lambda r: (-r[1] if reverse else r[1], r[0]))
    return [p for p, _ in rows[:n]]


@pytest.mark.parametrize("n", [1, 5, 16, 40])
def test_best_and_worst_against_a_naive_sort(runs_dir, n):
    scores = [read_scores(r, ("cnr", "miou")) for r in _runs(runs_dir)]
    first = pd.read_csv(runs_dir / "demo" / METHODS[0] / "scores.csv", dtype={"pair_id": str})
    assert q.select_pairs(scores, best=n) == _naive(first, n, reverse=True)
    assert q.select_pairs(scores, worst=n) == _naive(first, n, reverse=False)
    edema = first[first["class_name"] == "Edema"]
    assert q.select_pairs(scores, best=n, class_name="Edema") == _naive(edema, n, reverse=True)


def test_best_leaves_out_pairs_not_scored_by_every_run_and_ties_go_by_id(runs_dir):
    scores = [read_scores(r, ("cnr", "miou")) for r in _runs(runs_dir)]
    first = scores[0].copy()
    first["cnr"] = 1.0  # all tied: by pair id
    first.loc[first["pair_id"] == "demo-003", "cnr"] = float("nan")
    second = scores[1][scores[1]["pair_id"] != "demo-000"]
    assert q.select_pairs([first, second], best=3) == ["demo-001", "demo-002", "demo-004"]


def test_random_is_seeded_distinct_and_from_the_scored_pairs(runs_dir):
    scores = [read_scores(r, ("cnr", "miou")) for r in _runs(runs_dir)]
    drawn = q.select_pairs(scores, random=5, seed=3)
    assert drawn == q.select_pairs(scores, random=5, seed=3)
    assert drawn != q.select_pairs(scores, random=5, seed=4)
    ids = scores[0]["pair_id"].tolist()
    assert len(set(drawn)) == 5 and set(drawn) <= set(ids)
    expected = [ids[i] for i in np.random.default_rng(3).choice(len(ids), size=5, replace=False)]
    assert drawn == expected


def test_unknown_pair_is_an_error_naming_it(runs_dir, samples):
    scores = [read_scores(r, ("cnr", "miou")) for r in _runs(runs_dir)]
    with pytest.raises(CxrbenchError, match="demo-999"):
        q.select_pairs(scores, pairs=["demo-001", "demo-999"])
    with pytest.raises(CxrbenchError, match="no-such-pair"):
        q.qualitative_figure(_runs(runs_dir), samples, ["no-such-pair"])


def test_one_way_of_choosing_pairs(runs_dir):
    scores = [read_scores(r, ("cnr",)) for r in _runs(runs_dir)]
    with pytest.raises(CxrbenchError, match="one way"):
        q.select_pairs(scores, best=2, worst=2)
    with pytest.raises(CxrbenchError, match="positive"):
        q.select_pairs(scores, best=0)


def test_cached_maps_are_read_without_the_method(runs_dir, samples):
    """test-blob is cacheable: its maps come from the cache (the method is never built), equal to the map
    cached under the runner's key, framed by the scorer's rule (the stored CNR comes back)."""
    Blob.calls = 0
    run = _runs(runs_dir, ["test-blob"])[0]
    chosen = [samples[p] for p in PAIRS]
    raw = q.raw_heatmaps(run, chosen)
    assert Blob.calls == 0
    for sample, heatmap in zip(chosen, raw, strict=True):
        assert heatmap.shape == ((min(sample.height, sample.width) + 3) // 4,) * 2
        framed = q.image_frame(heatmap, sample, "square", "bilinear")
        assert score_pair(framed, sample.boxes).cnr == pytest.approx(
            _stored(runs_dir, "test-blob").loc[sample.pair_id, "cnr"], abs=1e-5
        )


def test_missing_cache_entries_are_recomputed_for_the_chosen_pairs_only(runs_dir, samples):
    run = _runs(runs_dir, ["test-blob"])[0]
    cache = runs_dir / "demo" / store.HEATMAPS / "test-blob"
    before = {p.name: p.read_bytes() for p in cache.glob("*.npy")}
    expected = q.raw_heatmaps(run, [samples[p] for p in PAIRS])
    try:
        for entry in cache.glob("*.npy"):
            entry.unlink()
        Blob.calls = 0
        again = q.raw_heatmaps(run, [samples[p] for p in PAIRS])
        assert Blob.calls == len(PAIRS)
        for a, b in zip(again, expected, strict=True):
            np.testing.assert_array_equal(a, b)
        assert len(list(cache.glob("*.npy"))) == len(PAIRS)  # cached as the runner caches
        Blob.calls = 0
        q.raw_heatmaps(run, [samples[p] for p in PAIRS])
        assert Blob.calls == 0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        for name, data in before.items():
            (cache / name).write_bytes(data)


def test_recompute_refuses_a_method_whose_config_changed(runs_dir, samples, monkeypatch):
    run = _runs(runs_dir, ["test-blob"])[0]
    monkeypatch.setattr(Blob, "config", lambda self: {"power": 3.0})
    monkeypatch.setattr(q, "_cache", lambda run: None)
    with pytest.raises(CxrbenchError, match=r"method_config\.power"):
        q.raw_heatmaps(run, [samples["demo-001"]])


def test_recompute_builds_the_method_with_the_run_options(runs_dir, samples, monkeypatch):
    """blob-cubed ran with -o power=3: rebuilt from its stored options it gives the centred square cubed."""
    run = _runs(runs_dir, ["blob-cubed"])[0]
    monkeypatch.setattr(q, "_cache", lambda run: None)
    sample = samples["demo-001"]
    (heatmap,) = q.raw_heatmaps(run, [sample])
    image = sample.load_image()
    h, w = image.shape
    side = min(h, w)
    square = image[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    np.testing.assert_allclose(heatmap, square[::4, ::4] ** 3, rtol=1e-6)


def test_uncacheable_methods_are_recomputed(runs_dir, samples):
    run = _runs(runs_dir, ["oracle-gaussian"])[0]
    sample = samples["demo-002"]
    (heatmap,) = q.raw_heatmaps(run, [sample])
    assert heatmap.shape == (sample.height, sample.width)


def test_figure_command_writes_pdf_and_png(runs_dir, tmp_path):
    runner = CliRunner()
    common = ["figure", "--dataset", "demo", "--runs-dir", str(runs_dir), "-O", f"n_per_class={N_PER_CLASS}"]
    pdf = tmp_path / "fig.pdf"
    result = runner.invoke(cli, [*common, "--methods", ",".join(METHODS), "--best", "2", "--output", str(pdf)])
    assert result.exit_code == 0, result.output
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    # vector page: the 2 x 3 panels' pixels and the colour bar are the only raster images; text stays text
    assert data.count(b"/Subtype /Image") == 2 * 3 + 1
    assert b"/Font" in data
    png = tmp_path / "fig.png"
    result = runner.invoke(cli, [*common, "--methods", "oracle-gaussian", "--pairs", "demo-003", "--output", str(png)])
    assert result.exit_code == 0, result.output
    pixels = matplotlib.image.imread(png)
    assert pixels.ndim == 3 and pixels[..., :3].std() > 0.05


def test_figure_command_errors_name_the_problem(runs_dir, tmp_path):
    runner = CliRunner()
    common = ["figure", "--dataset", "demo", "--runs-dir", str(runs_dir), "--methods", "oracle-gaussian"]
    result = runner.invoke(cli, [*common, "--pairs", "demo-777", "--output", str(tmp_path / "f.png")])
    assert isinstance(result.exception, CxrbenchError) and "demo-777" in str(result.exception)
    result = runner.invoke(cli, [*common, "--best", "1", "--output", str(tmp_path / "f.jpg")])
    assert isinstance(result.exception, CxrbenchError) and ".pdf" in str(result.exception)
    result = runner.invoke(cli, [*common[:-1], "no-such-run", "--best", "1", "--output", str(tmp_path / "f.png")])
    assert isinstance(result.exception, CxrbenchError) and "no-such-run" in str(result.exception)


def test_figure_command_says_when_fewer_pairs_qualify_than_asked(runs_dir, tmp_path):
    first = pd.read_csv(runs_dir / "demo" / "oracle-gaussian" / "scores.csv", dtype={"pair_id": str})
    qualifying = len(_naive(first, 1000, reverse=True))
    common = ["figure", "--dataset", "demo", "--runs-dir", str(runs_dir), "-O", f"n_per_class={N_PER_CLASS}"]
    common += ["--methods", "oracle-gaussian", "--output", str(tmp_path / "f.png")]
    result = CliRunner().invoke(cli, [*common, "--best", str(qualifying + 5)])
    assert result.exit_code == 0, result.output
    assert f"only {qualifying} pairs are scored by every run of oracle-gaussian with a defined cnr" in result.stderr
    assert f"not the {qualifying + 5} asked for with --best" in result.stderr
    result = CliRunner().invoke(cli, [*common, "--best", "2"])
    assert result.exit_code == 0, result.output
    assert "only" not in result.stderr
    shown = _naive(first, 2, reverse=True)
    assert f"redraw them with --pairs): {','.join(shown)}" in result.stderr


# an MS-CXR pair id: the image's DICOM id, then a hash of the phrase (cxrbench/datasets/mscxr.py)
MSCXR_ID = "4b5ee5ec-e5f2a9d3-7b0ae6a4-7e1cb7d8-16f2d5bc:9c1e0b7a2f"
LONG_PROMPT = "Small bilateral pleural effusions with adjacent compressive atelectasis at both lung bases"


def _long_title_rows(runs_dir, samples):
    rows = q.build_rows(_runs(runs_dir), samples, PAIRS[:2])
    first = replace(rows[0].sample, pair_id=MSCXR_ID, prompt=LONG_PROMPT)
    return [replace(rows[0], sample=first), rows[1]]


def _inside(inner, outer, axis):
    low, high = (inner.y0, inner.y1) if axis == "y" else (inner.x0, inner.x1)
    start, end = (outer.y0, outer.y1) if axis == "y" else (outer.x0, outer.x1)
    return start - 0.5 <= low and high <= end + 0.5


def test_long_row_and_column_titles_fit_their_panels(runs_dir, samples):
    """Measured by the renderer: each row title (prompt and MS-CXR pair id) lies within its panel's height
    and inside the figure; a long run name within its column; the id keeps its start and its distinctive end."""
    columns = ["center-gaussian@published-with-tuned-attention-layers", "oracle-gaussian"]
    fig = q.draw(_long_title_rows(runs_dir, samples), columns)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    grid = _grid(fig, 2, len(columns) + 1)
    for row in grid:
        label = row[0].yaxis.label.get_window_extent(renderer)
        assert _inside(label, row[0].get_window_extent(renderer), "y")
        assert label.x0 >= 0
    for ax in grid[0]:
        assert _inside(ax.title.get_window_extent(renderer), ax.get_window_extent(renderer), "x")
    lines = grid[0][0].get_ylabel().split("\n")
    assert " ".join(lines[:-1]) == LONG_PROMPT
    shown = lines[-1]
    assert shown.startswith("[4b5ee5ec-") and shown.endswith("16f2d5bc:9c1e0b7a2f]") and q.ELLIPSIS in shown
    assert grid[1][0].get_ylabel().endswith(f"[{PAIRS[1]}]")  # a short id is left whole
    assert grid[0][2].get_title() == "oracle-gaussian"
    long_title = grid[0][1].get_title()
    assert long_title.startswith("center-") and long_title.endswith("layers") and q.ELLIPSIS in long_title


def test_shorten_middle_keeps_a_third_of_the_start_and_the_rest_of_the_end():
    text = "abcdefghijklmnopqrstuvwxyz0123456789"
    for width in range(1, len(text)):
        short = q.shorten_middle(text, lambda s, width=width: len(s) <= width)
        keep = width - 1
        expected = text[: keep // 3] + q.ELLIPSIS + text[len(text) - (keep - keep // 3) :] if keep else q.ELLIPSIS
        assert short == expected and len(short) == width
    assert q.shorten_middle(text, lambda s: True) == text


def test_a_run_folder_linked_in_from_elsewhere_reads_its_own_cache(runs_dir, samples, tmp_path):
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "linked-blob").symlink_to(runs_dir / "demo" / "test-blob", target_is_directory=True)
    (run,) = q.find_runs_named(tmp_path / "runs", "demo", ["test-blob"])
    assert run.path.parent == tmp_path / "runs" / "demo" / "linked-blob"
    Blob.calls = 0
    chosen = [samples[p] for p in PAIRS]
    linked = q.raw_heatmaps(run, chosen)
    assert Blob.calls == 0  # read from the cache beside the real run folder, not recomputed
    for a, b in zip(linked, q.raw_heatmaps(_runs(runs_dir, ["test-blob"])[0], chosen), strict=True):
        np.testing.assert_array_equal(a, b)
