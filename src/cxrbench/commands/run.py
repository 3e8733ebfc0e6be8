"""`cxrbench run`: one method on one dataset, scored and stored as a run (docs/results.md)."""

from __future__ import annotations

from typing import Any

import click

from cxrbench.commands.common import benchmark_options


@click.command()
@click.option("--method", "-m", required=True, help="Method name (see `cxrbench list`).")
@click.option("--dataset", "-d", required=True, help="Dataset name (see `cxrbench list`).")
@click.option("--name", help="Store the run as runs/<dataset>/NAME (the table's column) instead of the method's name.")
@benchmark_options
def run(method: str, dataset: str, name: str | None, run_options: dict[str, Any]) -> None:
    """Run METHOD on DATASET, cache heatmaps, score every pair and print the per-class table."""
    from cxrbench.benchmark.runner import run_benchmark
    from cxrbench.leaderboard.tables import build_leaderboard, default_metrics, to_markdown

    result = run_benchmark(method, dataset, name=name, **run_options)
    summary = result.summary
    click.echo(to_markdown(build_leaderboard([summary], metrics=default_metrics(summary.protocol))), nl=False)
    timings = summary.timings
    cached = f"{timings['heatmaps_from_cache']} heatmaps from cache, " if summary.settings["cached"] else ""
    click.echo(
        f"{summary.n_scored} pairs scored, {summary.n_errors} errors, {cached}{timings['total_s']:.1f} s "
        f"-> {result.run_dir}",
        err=True,
    )
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)
    if summary.n_errors:
        click.echo(f"skipped pairs are listed in {result.run_dir / 'errors.csv'}", err=True)
