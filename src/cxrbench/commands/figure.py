"""`cxrbench figure`: the qualitative figure of stored runs (docs/figures.md)."""

from __future__ import annotations

from pathlib import Path

import click

from cxrbench.commands.common import parse_dataset_options, split_list
from cxrbench.errors import CxrbenchError


@click.command("figure")
@click.option("--dataset", "-d", required=True, help="Dataset the runs scored.")
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset files (default: the run's data root).")
@click.option("-O", "dataset_extra", multiple=True, metavar="KEY=VALUE", help="Dataset option (default: the run's).")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--methods", required=True, help="Comma-separated run names, one column each, in this order.")
@click.option("--pairs", help="Comma-separated pair ids, one row each, in this order.")
@click.option("--best", type=int, help="The N pairs with the highest --metric of the first method.")
@click.option("--worst", type=int, help="The N pairs with the lowest --metric of the first method.")
@click.option("--random", "random_n", type=int, help="N pairs drawn at random (with --seed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random.")
@click.option(
    "--metric",
    type=click.Choice(["cnr", "miou", "auc", "auc_binned", "cnr_signed"]),
    default="cnr",
    show_default=True,
    help="Metric of --best/--worst, shown in the corner with CNR and mIoU.",
)
@click.option(
    "--cmap",
    type=click.Choice(["viridis", "magma", "cividis", "inferno", "plasma"]),
    default="viridis",
    show_default=True,
)
@click.option("--device", help="Torch device for pairs that are not cached and must be recomputed.")
@click.option("--dpi", type=click.IntRange(min=50, max=1200), default=200, show_default=True, help="Raster resolution.")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="fig.pdf (vector), fig.svg or fig.png (slides).",
)
def figure(
    dataset: str,
    data_root: Path | None,
    dataset_extra: tuple[str, ...],
    runs_dir: Path,
    methods: str,
    pairs: str | None,
    best: int | None,
    worst: int | None,
    random_n: int | None,
    seed: int,
    metric: str,
    cmap: str,
    device: str | None,
    dpi: int,
    output: Path,
) -> None:
    """Draw one row per pair (image and ground-truth boxes) and one heatmap column per stored run."""
    from cxrbench.benchmark.compare import read_scores
    from cxrbench.figures import qualitative as q
    from cxrbench.figures.forest import output_format, save_figure

    output_format(output)
    names = split_list(methods)
    if not names:
        raise CxrbenchError("--methods names no run")
    if pairs is not None and not split_list(pairs):
        raise CxrbenchError("--pairs names no pair")
    metrics = tuple(dict.fromkeys((*q.SHOWN_METRICS, metric)))
    runs = q.find_runs_named(runs_dir, dataset, names)
    scores = [read_scores(run, metrics) for run in runs]
    chosen = q.select_pairs(
        scores, pairs=split_list(pairs), best=best, worst=worst, random=random_n, seed=seed, metric=metric
    )
    if not chosen:
        raise CxrbenchError(f"no pair is scored by every run of {', '.join(names)} with a defined {metric}")
    asked = {"--best": best, "--worst": worst, "--random": random_n}
    for option, n in asked.items():
        if n is not None and len(chosen) < n:
            defined = "" if option == "--random" else f" with a defined {metric}"
            click.echo(
                f"only {len(chosen)} pairs are scored by every run of {', '.join(names)}{defined}; the figure shows "
                f"{len(chosen)}, not the {n} asked for with {option}",
                err=True,
            )
    samples = q.open_run_dataset(runs[0], str(data_root) if data_root else None, parse_dataset_options(dataset_extra))
    rows = q.build_rows(runs, samples, chosen, metrics, device, scores)
    path = save_figure(q.draw(rows, names, cmap), output, dpi)
    click.echo(f"wrote {path} ({len(chosen)} pairs x {len(names)} methods)", err=True)
    click.echo(f"pairs, top to bottom (redraw them with --pairs): {','.join(chosen)}", err=True)
