"""`cxrbench sweep`: run a method over a grid of options, each configuration a named run (docs/ablations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cxrbench.commands.common import benchmark_options


@click.command()
@click.option("--method", "-m", required=True, help="Method name (see `cxrbench list`).")
@click.option("--dataset", "-d", required=True, help="Dataset name (see `cxrbench list`).")
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2", help="Values of one option; repeat per option.")
@click.option("--grid-file", type=click.Path(path_type=Path), help="YAML: `grid: {KEY: [...]}` or `configurations:`.")
@click.option("--dry-run", is_flag=True, help="List the configurations and their run names; run nothing.")
@benchmark_options
def sweep(
    method: str,
    dataset: str,
    grid: tuple[str, ...],
    grid_file: Path | None,
    dry_run: bool,
    run_options: dict[str, Any],
) -> None:
    """Run METHOD on DATASET once per configuration of the grid, each a run named after its options (-o and
    the other method options are shared by every run); render with `cxrbench table --ablation`."""
    from cxrbench.benchmark.sweep import cartesian, check_configurations, parse_grid, read_grid_file, run_sweep
    from cxrbench.errors import CxrbenchError

    if bool(grid) == bool(grid_file):
        raise CxrbenchError("give the grid with --grid KEY=V1,V2 (repeatable) or with --grid-file, not both")
    protocol = run_options["protocol"]
    if grid_file:
        configurations = read_grid_file(grid_file, method, protocol)
    else:
        configurations = cartesian(method, parse_grid(grid), protocol)
    fixed = run_options.pop("method_options")
    check_configurations(configurations, fixed)
    if dry_run:
        for configuration in configurations:
            options = " ".join(f"{k}={v}" for k, v in configuration.options.items())
            click.echo(f"{configuration.name}\t{options}")
        return
    results = run_sweep(method, dataset, configurations, fixed_options=fixed, **run_options)
    errors = sum(r.summary.n_errors for r in results)
    out = run_options["out"]
    click.echo(
        f"{len(configurations)} configurations stored under {out / dataset}; {errors} pair errors. "
        f"Table: cxrbench table {out} --dataset {dataset} --ablation {method}",
        err=True,
    )
