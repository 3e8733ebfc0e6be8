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


def _device_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a blank device name; torch parses the others when the run starts."""
    if value is not None and not value.strip():
        raise click.BadParameter("give a device, e.g. cuda, cuda:1 or cpu")
    return value


def execution_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --executor, --ray-address, --gpus-per-worker, --workers, --score-workers and --score-device
    (docs/scaling.md) to a command; it receives them as one `execution` dict of run_benchmark keyword arguments."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        executor: str,
        ray_address: str | None,
        gpus_per_worker: float | None,
        workers: int | None,
        score_workers: int | None,
        score_device: str | None,
        **kwargs: Any,
    ) -> Any:
        execution = {
            "executor": executor,
            "ray_address": ray_address,
            "gpus_per_worker": gpus_per_worker,
            "workers": workers,
            "score_workers": score_workers,
            "score_device": score_device,
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
        click.option(
            "--score-device",
            metavar="DEVICE",
            callback=_device_name,
            help="Score maps in the image frame (full-frame, bilinear) with torch on this device (e.g. cuda), in "
            "the run's process; nearest maps stay on their own grid (docs/scaling.md).",
        ),
    )
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def benchmark_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options `run` and `sweep` share: the data, the method's weights, checkpoint, device and dtype,
    -o/-O options, where and how runs are stored and scored, and `execution_options`. The command receives them
    as one `run_options` dict of run_benchmark keyword arguments; its `method_options` hold the model options
    and -o's (-o winning), those not given left out."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        data_root: Path | None,
        weights: Path | None,
        checkpoint: Path | None,
        device: str | None,
        dtype: str | None,
        allow_unverified_weights: bool,
        extra: tuple[str, ...],
        dataset_extra: tuple[str, ...],
        out: Path,
        limit: int | None,
        protocol: str,
        seed: int,
        n_resamples: int,
        force: bool,
        on_error: str,
        overwrite: bool,
        no_progress: bool,
        execution: dict[str, Any],
        **kwargs: Any,
    ) -> Any:
        model = {
            "weights": weights,
            "checkpoint": checkpoint,
            "device": device,
            "dtype": dtype,
            "allow_unverified_weights": allow_unverified_weights or None,  # the flag left off is not passed
        }
        method_options = {k: v for k, v in {**model, **parse_options(extra)}.items() if v is not None}
        run_options = {
            "data_root": str(data_root) if data_root else None,
            "method_options": method_options,
            "dataset_options": parse_dataset_options(dataset_extra),
            "out": out,
            "protocol": protocol,
            "limit": limit,
            "seed": seed,
            "n_resamples": n_resamples,
            "force": force,
            "overwrite": overwrite,
            "on_error": on_error,
            "progress": not no_progress,
            **execution,
        }
        return command(*args, run_options=run_options, **kwargs)

    options = (
        click.option("--data-root", type=click.Path(path_type=Path), help="Folder holding the dataset's files."),
        click.option("--weights", type=click.Path(path_type=Path), help="Folder with the method's weights."),
        click.option("--checkpoint", type=click.Path(path_type=Path), help="Tuned checkpoint folder (ldm-tuned)."),
        click.option("--device", callback=_device_name, help="Torch device for model methods, e.g. cuda, cuda:1, cpu."),
        click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), help="Model dtype."),
        click.option(
            "--allow-unverified-weights", is_flag=True, help="Load weight files that have no recorded sha256."
        ),
        click.option("--option", "-o", "extra", multiple=True, metavar="KEY=VALUE", help="Method-specific option."),
        click.option(
            "--dataset-option",
            "-O",
            "dataset_extra",
            multiple=True,
            metavar="KEY=VALUE",
            help="Dataset-specific option, e.g. lut=lut.json (vindr), split=test, extractor=radgraph.",
        ),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            default=Path("runs"),
            show_default=True,
            help="Results go to OUT/<dataset>/<name>/ (docs/results.md).",
        ),
        click.option("--limit", type=click.IntRange(min=1), help="Score only the first N pairs."),
        click.option(
            "--protocol",
            type=click.Choice(["cxrbench", "published"]),
            default="cxrbench",
            show_default=True,
            help="Scoring protocol: cxrbench, or published (equal to the authors' evaluation code; docs/protocol.md).",
        ),
        click.option("--overwrite", is_flag=True, help="Replace a stored run of another identity in the run folder."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Bootstrap seed."),
        click.option(
            "--n-resamples",
            type=click.IntRange(min=100, max=1_000_000),
            default=10_000,
            show_default=True,
            help="Bootstrap resamples.",
        ),
        click.option("--force", is_flag=True, help="Recompute heatmaps (and the LDM's shared work) even when cached."),
        click.option(
            "--on-error",
            type=click.Choice(["fail", "skip"]),
            default="fail",
            show_default=True,
            help="skip: log a failing pair to errors.csv and go on.",
        ),
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
    )
    wrapper = execution_options(wrapper)
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
