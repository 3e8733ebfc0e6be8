import io
import shutil
import subprocess

import pandas as pd
import pytest

from cxrbench.benchmark.runner import run_benchmark
from cxrbench.benchmark.store import find_runs
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.tables import build_leaderboard, to_csv, to_latex, to_markdown


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for method in ("oracle-gaussian", "center-gaussian"):
        run_benchmark(method, "demo", out=out, n_resamples=200, progress=False)
    return out


def test_layout_and_cells(runs):
    board = build_leaderboard(find_runs(runs).runs, methods=["oracle-gaussian", "center-gaussian"])
    summaries = {s.name: s for s in find_runs(runs).runs}
    text = to_markdown(board)
    lines = text.strip().splitlines()[:-2]  # the table, without the protocol line under it
    assert lines[0] == (
        "| Class | N | oracle-gaussian CNR | oracle-gaussian mIoU (%) | center-gaussian CNR | "
        "center-gaussian mIoU (%) |"
    )
    assert len(lines) == 2 + 8 + 1
    assert lines[-1].startswith("| **Average** | 64 |")
    cell = summaries["oracle-gaussian"].classes["Edema"]["miou"]
    expected = f"{100 * cell['mean']:.1f} [{100 * cell['low']:.1f}, {100 * cell['high']:.1f}]"
    edema = next(line for line in lines if line.startswith("| Edema"))
    assert edema.split(" | ")[3] == expected
    cnr = summaries["center-gaussian"].classes["Edema"]["cnr"]
    assert edema.split(" | ")[4] == f"{cnr['mean']:.2f} [{cnr['low']:.2f}, {cnr['high']:.2f}]"


def test_bold_best(runs):
    board = build_leaderboard(find_runs(runs).runs, methods=["center-gaussian", "oracle-gaussian"])
    rows = to_markdown(board, bold_best=True).strip().splitlines()[2:-2]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        assert not cells[2].startswith("**") and cells[4].startswith("**"), row


def test_csv_is_numeric_and_matches_summary(runs):
    board = build_leaderboard(find_runs(runs).runs, metrics=["miou", "auc"])
    frame = pd.read_csv(io.StringIO(to_csv(board)))
    summary = {s.name: s for s in find_runs(runs).runs}["oracle-gaussian"]
    avg = summary.classes["Average"]["auc"]
    row = frame[frame["class"] == "Average"].iloc[0]
    assert row["oracle-gaussian_auc"] == pytest.approx(100 * avg["mean"], rel=1e-5)
    assert row["oracle-gaussian_auc_high"] == pytest.approx(100 * avg["high"], rel=1e-5)


def test_errors_name_what_exists(runs, tmp_path):
    with pytest.raises(CxrbenchError, match="no stored run of biovil on 'demo'; runs exist for center-gaussian"):
        build_leaderboard(find_runs(runs).runs, methods=["biovil"])
    with pytest.raises(CxrbenchError, match="unknown metric"):
        build_leaderboard(find_runs(runs).runs, metrics=["dice"])
    with pytest.raises(CxrbenchError, match=r"no usable summary\.json"):
        find_runs(tmp_path)


def test_latex_structure(runs):
    tex = to_latex(
        build_leaderboard(find_runs(runs).runs, methods=["oracle-gaussian", "center-gaussian"]), bold_best=True
    )
    assert tex.splitlines()[0] == "% Scored with the cxrbench protocol (docs/protocol.md)."
    lines = tex.splitlines()[1:]
    assert lines[0] == "\\begin{tabular}{lrcccc}"
    assert lines[1] == "\\toprule"
    assert "\\multicolumn{2}{c}{oracle-gaussian}" in lines[2]
    assert lines[3] == "\\cmidrule(lr){3-4} \\cmidrule(lr){5-6}"
    assert "mIoU (\\%)" in lines[4]
    assert lines.index("\\midrule", 6) == next(i for i, x in enumerate(lines) if x.startswith("Average")) - 1
    assert "\\bfseries" in tex
    assert lines[-2:] == ["\\bottomrule", "\\end{tabular}"]
    assert lines[2].count("&") == 3  # Class & N & two multicolumns
    body = [x for x in lines[lines.index("\\midrule") :] if x.endswith("\\\\")]
    assert len(body) == 9
    assert all(x.count("&") == 5 for x in body)


@pytest.mark.latex
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (.ci/run installs it)")
def test_latex_compiles(runs, tmp_path):
    tex = to_latex(build_leaderboard(find_runs(runs).runs), bold_best=True)
    doc = (
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
        "\\begin{document}\n\\begin{table}\\tiny\n" + tex + "\\end{table}\n\\end{document}\n"
    )
    (tmp_path / "t.tex").write_text(doc)
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000
