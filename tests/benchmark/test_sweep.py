"""Sweeps: grid parsing against itertools, each configuration equal to an independent run, ablation tables
against the stored scores."""

import itertools
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cxrbench.benchmark.protocol import PROTOCOLS
from cxrbench.benchmark.runner import run_benchmark
from cxrbench.benchmark.store import find_runs
from cxrbench.benchmark.sweep import (
    Configuration,
    cartesian,
    check_configurations,
    parse_grid,
    read_grid_file,
    run_sweep,
    split_values,
)
from cxrbench.errors import CxrbenchError
from cxrbench.leaderboard.ablation import build_ablation, format_ablation

from ..conftest import require_latex

RUN = {"limit": 12, "n_resamples": 200, "progress": False}


def test_split_values_keeps_bracketed_lists_whole():
    assert split_values("a,b") == ["a", "b"]
    assert split_values("[3,4,6,7],3-8") == ["3,4,6,7", "3-8"]
    assert split_values(" true , false ") == ["true", "false"]
    for bad in ("a,,b", "[1,2", "1]", ""):
        with pytest.raises(CxrbenchError):
            split_values(bad)


def test_parse_grid_and_cartesian_order_match_itertools():
    grid = parse_grid(["layers=[3,4,6,7],3-8", "otsu=true,false", "steps=40-60"])
    assert grid == {"layers": ["3,4,6,7", "3-8"], "otsu": ["true", "false"], "steps": ["40-60"]}
    configurations = cartesian("ldm-zeroshot", grid)
    expected = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    assert [c.options for c in configurations] == expected
    assert len({c.name for c in configurations}) == 4
    assert configurations[0].name == "ldm-zeroshot@layers-3.4.6.7+otsu-true+steps-40-60"
    for bad in (["k"], ["=1"], ["k=1", "k=2"]):
        with pytest.raises(CxrbenchError):
            parse_grid(bad)


def test_grid_file_forms(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  layers: ['3,4,6,7', 3-8]\n  otsu: [true, false]\n")
    assert [c.options for c in read_grid_file(grid, "m")] == [
        {"layers": "3,4,6,7", "otsu": "true"},
        {"layers": "3,4,6,7", "otsu": "false"},
        {"layers": "3-8", "otsu": "true"},
        {"layers": "3-8", "otsu": "false"},
    ]
    named = tmp_path / "named.yaml"
    named.write_text("configurations:\n  - name: L6\n    options: {layers: [3, 4, 5, 6, 7, 8]}\n  - options: {}\n")
    assert read_grid_file(named, "m") == [Configuration("L6", {"layers": "3,4,5,6,7,8"}), Configuration("m", {})]
    for text in ("[]", "grid: {}", "grid: {a: []}", "other: 1", "configurations: [1]", "grid: {a: [{b: 1}]}", ":"):
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(CxrbenchError, match=r"bad\.yaml"):
            read_grid_file(tmp_path / "bad.yaml", "m")


def test_configurations_must_have_distinct_names_and_not_clash_with_fixed_options():
    with pytest.raises(CxrbenchError, match="no configuration"):
        check_configurations([], {})
    with pytest.raises(CxrbenchError, match="both named"):
        check_configurations([Configuration("a", {"k": "1"}), Configuration("a", {"k": "2"})], {})
    with pytest.raises(CxrbenchError, match="swept and fixed"):
        check_configurations([Configuration("a", {"k": "1"})], {"k": "3"})


def test_each_configuration_equals_an_independent_run(tmp_path):
    configurations = cartesian("oracle-gaussian", parse_grid(["k=2,4"]))
    results = run_sweep("oracle-gaussian", "demo", configurations, out=tmp_path / "sweep", **RUN)
    for configuration, result in zip(configurations, results, strict=True):
        alone = run_benchmark(
            "oracle-gaussian", "demo", method_options=configuration.options, out=tmp_path / configuration.name, **RUN
        )
        assert (result.run_dir / "scores.csv").read_bytes() == (alone.run_dir / "scores.csv").read_bytes()
        assert result.summary.identity.method_config["k"] == float(configuration.options["k"])
    first = pd.read_csv(results[0].run_dir / "scores.csv")
    second = pd.read_csv(results[1].run_dir / "scores.csv")
    assert not first["cnr"].equals(second["cnr"])  # the option reached the method


def test_ablation_table_shows_the_varied_option_and_the_stored_means(tmp_path):
    configurations = cartesian("center-gaussian", parse_grid(["size=128,256,512"]))
    run_sweep("center-gaussian", "demo", configurations, out=tmp_path, **RUN)
    run_benchmark("oracle-gaussian", "demo", out=tmp_path, **RUN)  # another method: not in the ablation
    ablation = build_ablation(find_runs(tmp_path).runs, "demo", "center-gaussian", ("cnr", "miou"))
    assert ablation.varied == ("size",)
    assert sorted(ablation.board.methods) == sorted(c.name for c in configurations)
    for run in ablation.board.methods:
        scores = pd.read_csv(Path(tmp_path) / "demo" / run / "scores.csv")
        for cls, group in scores.groupby("class_name"):
            assert ablation.mean(run, cls, "cnr") == pytest.approx(group["cnr"].mean(), rel=1e-9)
            assert ablation.mean(run, cls, "miou") == pytest.approx(100 * group["miou"].mean(), rel=1e-9)
    markdown = format_ablation(ablation, "markdown")
    assert markdown.splitlines()[0].startswith("| Run | size |")
    assert all(f"| {c.name} | {c.options['size']} |" in markdown for c in configurations)
    csv = pd.read_csv(pd.io.common.StringIO(format_ablation(ablation, "csv")))
    assert list(csv["size"]) == [int(c.options["size"]) for c in sorted(configurations, key=lambda c: c.name)]
    assert "\\toprule" in format_ablation(ablation, "latex")
    with pytest.raises(CxrbenchError, match="no stored run of method"):
        build_ablation(find_runs(tmp_path).runs, "demo", "lut-prior", ("cnr",))


def test_sweep_command(cli, tmp_path):
    listed = cli("sweep", "-m", "center-gaussian", "-d", "demo", "--grid", "size=128,256", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["center-gaussian@size-128", "size=128", "center-gaussian@size-256", "size=256"]
    done = cli("sweep", "-m", "center-gaussian", "-d", "demo", "--grid", "size=128,256", "--limit", "6",
               "--n-resamples", "200", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "runs" / "demo").iterdir() if p.name != "heatmaps") == [
        "center-gaussian@size-128",
        "center-gaussian@size-256",
    ]
    clash = cli("sweep", "-m", "center-gaussian", "-d", "demo", "--grid", "size=128", "-o", "size=64")
    assert clash.returncode == 2 and "swept and fixed" in clash.stderr
    neither = cli("sweep", "-m", "center-gaussian", "-d", "demo")
    assert neither.returncode == 2 and "--grid" in neither.stderr


def test_table_ablation_command(cli, tmp_path):
    done = cli("sweep", "-m", "center-gaussian", "-d", "demo", "--grid", "size=128,512", "--limit", "6",
               "--n-resamples", "200", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = cli("table", "runs", "-d", "demo", "--ablation", "center-gaussian", "--metrics", "cnr", "--format", "csv")
    assert shown.returncode == 0, shown.stderr
    table = pd.read_csv(pd.io.common.StringIO(shown.stdout))
    assert list(table["size"]) == [128, 512]
    for run, cnr in zip(table["run"], table["Average_cnr"], strict=True):
        scores = pd.read_csv(tmp_path / "runs" / "demo" / run / "scores.csv")
        assert cnr == pytest.approx(scores.groupby("class_name")["cnr"].mean().mean(), rel=1e-5)
    mixed = cli("table", "runs", "-d", "demo", "--ablation", "center-gaussian", "--marks")
    assert mixed.returncode == 2 and "--ablation" in mixed.stderr


def test_published_sweeps_are_named_apart_and_tabulated_per_protocol(tmp_path):
    configurations = {p: cartesian("center-gaussian", parse_grid(["size=128,512"]), p) for p in PROTOCOLS}
    assert [c.name for c in configurations["published"]] == [
        "center-gaussian@size-128@published",
        "center-gaussian@size-512@published",
    ]
    for protocol, chosen in configurations.items():
        run_sweep("center-gaussian", "demo", chosen, out=tmp_path, protocol=protocol, **RUN)
    runs = find_runs(tmp_path).runs
    for protocol in PROTOCOLS:
        ablation = build_ablation(runs, "demo", "center-gaussian", ("cnr",), protocol)
        assert list(ablation.board.methods) == [c.name for c in configurations[protocol]]
        assert ablation.board.protocol == protocol
    with pytest.raises(CxrbenchError, match="different protocols"):
        build_ablation(runs, "demo", "center-gaussian", ("cnr",))


def test_ablation_latex_compiles_and_fits(tmp_path):
    require_latex("booktabs.sty", "graphicx.sty")
    run_sweep("center-gaussian", "demo", cartesian("center-gaussian", parse_grid(["size=64,128,512"])), out=tmp_path,
              **RUN)  # fmt: skip
    ablation = build_ablation(find_runs(tmp_path).runs, "demo", "center-gaussian")  # 8 classes x 3 metrics
    for fit, fits in (("textwidth", True), ("none", False)):
        tex = format_ablation(ablation, "latex", fit)
        doc = "\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n" + tex + "\\end{document}"
        (tmp_path / f"{fit}.tex").write_text(doc)
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{fit}.tex"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:]
        overfull = re.findall(r"Overfull \\hbox \(([0-9.]+)pt too wide\)", (tmp_path / f"{fit}.log").read_text())
        assert (max(map(float, overfull), default=0.0) <= 1.0) == fits


def test_a_bad_option_value_stops_before_any_pair(cli, tmp_path):
    bad = cli("sweep", "-m", "center-gaussian", "-d", "demo", "--grid", "size=64,0", "--no-progress")
    assert bad.returncode == 2 and "option size must be a positive integer" in bad.stderr
    assert not (tmp_path / "runs" / "demo" / "center-gaussian@size-0").exists()
    few = cli("sweep", "-m", "center-gaussian", "-d", "demo", "--grid", "size=64", "--n-resamples", "5")
    assert few.returncode == 2 and "[1/1]" not in few.stderr


def test_one_progress_bar_counts_the_pairs_of_the_whole_grid(tmp_path, capsys):
    configurations = cartesian("oracle-gaussian", {"k": ["2", "3"]})
    run_sweep("oracle-gaussian", "demo", configurations, out=tmp_path, limit=3, n_resamples=100, progress=True)
    bar = capsys.readouterr().err
    assert "6/6" in bar  # 2 configurations x 3 pairs on one bar
    assert "3/3" not in bar  # no bar of its own per run
    assert "oracle-gaussian@k-3" in bar  # labelled with the configuration being run
