"""The zero-shot paper's ablations as `cxrbench sweep`s on the tiny bundle (docs/ablations.md): Table II (layers 11
vs 6, a window of all 100 vs 20 steps of T = 100, Otsu on/off) and Table III (pathology vs all tokens), each one
command, on the local executor and on a real local Ray instance with byte-identical scores, rendered as ablation
tables; the configurations share the inversion trajectories (docs/ldm.md section 6)."""

import pytest
from click.testing import CliRunner

from cxrbench.cli import cli

from ..conftest import require

require("torch")
require("monai")

TABLE_II = ["--grid", "layers=0-10,3-8", "--grid", "steps=0-100,40-60", "--grid", "otsu=true,false"]
TABLE_III = ["--grid", "tokens=all,pathology"]


def sweep(out, bundle, grid, *executor):
    arguments = ["sweep", "-m", "ldm-zeroshot", "-d", "demo", "--weights", str(bundle), "--limit", "2"]
    arguments += ["-o", "schedule=100", "--out", str(out), "--n-resamples", "100", "--no-progress", *grid, *executor]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    return result


def table(out):
    result = CliRunner().invoke(cli, ["table", str(out), "--dataset", "demo", "--ablation", "ldm-zeroshot"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def one_thread():
    """torch's CPU kernels may sum in another order with another number of threads; a Ray worker with one CPU runs
    one thread (Ray sets OMP_NUM_THREADS to the actor's num_cpus), so the local run does too (docs/scaling.md)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tables_ii_and_iii_as_sweeps_locally_and_on_ray(bundle, tmp_path, one_thread):
    require("ray")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    for out, executor in ((local, ()), (on_ray, ("--executor", "ray", "--workers", "1"))):
        sweep(out, bundle, TABLE_II, *executor)
        # Table III at the same schedule: its window (40-60) lies in Table II's stored 0-100 trajectories
        sweep(out, bundle, TABLE_III, *executor)
    runs = sorted(p.name for p in (local / "demo").iterdir() if p.name != "heatmaps")
    assert len(runs) == 8 + 2
    assert runs == sorted(p.name for p in (on_ray / "demo").iterdir() if p.name != "heatmaps")
    for name in runs:
        scores = [out / "demo" / name / "scores.csv" for out in (local, on_ray)]
        assert scores[0].read_bytes() == scores[1].read_bytes(), name
    shared = local / "demo" / "heatmaps" / ".shared"
    assert len(list(shared.glob("*/traj-*.npz"))) == 2  # one trajectory per image served all ten configurations

    text = table(local)
    assert text == table(on_ray)
    header = next(line for line in text.splitlines() if line.startswith("|"))
    for varied in ("layers", "steps", "otsu", "tokens"):
        assert varied in header
    rows = [line for line in text.splitlines() if line.startswith("| ldm-zeroshot@")]
    assert len(rows) == 10
    assert any("pathology" in row for row in rows)


@pytest.mark.parametrize("grid", [TABLE_II])
def test_a_sweep_rerun_computes_nothing(bundle, tmp_path, grid):
    first = sweep(tmp_path, bundle, grid)
    again = sweep(tmp_path, bundle, grid)
    assert "configurations stored" in first.output and "configurations stored" in again.output
    summaries = sorted((tmp_path / "demo").glob("*/summary.json"))
    import json

    assert len(summaries) == 8
    assert all(json.loads(p.read_text())["timings"]["heatmaps_computed"] == 0 for p in summaries)
