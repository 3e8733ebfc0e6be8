"""`cxrbench breakdown`: the mean and interval of each metric per stratum of pairs (docs/analysis.md)."""

from __future__ import annotations

from pathlib import Path

import click

from cxrbench.commands.common import chosen_runs, emit, split_list


@click.command("breakdown")
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--dataset", "-d", required=True, help="Dataset of the runs.")
@click.option(
    "--by",
    required=True,
    type=click.Choice(["box-size", "side", "n-boxes", "prompt-length", "class"]),
    help="Strata: box area terciles, patient side, 1/2/3+ boxes, prompt words (1-2/3-4/5+), or class.",
)
@click.option(
    "--side-from",
    type=click.Choice(["prompt", "boxes"]),
    default="prompt",
    show_default=True,
    help="With --by side: the side the prompt names, or the side of the box centres.",
)
@click.option("--methods", help="Comma-separated runs, in column order (default: all runs of the dataset, by name).")
@click.option("--protocol", type=click.Choice(["cxrbench", "published"]), help="Only runs scored with this protocol.")
@click.option("--metrics", help="Comma-separated: cnr, miou, auc, auc_binned, cnr_signed [default: cnr,miou,auc].")
@click.option(
    "--n-resamples",
    type=click.IntRange(min=100, max=1_000_000),
    default=10_000,
    show_default=True,
    help="Bootstrap resamples.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Bootstrap seed.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "latex", "csv"]), default="markdown", show_default=True)
@click.option("--output", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
def breakdown(
    runs_dir: Path,
    dataset: str,
    by: str,
    side_from: str,
    methods: str | None,
    protocol: str | None,
    metrics: str | None,
    n_resamples: int,
    seed: int,
    fmt: str,
    output: Path | None,
) -> None:
    """Break the stored runs' scores down by a property of the pair: per stratum and method, the mean of each
    metric and its 95 % bootstrap interval, on the pairs every run scored."""
    from cxrbench.benchmark.breakdown import breakdown as compute
    from cxrbench.benchmark.breakdown import format_breakdown
    from cxrbench.leaderboard.tables import DEFAULT_METRICS

    chosen = chosen_runs(runs_dir, dataset, methods, protocol)
    frame = compute(chosen, by, split_list(metrics) or DEFAULT_METRICS, side_from, n_resamples, seed)
    if frame.attrs["n_dropped"]:
        click.echo(f"left out {frame.attrs['n_dropped']} pairs that not every run scored", err=True)
    emit(format_breakdown(frame, fmt), output)  # type: ignore[arg-type]
