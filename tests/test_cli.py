import json

import pytest


def test_run_prints_the_table_and_writes_the_run(cli, tmp_path):
    result = cli("run", "--method", "oracle-gaussian", "--dataset", "demo", "--limit", "8", "--n-resamples", "100")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == (
        "| Class | N | *oracle-gaussian* CNR | *oracle-gaussian* mIoU (%) | *oracle-gaussian* AUC (%) |"
    )
    assert lines[-3].startswith("| **Average** | 8 |")
    assert lines[-1].startswith("Scored with the cxrbench protocol (docs/protocol.md). Cells: mean [95% percentile")
    # `table` shows the same metrics by default
    table = cli("table", "runs").stdout.splitlines()
    assert table[0] == lines[0] and table[-3] == lines[-3]
    assert "pair/s" in result.stderr  # progress bar
    summary = json.loads((tmp_path / "runs" / "demo" / "oracle-gaussian" / "summary.json").read_text())
    assert summary["settings"]["command"].endswith("--n-resamples 100")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "-m", "oracle-gausian", "-d", "demo"), "method 'oracle-gausian'. Did you mean 'oracle-gaussian'?"),
        (("run", "-m", "oracle-gaussian", "-d", "dmeo"), "Did you mean 'demo'?"),
        (("run", "-m", "oracle-gaussian", "-d", "demo", "--data-root", "x"), "does not take the option(s) data_root"),
        (("run", "-m", "oracle-gaussian", "-d", "demo", "--weights", "w"), "does not take the option(s) weights"),
        (("run", "-m", "oracle-gaussian", "-d", "demo", "-o", "k"), "--option takes KEY=VALUE"),
        (("run", "-m", "fake-nan", "-d", "demo"), "pair demo-000 (image demo-image-000), method: heatmap of method"),
        (("run", "-m", "oracle-gaussian", "-d", "demo", "--limit", "0"), "Invalid value for '--limit'"),
        (("run", "-m", "oracle-gaussian", "-d", "demo", "--score-device", ""), "Invalid value for '--score-device'"),
        (("table", "nowhere"), "runs folder nowhere does not exist"),
        (("run", "-m", "oracle-gaussian", "-d", "demo", "-O", "data_root=x"), "give the data root with --data-root"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(cli, args, message):
    result = cli(*args, "--no-progress" if args[0] == "run" else "--bold-best")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(cli):
    result = cli("--debug", "run", "-m", "oracle-gausian", "-d", "demo")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "UnknownNameError" in result.stderr


def test_nan_pairs_skipped_and_counted(cli, tmp_path):
    result = cli("run", "-m", "fake-nan", "-d", "demo", "--on-error", "skip", "--no-progress", "--n-resamples", "100")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "runs" / "demo" / "fake-nan" / "summary.json").read_text())
    errors = (tmp_path / "runs" / "demo" / "fake-nan" / "errors.csv").read_text().splitlines()
    assert summary["n_errors"] == len(errors) - 1 > 0
    assert summary["n_scored"] + summary["n_errors"] == 64
    assert "errors.csv" in result.stderr


def test_table_formats_and_output_file(cli, tmp_path):
    for method in ("oracle-gaussian", "center-gaussian"):
        assert cli("run", "-m", method, "-d", "demo", "--n-resamples", "100", "--no-progress").returncode == 0
    latex = cli(
        "table",
        "runs",
        "--format",
        "latex",
        "--bold-best",
        "--methods",
        "center-gaussian,oracle-gaussian",
        "--output",
        "paper/table.tex",
    )
    assert latex.returncode == 0, latex.stderr
    tex = (tmp_path / "paper" / "table.tex").read_text()
    assert tex.startswith("% cxrbench table: needs \\usepackage{booktabs,siunitx,graphicx}")
    assert tex.splitlines()[1].startswith("% Scored with the cxrbench protocol")
    assert "\\begin{tabular}" in tex and "\\end{table}" in tex
    assert tex.index("center-gaussian}") < tex.index("oracle-gaussian}")
    csv = cli("table", "runs", "--format", "csv", "--metrics", "auc")
    assert csv.stdout.splitlines()[0].startswith("class,n,protocol,center-gaussian_auc,center-gaussian_auc_low")
    markdown = cli("table", "runs", "--metrics", "cnr,auc_binned")
    assert "AUC-5 (%)" in markdown.stdout


def test_table_refuses_empty_lists_and_shows_repeated_names_once(cli):
    assert cli("run", "-m", "center-gaussian", "-d", "demo", "--limit", "8", "--n-resamples", "100").returncode == 0
    empty = cli("table", "runs", "--metrics", ",")
    assert empty.returncode == 2 and "error: --metrics names nothing" in empty.stderr and not empty.stdout
    no_method = cli("table", "runs", "--methods", " , ")
    assert no_method.returncode == 2 and "error: --methods names nothing" in no_method.stderr
    twice = cli("table", "runs", "--methods", "center-gaussian,center-gaussian", "--metrics", "cnr,cnr")
    assert twice.returncode == 0, twice.stderr
    assert "note: --methods names center-gaussian more than once; shown once" in twice.stderr
    assert "note: --metrics names cnr more than once; shown once" in twice.stderr
    assert twice.stdout.splitlines()[0] == "| Class | N | *center-gaussian* CNR |"


def test_table_options_reach_the_output(cli):
    for method in ("center-gaussian", "oracle-gaussian"):
        assert cli("run", "-m", method, "-d", "demo", "--limit", "8", "--n-resamples", "100").returncode == 0
    rows = cli("table", "runs", "--layout", "methods", "--cell", "mean", "--metrics", "cnr", "--marks").stdout
    assert rows.splitlines()[0].startswith("| Method | Pneumonia (N = 1) CNR |")
    body = rows.splitlines()[2:4]
    assert [line.split(" | ")[0] for line in body] == ["| *center-gaussian*", "| *oracle-gaussian*"]
    assert not any("**" in line or "<u>" in line for line in body)  # only bounds: nothing is ranked
    tex = cli("table", "runs", "--format", "latex", "--fit", "none", "--float", "table*").stdout
    assert "\\begin{table*}[tbp]" in tex and "\\resizebox" not in tex
    assert "\\resizebox{\\linewidth}{!}" in cli("table", "runs", "--format", "latex").stdout


def test_list_and_version(cli):
    listed = cli("list")
    assert "oracle-gaussian" in listed.stdout and "demo" in listed.stdout
    assert cli("--version").stdout.startswith("cxrbench, version")
