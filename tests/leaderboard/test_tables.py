"""Leaderboard tables: layouts, cells, bounds, marks (against a naive argmax and direct paired comparisons) and
LaTeX that compiles and fits the page."""

import dataclasses
import io
import re
import shlex
import subprocess

import numpy as np
import pandas as pd
import pytest

from cxrbench.benchmark.compare import paired_bootstrap
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.benchmark.store import find_runs
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.marks import ALPHA, significant_cells, table_marks
from cxrbench.leaderboard.tables import (
    METRIC_STYLE,
    Marks,
    build_leaderboard,
    default_metrics,
    is_bound,
    to_csv,
    to_latex,
    to_markdown,
)

from ..conftest import require_latex

AVERAGE = "Average"


class Bright:
    """Heatmap = the image (bright findings score high)."""

    name = "bright"

    def heatmap(self, image, prompt):
        side = min(image.shape)
        return image[:side, :side]


class Dark(Bright):
    """Heatmap = the inverted image: the same CNR as Bright (|mu_in - mu_out|), other mIoU and AUC."""

    name = "dark"

    def heatmap(self, image, prompt):
        return 1 - super().heatmap(image, prompt)


class Blurred(Bright):
    """Heatmap = a box-blurred image (a third competitor with other values)."""

    name = "blurred"

    def heatmap(self, image, prompt):
        square = super().heatmap(image, prompt)
        kernel = np.ones(9) / 9
        rows = np.apply_along_axis(np.convolve, 0, square, kernel, mode="same")
        return np.apply_along_axis(np.convolve, 1, rows, kernel, mode="same")


RANKED = ("bright", "dark", "blurred")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for method in (Bright(), Dark(), Blurred(), "oracle-gaussian", "center-gaussian"):
        run_benchmark(method, "demo", out=out, n_resamples=200, progress=False)
    return out


@pytest.fixture(scope="module")
def summaries(runs):
    return {s.name: s for s in find_runs(runs).runs}


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table_lines(text):
    """The table rows of a Markdown table (header and separator excepted), without the footnote."""
    return [line for line in text.splitlines() if line.startswith("|")][2:]


def test_layout_and_cells(summaries):
    board = build_leaderboard(list(summaries.values()), methods=["oracle-gaussian", "center-gaussian"])
    lines = to_markdown(board).strip().splitlines()
    assert lines[0] == (
        "| Class | N | *oracle-gaussian* CNR | *oracle-gaussian* mIoU (%) | *oracle-gaussian* AUC (%) | "
        "*center-gaussian* CNR | *center-gaussian* mIoU (%) | *center-gaussian* AUC (%) |"
    )
    rows = _table_lines(to_markdown(board))
    assert len(rows) == 8 + 1
    assert rows[-1].startswith("| **Average** | 64 |")
    cell = summaries["oracle-gaussian"].classes["Edema"]["miou"]
    expected = f"{100 * cell['mean']:.1f} [{100 * cell['low']:.1f}, {100 * cell['high']:.1f}]"
    edema = _cells(next(line for line in rows if line.startswith("| Edema")))
    assert edema[3] == expected
    cnr = summaries["center-gaussian"].classes["Edema"]["cnr"]
    assert edema[5] == f"{cnr['mean']:.2f} [{cnr['low']:.2f}, {cnr['high']:.2f}]"
    assert lines[-1].startswith("Scored with the cxrbench protocol (docs/protocol.md). Cells: mean [95% percentile")
    assert "200 resamples" in lines[-1]


def test_the_default_metrics_are_cnr_miou_auc_and_the_published_auc_under_that_protocol(summaries):
    assert default_metrics("cxrbench") == ("cnr", "miou", "auc")
    assert default_metrics("published") == ("cnr", "miou", "auc_binned")
    assert build_leaderboard(list(summaries.values())).metrics == ("cnr", "miou", "auc")


@pytest.mark.parametrize("cell", ["ci", "pm", "mean"])
def test_cell_styles_against_the_summary(summaries, cell):
    board = build_leaderboard(list(summaries.values()), methods=["blurred"], metrics=["miou"])
    rows = {_cells(line)[0]: _cells(line)[2] for line in _table_lines(to_markdown(board, cell=cell))}
    for cls, text in rows.items():
        stored = summaries["blurred"].classes[cls.strip("*")]["miou"]
        mean, low, high = (100 * stored[k] for k in ("mean", "low", "high"))
        expected = {
            "ci": f"{mean:.1f} [{low:.1f}, {high:.1f}]",
            "pm": f"{mean:.1f} ± {(high - low) / 2:.1f}",
            "mean": f"{mean:.1f}",
        }[cell]
        assert text == expected


def test_methods_layout_has_a_row_per_method_and_bounds_last(summaries):
    board = build_leaderboard(list(summaries.values()), methods=["oracle-gaussian", "dark", "bright"], metrics=["cnr"])
    assert board.methods == ("dark", "bright", "oracle-gaussian")
    lines = to_markdown(board, layout="methods").splitlines()
    assert lines[0].startswith("| Method | Pneumonia (N = 8) CNR |") and lines[0].endswith("**Average (N = 64)** CNR |")
    rows = _table_lines("\n".join(lines))
    assert [_cells(r)[0] for r in rows] == ["dark", "bright", "*oracle-gaussian*"]
    stored = summaries["dark"].classes[AVERAGE]["cnr"]
    assert _cells(rows[0])[-1] == f"{stored['mean']:.2f} [{stored['low']:.2f}, {stored['high']:.2f}]"


def test_bounds_come_from_the_summary_or_the_built_in_names(summaries):
    oracle, bright = summaries["oracle-gaussian"], summaries["bright"]
    assert is_bound(oracle) and not is_bound(bright)
    declared = dataclasses.replace(bright, settings={**bright.settings, "bound": True})
    undeclared = dataclasses.replace(oracle, settings={**oracle.settings, "bound": False})
    assert is_bound(declared) and not is_bound(undeclared)
    board = build_leaderboard([declared, undeclared, summaries["dark"]])
    assert board.bounds == {"bright"} and board.methods == ("dark", "oracle-gaussian", "bright")


def _naive_ranks(summaries, cls, metric):
    """Best and second-best ranked methods by the printed means, straight from the stored summaries."""
    _, scale, decimals = METRIC_STYLE[metric]
    printed = {m: float(f"{summaries[m].classes[cls][metric]['mean'] * scale:.{decimals}f}") for m in RANKED}
    top = max(printed.values())
    below = [v for v in printed.values() if v < top]
    second = max(below) if below else None
    return {m for m, v in printed.items() if v == top}, {m for m, v in printed.items() if v == second}


def test_marks_bold_the_naive_argmax_and_underline_the_runner_up_never_a_bound(summaries):
    board = build_leaderboard(list(summaries.values()))
    text = to_markdown(board, marks=Marks())
    header = _cells(text.splitlines()[0])
    for row in _table_lines(text):
        cells = _cells(row)
        cls = cells[0].strip("*")
        for column, cell in zip(header[2:], cells[2:], strict=True):
            method, label = column.strip("*").split(" ", 1)
            method = method.strip("*")
            metric = next(k for k, style in METRIC_STYLE.items() if style[0] == label)
            best, second = _naive_ranks(summaries, cls, metric) if method in RANKED else (set(), set())
            assert cell.startswith("**") == (method in best), (cls, column, cell)
            assert cell.startswith("<u>") == (method in second), (cls, column, cell)
    # bright and dark have the same CNR everywhere: tied, they share whatever mark they get
    for cls in board.classes:
        for marked in _naive_ranks(summaries, cls, "cnr"):
            assert ("bright" in marked) == ("dark" in marked)
    assert any("bright" in _naive_ranks(summaries, cls, "cnr")[0] for cls in board.classes)


def _direct_daggers(summaries, board):
    """Cells whose unique best beats every second best: one paired_bootstrap call per cell, as compare does."""
    expected = set()
    for cls in board.classes:
        for metric in board.metrics:
            best, second = _naive_ranks(summaries, cls, metric)
            if len(best) != 1 or not second:
                continue
            (winner,) = best
            verdicts = []
            for other in second:
                rows = paired_bootstrap([summaries[other], summaries[winner]], other, [metric], 10_000, 0).rows
                row = rows[(rows["class"] == cls) & (rows["metric"] == metric)].iloc[0]
                p = row["p"] if cls == AVERAGE else row["p_holm"]
                verdicts.append(row["diff"] > 0 and p < ALPHA)
            if all(verdicts):
                expected.add((cls, metric))
    return expected


def test_daggers_match_direct_paired_comparisons(summaries):
    board = build_leaderboard(list(summaries.values()), metrics=["miou", "auc"])
    expected = _direct_daggers(summaries, board)
    assert 0 < len(expected) < len(board.classes) * 2  # the demo has significant and non-significant cells
    assert significant_cells(board, list(summaries.values())) == expected
    marks = table_marks(board, list(summaries.values()))
    text = to_markdown(board, marks=marks)
    header = _cells(text.splitlines()[0])
    found = set()
    for row in _table_lines(text):
        cells = _cells(row)
        for column, cell in zip(header[2:], cells[2:], strict=True):
            if "†" in cell:
                assert cell.startswith("**")
                label = column.split(" ", 1)[1]
                found.add((cells[0].strip("*"), next(k for k, s in METRIC_STYLE.items() if s[0] == label)))
    assert found == expected
    assert "Holm-adjusted across the classes, the Average unadjusted" in text.splitlines()[-1]


def test_identical_scores_tie_and_get_no_dagger(summaries, tmp_path):
    twin = dataclasses.replace(summaries["bright"], name="bright-copy")
    board = build_leaderboard([summaries["bright"], twin], metrics=["miou"])
    assert all(board.rank(cls, "miou") == ({"bright", "bright-copy"}, set()) for cls in board.classes)
    assert significant_cells(board, [summaries["bright"], twin]) == frozenset()


def test_csv_is_numeric_and_matches_summary(summaries):
    board = build_leaderboard(list(summaries.values()), metrics=["miou", "auc"])
    frame = pd.read_csv(io.StringIO(to_csv(board)))
    avg = summaries["oracle-gaussian"].classes["Average"]["auc"]
    row = frame[frame["class"] == "Average"].iloc[0]
    assert row["oracle-gaussian_auc"] == pytest.approx(100 * avg["mean"], rel=1e-5)
    assert row["oracle-gaussian_auc_high"] == pytest.approx(100 * avg["high"], rel=1e-5)


def test_errors_name_what_exists(summaries, tmp_path):
    runs = list(summaries.values())
    with pytest.raises(CxrbenchError, match="no stored run of biovil on 'demo'; runs exist for blurred"):
        build_leaderboard(runs, methods=["biovil"])
    with pytest.raises(CxrbenchError, match="unknown metric"):
        build_leaderboard(runs, metrics=["dice"])
    with pytest.raises(CxrbenchError, match="--metrics names nothing"):
        build_leaderboard(runs, metrics=[])
    with pytest.raises(CxrbenchError, match="--methods names nothing"):
        build_leaderboard(runs, methods=[])
    with pytest.raises(CxrbenchError, match=r"no usable summary\.json"):
        find_runs(tmp_path)


def test_repeated_names_are_shown_once_with_a_note(summaries):
    with pytest.warns(UserWarning, match="--methods names bright more than once; shown once"):
        board = build_leaderboard(list(summaries.values()), methods=["bright", "dark", "bright"], metrics=["cnr"])
    assert board.methods == ("bright", "dark")
    with pytest.warns(UserWarning, match="--metrics names cnr more than once"):
        assert build_leaderboard(list(summaries.values()), metrics=["cnr", "cnr"]).metrics == ("cnr",)


def _tablenums(text):
    return re.findall(r"\\tablenum\[table-format=([-0-9.]+)\]\{([-0-9.]+)\}", text)


def test_latex_float_caption_and_aligned_numbers(summaries):
    board = build_leaderboard(
        list(summaries.values()), methods=["bright", "dark", "oracle-gaussian", "center-gaussian"], metrics=["cnr"]
    )
    tex = to_latex(board, marks=table_marks(board, list(summaries.values())))
    lines = tex.splitlines()
    assert lines[0] == "% cxrbench table: needs \\usepackage{booktabs,siunitx,graphicx} (siunitx v3 or later)"
    assert lines[2] == "\\begin{table}[tbp]" and lines[-1] == "\\end{table}"
    caption = next(line for line in lines if line.startswith("\\caption{"))
    for part in (
        "demo: $N = 64$ pairs in 8 classes",
        "cxrbench protocol",
        "95\\% percentile bootstrap",
        "200 resamples",
    ):
        assert part in caption
    assert "\\label{tab:cxrbench-demo}" in lines
    assert "\\multicolumn{2}{c}{\\textit{Bounds (not ranked)}}" in tex
    assert "\\multicolumn{1}{c}{\\textit{oracle-gaussian}}" in tex
    body = [line for line in lines if line.endswith("\\\\") and line.split(" & ")[0] in (*board.classes,)]
    assert len(body) == 9 and all(line.count(" & ") == 1 + 4 for line in body)
    # each number once, in the metric's format: "mean [low, high]" of CNR is 3 numbers of 1 digit and 2 decimals
    numbers = _tablenums("\n".join(body))
    assert len(numbers) == 9 * 4 * 3 and {f for f, _ in numbers} == {"1.2"}
    stored = summaries["center-gaussian"].classes["Edema"]["cnr"]
    edema = next(line for line in body if line.startswith("Edema &"))
    assert [v for _, v in _tablenums(edema)[-3:]] == [f"{stored[k]:.2f}" for k in ("mean", "low", "high")]
    assert "\\textbf{" not in edema.split(" & ")[-1] and "\\textbf{" not in edema.split(" & ")[-2]


@pytest.mark.parametrize(
    ("texts", "expected"),
    [(["0.25", "12.50", "--"], "2.2"), (["-0.5", "3.0"], "-1.1"), (["3", "12"], "2"), (["--"], "1")],
)
def test_number_formats_hold_every_number(texts, expected):
    from cxrbench.leaderboard.tables import _number_format

    assert _number_format(texts) == expected


def _compile(tmp_path, name, tex):
    doc = (
        "\\documentclass{article}\n\\usepackage{booktabs,siunitx,graphicx}\n\\begin{document}\n"
        + tex
        + "\\end{document}\n"
    )
    (tmp_path / f"{name}.tex").write_text(doc)
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    log = (tmp_path / f"{name}.log").read_text(errors="replace")
    return [float(pt) for pt in re.findall(r"Overfull \\hbox \(([0-9.]+)pt too wide\)", log)]


@pytest.mark.latex
def test_latex_compiles_and_fits_in_every_layout_and_cell(summaries, tmp_path):
    require_latex("booktabs.sty", "siunitx.sty", "graphicx.sty")
    runs = list(summaries.values())
    board = build_leaderboard(
        runs, methods=["bright", "dark", "oracle-gaussian", "center-gaussian"], metrics=["cnr", "miou"]
    )
    marks = table_marks(board, runs)
    for layout in ("classes", "methods"):
        for cell in ("ci", "pm", "mean"):
            overfull = _compile(tmp_path, f"{layout}-{cell}", to_latex(board, marks, cell, layout))
            assert all(pt <= 1.0 for pt in overfull), (layout, cell, overfull)
    # the check can fail: at its natural width the CI table is far wider than the text
    assert max(_compile(tmp_path, "natural", to_latex(board, marks, "ci", "classes", fit="none"))) > 100


def _marks_drawn(text):
    """(bold, underlined, dagger, tested) in a one-metric Markdown table: whether any cell carries the mark, and
    whether a row has one best and a second best (a cell the significance test compares)."""
    rows = [_cells(row)[2:] for row in _table_lines(text)]
    cells = [cell for row in rows for cell in row]
    tested = any(sum(c.startswith("**") for c in row) == 1 and any(c.startswith("<u>") for c in row) for row in rows)
    bold, underlined = any(c.startswith("**") for c in cells), any(c.startswith("<u>") for c in cells)
    return bold, underlined, any("†" in c for c in cells), tested


@pytest.mark.parametrize(
    "methods",
    [
        ("oracle-gaussian", "center-gaussian"),  # bounds only: nothing is ranked
        ("bright", "oracle-gaussian"),  # one ranked method: nothing to mark
        ("bright", "dark"),  # tied on CNR: best only, no second, nothing tested
        ("bright", "dark", "blurred", "oracle-gaussian"),
    ],
)
def test_the_caption_names_only_the_marks_the_table_shows(summaries, methods):
    runs = list(summaries.values())
    board = build_leaderboard(runs, methods=list(methods), metrics=["cnr"])
    marks = table_marks(board, runs)
    text = to_markdown(board, marks=marks)
    bold, underlined, dagger, tested = _marks_drawn(text)
    footnote = text.splitlines()[-1]
    caption = next(line for line in to_latex(board, marks=marks).splitlines() if line.startswith("\\caption{"))
    for said in (footnote, caption):
        assert ("Bold: best mean" in said) == bold, said
        assert ("underlined: second best" in said) == underlined, said
        assert ("significantly better" in said) == tested, said
        assert ("bounds excepted" in said) == (bold and bool(board.bounds)), said
    assert ("Dagger:" in footnote) == dagger
    if set(methods) <= {"oracle-gaussian", "center-gaussian"}:  # bounds only
        assert not bold and "\\textbf" not in to_latex(board, marks=marks)


def test_an_ablation_over_other_data_names_the_runs_and_the_command_that_reruns_them(tmp_path):
    """The message names the runs of each data version, and its command, run as printed, makes them comparable
    (not --methods or --allow-mixed, which --ablation refuses)."""
    from click.testing import CliRunner

    from cxrbench.cli import cli
    from cxrbench.leaderboard.ablation import build_ablation

    out = tmp_path / "runs"
    for name, size, limit in (("cg-64", "64", 8), ("cg-512", "512", 8), ("cg-128", "128", 5)):
        run_benchmark(
            "center-gaussian", "demo", method_options={"size": size}, name=name, limit=limit, out=out,
            n_resamples=100, progress=False,
        )  # fmt: skip
    with pytest.raises(CxrbenchError) as caught:
        build_ablation(find_runs(out).runs, "demo", "center-gaussian", ("cnr",))
    message = str(caught.value)
    assert "different versions of the dataset" in message
    assert "cg-512, cg-64 (limit 8, data " in message and "cg-128 (limit 5, data " in message
    assert "Rerun cg-128 on the data of cg-512" in message
    assert "--allow-mixed" not in message and "--methods" not in message
    (command,) = re.findall(r"`([^`]+)`", message)
    words = shlex.split(command)
    assert words[:2] == ["cxrbench", "run"] and words[-3:] == ["--name", "cg-128", "--overwrite"]
    result = CliRunner().invoke(cli, [*words[1:], "--n-resamples", "100", "--no-progress"])
    assert result.exit_code == 0, result.output
    ablation = build_ablation(find_runs(out).runs, "demo", "center-gaussian", ("cnr",))
    assert ablation.options == {"cg-128": {"size": 128}, "cg-512": {"size": 512}, "cg-64": {"size": 64}}
    rerun = next(r for r in find_runs(out).runs if r.name == "cg-128")
    assert rerun.identity.limit == 8 and rerun.n_scored == 8
