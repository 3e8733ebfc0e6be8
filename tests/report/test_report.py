"""`cxrbench report` (docs/figures.md, "Report"): the page is self-contained (no request of any kind), its numbers
are the stored ones, text from the data is escaped, and in a real headless Chromium it loads from file:// with
no console error and no network request, every gallery image decodes, and the screenshot is not blank.

The browser tests skip only where Chromium is absent and neither CI nor CXRBENCH_REQUIRE_BROWSER=1 is set (then
they fail): CI installs Debian's `chromium` and the Python package `playwright` (never `playwright install`)."""

import base64
import dataclasses
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.cli import cli
from cxrbench.datasets.demo import DemoDataset
from cxrbench.errors import CxrbenchError
from cxrbench.registry import DATASETS, register_dataset

METHODS = ["center-gaussian", "oracle-gaussian"]
N_PER_CLASS = 2
CHROMIUM = os.environ.get("CXRBENCH_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("CI", "").lower() not in ("", "0", "false") or (
    os.environ.get("CXRBENCH_REQUIRE_BROWSER") == "1"
)
EVIL_PROMPT = '<img src=x onerror="document.title=1"> & "quoted" $\\frac{$ right lower pneumonia'
EVIL_CLASS = "<b onmouseover='document.title=2'>Cardio</b> & \"megaly\""


class Page(HTMLParser):
    """Tags with their attributes, the section each lies in, and the text of every table cell."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str], str | None]] = []
        self.tables: dict[str, list[list[list[str]]]] = {}
        self._section: str | None = None
        self._cell: list[str] | None = None
        self.headings: list[str] = []
        self._heading: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section":
            self._section = attributes["id"]
        self.tags.append((tag, attributes, self._section))
        if tag == "table":
            self.tables.setdefault(self._section, []).append([])
        elif tag == "tr":
            self.tables[self._section][-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "h3":
            self._heading = []

    def handle_data(self, data):
        for part in (self._cell, self._heading):
            if part is not None:
                part.append(data)

    def handle_endtag(self, tag):
        if tag == "h3":
            self.headings.append("".join(self._heading))
            self._heading = None
        if tag in ("td", "th"):
            self.tables[self._section][-1][-1].append("".join(self._cell))
            self._cell = None

    def images(self, section: str | None = None) -> list[str]:
        return [a["src"] for tag, a, s in self.tags if tag == "img" and (section is None or s == section)]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for method in METHODS:
        run_benchmark(
            method, "demo", dataset_options={"n_per_class": N_PER_CLASS}, out=out, n_resamples=200, progress=False
        )
    return out


@pytest.fixture(scope="module")
def report(runs_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("report")
    args = ["report", str(runs_dir), "--dataset", "demo", "--output", str(output), "--gallery", "1"]
    result = CliRunner().invoke(cli, [*args, "--n-resamples", "200"])
    assert result.exit_code == 0, result.output
    return output / "index.html"


@pytest.fixture(scope="module")
def page(report):
    return Page(report.read_text(encoding="utf-8"))


def _png(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return matplotlib.image.imread(io.BytesIO(base64.b64decode(uri[len(prefix) :])), format="png")


def test_page_requests_nothing(page, report):
    text = report.read_text(encoding="utf-8")
    assert not [t for t, _, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    for tag, attributes, _ in page.tags:
        for name in ("src", "href"):
            if name in attributes:
                assert attributes[name].startswith("data:image/png;base64," if name == "src" else "#"), (tag, name)
    assert "http://" not in text and "https://" not in text
    csp = [a for t, a, _ in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]


def test_every_section_is_there(page):
    sections = [a["id"] for t, a, _ in page.tags if t == "section"]
    assert sections == ["leaderboard", "forest", "comparison", "breakdowns", "galleries"]
    assert not [a for t, a, _ in page.tags if a.get("class") == "error"]
    assert len(page.images("forest")) == 3  # CNR, mIoU, AUC
    assert len(page.tables["breakdowns"]) == 4  # box size, side, boxes, prompt words


def test_galleries_hold_best_and_worst_of_each_method_per_class(page):
    galleries = page.images("galleries")
    assert len(galleries) == len(PATHOLOGIES) * len(METHODS) * 2
    for uri in galleries:
        pixels = _png(uri)
        assert pixels.shape[0] > 100 and pixels[..., :3].std() > 0.05
    headings = [t for t, _, s in page.tags if t == "h3" and s == "galleries"]
    assert len(headings) == len(PATHOLOGIES)


def test_leaderboard_cells_are_the_stored_intervals(page, runs_dir):
    rows = page.tables["leaderboard"][0]
    header = rows[0]
    assert header[2:] == METHODS
    by_class = {row[0]: row for row in rows[2:]}
    for j, name in enumerate(METHODS):
        stored = json.loads((runs_dir / "demo" / name / "summary.json").read_text())["classes"]
        for cls in [*PATHOLOGIES, "Average"]:
            cnr = stored[cls]["cnr"]
            expected = f"{cnr['mean']:.2f} [{cnr['low']:.2f}, {cnr['high']:.2f}]"
            assert by_class[cls][2 + 3 * j] == expected
            miou = stored[cls]["miou"]
            assert by_class[cls][3 + 3 * j].startswith(f"{100 * miou['mean']:.1f} [")


def test_comparison_matrix_against_class_means_of_scores_csv(page, runs_dir):
    """Cell (row a, column b) is the Average difference a - b: the mean over classes of the class mean
    differences, from scores.csv read with pandas; the matrix is antisymmetric."""
    frames = {
        name: pd.read_csv(runs_dir / "demo" / name / "scores.csv", dtype={"pair_id": str}).set_index("pair_id")
        for name in METHODS
    }
    diff = frames["oracle-gaussian"]["cnr"] - frames["center-gaussian"]["cnr"]
    expected = diff.groupby(frames["oracle-gaussian"]["class_name"]).mean().mean()
    cnr = page.tables["comparison"][0]
    assert cnr[0][1:] == METHODS
    cells = {(row[0], name): text for row in cnr[1:] for name, text in zip(METHODS, row[1:], strict=True)}
    a_minus_b = float(re.match(r"[+-][\d.]+", cells[("oracle-gaussian", "center-gaussian")]).group())
    b_minus_a = float(re.match(r"[+-][\d.]+", cells[("center-gaussian", "oracle-gaussian")]).group())
    assert a_minus_b == pytest.approx(expected, abs=0.006)
    assert b_minus_a == -a_minus_b
    assert cells[("oracle-gaussian", "oracle-gaussian")] == ""


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory):
    """A dataset whose prompt and class name carry HTML, quotes and broken mathtext."""

    class Evil(DemoDataset):
        name = "test-evil"
        classes = tuple(EVIL_CLASS if c == "Cardiomegaly" else c for c in PATHOLOGIES)

        def __iter__(self):
            for sample in super().__iter__():
                if sample.class_name == "Cardiomegaly":
                    sample = dataclasses.replace(sample, class_name=EVIL_CLASS)
                if sample.pair_id == "demo-000":
                    sample = dataclasses.replace(sample, prompt=EVIL_PROMPT)
                yield sample

    tmp_path = tmp_path_factory.mktemp("evil")
    register_dataset("test-evil", Evil)
    try:
        run_benchmark(
            "oracle-gaussian", "test-evil", dataset_options={"n_per_class": 1}, out=tmp_path, n_resamples=100,
            progress=False,
        )  # fmt: skip
        args = ["report", str(tmp_path), "--dataset", "test-evil", "--output", str(tmp_path / "report")]
        result = CliRunner().invoke(cli, [*args, "--gallery", "1", "--n-resamples", "100"])
        assert result.exit_code == 0, result.output
        yield tmp_path / "report" / "index.html"
    finally:
        DATASETS.unregister("test-evil")


def test_text_from_the_data_is_escaped(evil_report):
    text = evil_report.read_text(encoding="utf-8")
    assert EVIL_CLASS not in text and "<b " not in text
    page = Page(text)
    assert not [t for t, _, _ in page.tags if t == "b"]
    assert EVIL_CLASS in page.headings  # shown as text: the class's gallery heading
    assert EVIL_CLASS in [row[0] for row in page.tables["leaderboard"][0]]
    assert len(page.images("galleries")) == len(PATHOLOGIES) * 2  # best and worst of the one method
    alts = [a["alt"] for t, a, s in page.tags if t == "img" and s == "galleries"]
    assert sum(EVIL_CLASS in alt for alt in alts) == 2  # quotes kept inside the attribute


def test_report_errors_name_the_problem(runs_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli, ["report", str(runs_dir), "--dataset", "demo", "--output", str(tmp_path), "--methods", "nope"]
    )
    assert isinstance(result.exception, CxrbenchError) and "nope" in str(result.exception)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(
        cli,
        [
            "report",
            str(runs_dir),
            "--dataset",
            "demo",
            "--output",
            str(blocker),
            "--gallery",
            "1",
            "--n-resamples",
            "100",
        ],
    )
    assert isinstance(result.exception, CxrbenchError) and "folder" in str(result.exception)


# ---- in a real browser -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by playwright; skipped without Chromium unless CI requires it."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if REQUIRE_BROWSER:
            pytest.fail(f"Chromium not found at {CHROMIUM}; CI installs Debian's chromium package")
        pytest.skip(f"Chromium not found at {CHROMIUM} (set CI or CXRBENCH_REQUIRE_BROWSER=1 to fail instead)")
    if REQUIRE_BROWSER:
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as driver:
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=args)
        yield chromium
        chromium.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, requests = [], []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url[:80]}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, problems, requests


def test_page_loads_offline_with_every_image_decoded(browser, report):
    page, problems, requests = _open(browser, report)
    try:
        assert problems == []
        assert requests == [report.as_uri()]  # the page itself; data: URIs make no request
        images = page.evaluate(
            """() => [...document.querySelectorAll('#galleries img')].map(
                   img => [img.complete, img.naturalWidth, img.naturalHeight])"""
        )
        assert len(images) == len(PATHOLOGIES) * len(METHODS) * 2
        assert all(complete and width > 0 and height > 0 for complete, width, height in images)
        forest = page.evaluate("() => [...document.querySelectorAll('#forest img')].map(img => img.naturalWidth)")
        assert len(forest) == 3 and min(forest) > 0
        shot = matplotlib.image.imread(io.BytesIO(page.screenshot(full_page=False)), format="png")[..., :3]
        assert shot.std() > 0.05
        assert (shot.sum(axis=-1) < 2.9).mean() > 0.02  # more than a blank page's few pixels are not white
        page.evaluate("() => document.getElementById('galleries').scrollIntoView()")
        shot = matplotlib.image.imread(io.BytesIO(page.screenshot(full_page=False)), format="png")[..., :3]
        assert (shot.sum(axis=-1) < 2.9).mean() > 0.1  # radiographs and heatmaps fill the view
    finally:
        page.close()


def test_injected_markup_does_not_run_in_the_browser(browser, evil_report):
    page, problems, requests = _open(browser, evil_report)
    try:
        assert problems == [] and requests == [evil_report.as_uri()]
        assert page.title() == "cxrbench report: test-evil"  # no injected handler changed it
        assert page.evaluate("() => document.querySelectorAll('b').length") == 0
        assert page.evaluate("() => document.querySelectorAll('#galleries img').length") == len(PATHOLOGIES) * 2
    finally:
        page.close()
