"""`cxrbench plot`: the per-class forest plot of stored runs (docs/analysis.md, "Forest plot")."""

from __future__ import annotations

from pathlib import Path

import click

from cxrbench.commands.common import split_list
from cxrbench.errors import CxrbenchError


@click.command("plot")
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--dataset", "-d", required=True, help="Dataset of the runs.")
@click.option("--methods", help="Comma-separated runs, in legend order (default: all runs of the dataset, by name).")
@click.option("--protocol", type=click.Choice(["cxrbench", "published"]), help="Only runs scored with this protocol.")
@click.option(
    "--metric",
    type=click.Choice(["cnr", "miou", "auc", "auc_binned", "cnr_signed"]),
    default="cnr",
    show_default=True,
    help="The metric to plot.",
)
@click.option(
    "--output", required=True, type=click.Path(path_type=Path), help="Figure to write: .pdf (vector), .svg or .png."
)
def plot(runs_dir: Path, dataset: str, methods: str | None, protocol: str | None, metric: str, output: Path) -> None:
    """Draw the per-class forest plot of the stored runs under RUNS_DIR (default: runs): each method's mean and
    95 % bootstrap interval per class, the Average row set apart."""
    from cxrbench.benchmark.compare import select_runs
    from cxrbench.benchmark.store import find_runs
    from cxrbench.figures.forest import forest_plot, output_format, save_figure

    output_format(output)  # a wrong suffix is refused before any work
    found = find_runs(runs_dir)
    for reason in found.skipped:
        click.echo(f"skipped: {reason}", err=True)
    runs = [r for r in found.runs if protocol is None or r.protocol == protocol]
    if not runs:
        raise CxrbenchError(f"no stored run under {runs_dir} was scored with the {protocol} protocol")
    names = split_list(methods) or sorted(r.name for r in runs if r.dataset == dataset)
    click.echo(f"wrote {save_figure(forest_plot(select_runs(runs, dataset, names), metric), output)}", err=True)
