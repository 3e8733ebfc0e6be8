import json

import pytest


def test_run_prints_the_table_and_writes_the_run(cli, tmp_path):
    result = cli("run", "--method", "oracle-gaussian", "--dataset", "demo", "--limit", "8", "--n-resamples", "100")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| Class | N | oracle-gaussian CNR")
    assert lines[-3].startswith("| **Average** | 8 |")
    assert lines[-1] == "Scored with the cxrbench protocol (docs/protocol.md)."
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
    assert tex.startswith("% Scored with the cxrbench protocol")
    assert tex.splitlines()[1].startswith("\\begin{tabular}")
    assert tex.index("center-gaussian") < tex.index("oracle-gaussian")
    csv = cli("table", "runs", "--format", "csv", "--metrics", "auc")
    assert csv.stdout.splitlines()[0].startswith("class,n,protocol,center-gaussian_auc,center-gaussian_auc_low")
    markdown = cli("table", "runs", "--metrics", "cnr,auc_binned")
    assert "AUC-5 (%)" in markdown.stdout


def test_list_and_version(cli):
    listed = cli("list")
    assert "oracle-gaussian" in listed.stdout and "demo" in listed.stdout
    assert cli("--version").stdout.startswith("cxrbench, version")
