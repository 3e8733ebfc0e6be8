"""`cxrbench report`: the offline HTML report of a dataset's stored runs (docs/figures.md, "Report")."""

from __future__ import annotations

from pathlib import Path

import click

from cxrbench.commands.common import parse_dataset_options, split_list


@click.command("report")
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--dataset", "-d", required=True, help="Dataset whose runs to report.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True, help="Folder for index.html.")
@click.option("--methods", help="Comma-separated run names, in column order (default: all, by name).")
@click.option("--protocol", help="Report only the runs scored with this protocol.")
@click.option("--metrics", help="Metrics of the tables and plots (default: CNR, mIoU, AUC as `cxrbench table`).")
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset files (default: the run's data root).")
@click.option("-O", "dataset_extra", multiple=True, metavar="KEY=VALUE", help="Dataset option (default: the run's).")
@click.option("--gallery", type=click.IntRange(min=1), default=2, show_default=True, help="Pairs per gallery.")
@click.option(
    "--gallery-metric",
    type=click.Choice(["cnr", "miou", "auc", "auc_binned", "cnr_signed"]),
    default="cnr",
    show_default=True,
    help="Metric ranking the gallery pairs.",
)
@click.option("--n-resamples", type=click.IntRange(min=100), default=10_000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", help="Torch device for gallery pairs that are not cached and must be recomputed.")
def report(
    runs_dir: Path,
    dataset: str,
    output: Path,
    methods: str | None,
    protocol: str | None,
    metrics: str | None,
    data_root: Path | None,
    dataset_extra: tuple[str, ...],
    gallery: int,
    gallery_metric: str,
    n_resamples: int,
    seed: int,
    device: str | None,
) -> None:
    """Write one self-contained HTML page (leaderboard, forest plots, paired comparison, breakdowns, galleries of
    each method's best and worst pairs) that opens offline from the file system."""
    from cxrbench.report import ReportOptions, build_report

    options = ReportOptions(
        metrics=tuple(split_list(metrics) or ()) or None,
        gallery=gallery,
        gallery_metric=gallery_metric,
        n_resamples=n_resamples,
        seed=seed,
    )
    path, problems = build_report(
        runs_dir,
        dataset,
        output,
        methods=split_list(methods),
        protocol=protocol,
        data_root=str(data_root) if data_root else None,
        dataset_options=parse_dataset_options(dataset_extra),
        options=options,
        device=device,
    )
    for problem in problems:
        click.echo(f"note: left out of the report: {problem}", err=True)
    click.echo(f"wrote {path} (open it in a browser; it needs no network)", err=True)
