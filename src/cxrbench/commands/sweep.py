"""`cxrbench sweep`: run a method over a grid of options, each configuration a named run (docs/ablations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cxrbench.commands.common import execution_options, parse_dataset_options, parse_options


@click.command()
@click.option("--method", "-m", required=True, help="Method name (see `cxrbench list`).")
@click.option("--dataset", "-d", required=True, help="Dataset name (see `cxrbench list`).")
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2", help="Values of one option; repeat per option.")
@click.option("--grid-file", type=click.Path(path_type=Path), help="YAML: `grid: {KEY: [...]}` or `configurations:`.")
@click.option("--data-root", type=click.Path(path_type=Path), help="Folder holding the dataset's files.")
@click.option("--weights", type=click.Path(path_type=Path), help="Folder with the method's weights.")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Tuned checkpoint folder (ldm-tuned).")
@click.option("--device", help="Torch device for model methods, e.g. cuda, cuda:1, cpu.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), help="Model dtype.")
@click.option("--option", "-o", "extra", multiple=True, metavar="KEY=VALUE", help="Option shared by every run.")
@click.option("--dataset-option", "-O", "dataset_extra", multiple=True, metavar="KEY=VALUE")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--protocol", type=click.Choice(["cxrbench", "published"]), default="cxrbench", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Score only the first N pairs.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Bootstrap seed.")
@click.option(
    "--n-resamples",
    type=click.IntRange(min=100, max=1_000_000),
    default=10_000,
    show_default=True,
    help="Bootstrap resamples.",
)
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace stored runs of another identity under the same names.")
@click.option("--dry-run", is_flag=True, help="List the configurations and their run names; run nothing.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@execution_options
def sweep(
    method: str,
    dataset: str,
    grid: tuple[str, ...],
    grid_file: Path | None,
    data_root: Path | None,
    weights: Path | None,
    checkpoint: Path | None,
    device: str | None,
    dtype: str | None,
    extra: tuple[str, ...],
    dataset_extra: tuple[str, ...],
    out: Path,
    protocol: str,
    limit: int | None,
    seed: int,
    n_resamples: int,
    on_error: str,
    overwrite: bool,
    dry_run: bool,
    no_progress: bool,
    execution: dict[str, Any],
) -> None:
    """Run METHOD on DATASET once per configuration of the grid; render with `cxrbench table --ablation`."""
    from cxrbench.benchmark.sweep import cartesian, check_configurations, parse_grid, read_grid_file, run_sweep
    from cxrbench.errors import CxrbenchError

    if bool(grid) == bool(grid_file):
        raise CxrbenchError("give the grid with --grid KEY=V1,V2 (repeatable) or with --grid-file, not both")
    if grid_file:
        configurations = read_grid_file(grid_file, method, protocol)
    else:
        configurations = cartesian(method, parse_grid(grid), protocol)
    fixed = parse_options(extra)
    check_configurations(configurations, fixed)
    if dry_run:
        for configuration in configurations:
            options = " ".join(f"{k}={v}" for k, v in configuration.options.items())
            click.echo(f"{configuration.name}\t{options}")
        return
    model = {"weights": weights, "checkpoint": checkpoint, "device": device, "dtype": dtype}
    fixed.update({k: v for k, v in model.items() if v is not None})
    total = len(configurations)
    position = iter(range(1, total + 1))
    results = run_sweep(
        method,
        dataset,
        configurations,
        fixed_options=fixed,
        on_configuration=lambda c: click.echo(f"[{next(position)}/{total}] {c.name}", err=True),
        data_root=str(data_root) if data_root else None,
        dataset_options=parse_dataset_options(dataset_extra),
        out=out,
        protocol=protocol,
        limit=limit,
        seed=seed,
        n_resamples=n_resamples,
        on_error=on_error,
        overwrite=overwrite,
        progress=not no_progress,
        **execution,
    )
    errors = sum(r.summary.n_errors for r in results)
    click.echo(
        f"{total} configurations stored under {out / dataset}; {errors} pair errors. "
        f"Table: cxrbench table {out} --dataset {dataset} --ablation {method}",
        err=True,
    )
