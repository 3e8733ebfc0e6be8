"""`cxrbench plot`: the per-class forest plot of stored runs (docs/analysis.md, "Forest plot")."""

from __future__ import annotations

from pathlib import Path

import click

from cxrbench.commands.common import chosen_runs


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
    from cxrbench.figures.forest import forest_plot, output_format, save_figure

    output_format(output)  # a wrong suffix is refused before any work
    figure = forest_plot(chosen_runs(runs_dir, dataset, methods, protocol), metric)
    click.echo(f"wrote {save_figure(figure, output)}", err=True)
