"""Option parsing and output helpers shared by every `cxrbench` subcommand."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cxrbench.errors import CxrbenchError

if TYPE_CHECKING:
    import pandas as pd

    from cxrbench.benchmark.summary import RunSummary
    from cxrbench.types import Dataset


def split_list(value: str | None) -> list[str] | None:
    """`"a, b,"` -> `["a", "b"]`; None or "" -> None."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    """`-o KEY=VALUE` pairs as a dict; dashes in keys become underscores."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CxrbenchError(f"--option takes KEY=VALUE, got {pair!r}")
        out[key.replace("-", "_")] = value
    return out


def parse_dataset_options(pairs: tuple[str, ...]) -> dict[str, str]:
    """-O KEY=VALUE pairs; the data root has its own option."""
    options = parse_options(pairs)
    if "data_root" in options:
        raise CxrbenchError("give the data root with --data-root DIR, not -O data_root=...")
    return options


def open_dataset(name: str, data_root: Path | None, pairs: tuple[str, ...]) -> Dataset:
    """The registered dataset `name` with its --data-root and -O options."""
    from cxrbench.registry import load_dataset

    return load_dataset(name, data_root=str(data_root) if data_root else None, **parse_dataset_options(pairs))


def write_frame(output: Path, frame: pd.DataFrame) -> None:
    """Write a CSV table atomically, creating its folder."""
    from cxrbench.benchmark.store import write_table

    output.parent.mkdir(parents=True, exist_ok=True)
    write_table(output, frame)


def emit(text: str, output: Path | None) -> None:
    """Print `text`, or write it atomically to `output` (its folder created) and say so."""
    from cxrbench.benchmark.store import write_atomic

    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, text)
    click.echo(f"wrote {output}", err=True)


def stored_runs(runs_dir: Path, protocol: str | None = None) -> list[RunSummary]:
    """Every readable run under `runs_dir` (of `protocol` when given); each unreadable one reported on stderr."""
    from cxrbench.benchmark.store import find_runs

    found = find_runs(runs_dir)
    for reason in found.skipped:
        click.echo(f"skipped: {reason}", err=True)
    runs = [r for r in found.runs if protocol is None or r.protocol == protocol]
    if not runs and protocol is not None:
        raise CxrbenchError(f"no stored run under {runs_dir} was scored with the {protocol} protocol")
    return runs


def chosen_runs(runs_dir: Path, dataset: str, methods: str | None, protocol: str | None = None) -> list[RunSummary]:
    """The runs named by --methods (default: every run of `dataset`, by name), of `protocol` when given."""
    from cxrbench.benchmark.compare import select_runs

    runs = stored_runs(runs_dir, protocol)
    names = split_list(methods) or sorted(r.name for r in runs if r.dataset == dataset)
    return select_runs(runs, dataset, names)


def execution_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --executor, --ray-address, --gpus-per-worker, --workers and --score-workers (docs/scaling.md) to a
    command; it receives them as one `execution` dict of run_benchmark keyword arguments."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        executor: str,
        ray_address: str | None,
        gpus_per_worker: float | None,
        workers: int | None,
        score_workers: int | None,
        **kwargs: Any,
    ) -> Any:
        execution = {
            "executor": executor,
            "ray_address": ray_address,
            "gpus_per_worker": gpus_per_worker,
            "workers": workers,
            "score_workers": score_workers,
        }
        return command(*args, execution=execution, **kwargs)

    options = (
        click.option(
            "--executor",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="Where heatmaps are computed: this process, or Ray actors (pip install -e '.[ray]').",
        ),
        click.option("--ray-address", metavar="ADDRESS", help="Ray cluster to join (default: start a local one)."),
        click.option("--gpus-per-worker", type=click.FloatRange(min=0), help="GPUs per Ray worker (default: 1 if any)"),
        click.option("--workers", type=click.IntRange(min=1), help="Ray workers (default: as the cluster allows)."),
        click.option(
            "--score-workers",
            type=click.IntRange(min=0),
            help="Processes scoring finished pairs while heatmaps are computed (0: in this process; default: "
            "min(4, cores - 1) from 64 pairs on).",
        ),
    )
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
