"""The `cxrbench` command: a thin layer over the public functions (run_benchmark, build_leaderboard, ...).

Heavy modules are imported inside the commands, so `cxrbench --help` stays fast and never imports torch.
User errors print one line and exit with code 2; `--debug` (or CXRBENCH_DEBUG=1) shows the traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click

from cxrbench import __version__
from cxrbench.commands.breakdown import breakdown
from cxrbench.commands.common import (
    emit,
    open_dataset,
    split_list,
    stored_runs,
    write_frame,
)
from cxrbench.commands.figure import figure
from cxrbench.commands.plot import plot
from cxrbench.commands.report import report
from cxrbench.commands.run import run
from cxrbench.commands.sweep import sweep
from cxrbench.commands.verify import verify
from cxrbench.commands.weights import weights
from cxrbench.errors import CxrbenchError
from cxrbench.registry import missing_module_error


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cxrbench")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Phrase grounding on chest X-rays: run methods on datasets with one exact scoring protocol and
    bootstrap confidence intervals, then print paper-ready leaderboards."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--dataset", "-d", help="Dataset to tabulate (needed when RUNS_DIR holds several).")
@click.option("--methods", help="Comma-separated methods, in column order, bounds last (default: all, by name).")
@click.option(
    "--metrics",
    help="Comma-separated: cnr, miou, auc, auc_binned, cnr_signed [default: cnr,miou,auc; auc_binned for "
    "published-protocol runs].",
)
@click.option("--format", "fmt", type=click.Choice(["markdown", "latex", "csv"]), default="markdown", show_default=True)
@click.option("--output", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
@click.option(
    "--marks",
    "--bold-best",
    "marks",
    is_flag=True,
    help="Bold the best and underline the second best mean per class and metric (bounds excepted); a dagger where "
    "the best is significantly better than the second best (paired bootstrap, p < 0.05).",
)
@click.option(
    "--cell",
    type=click.Choice(["ci", "pm", "mean"]),
    default="ci",
    show_default=True,
    help="ci: mean [low, high]; pm: mean ± half the interval's width; mean: the mean alone.",
)
@click.option(
    "--layout",
    type=click.Choice(["classes", "methods"]),
    default="classes",
    show_default=True,
    help="classes: a row per class, a column group per method; methods: a row per method, a column group per class.",
)
@click.option(
    "--fit",
    type=click.Choice(["textwidth", "none"]),
    default="textwidth",
    show_default=True,
    help="LaTeX: scale the tabular down to the line width when it is wider (none: natural width).",
)
@click.option(
    "--float",
    "float_env",
    type=click.Choice(["table", "table*"]),
    default="table",
    show_default=True,
    help="LaTeX float (table*: across both columns of a two-column document).",
)
@click.option("--protocol", type=click.Choice(["cxrbench", "published"]), help="Only runs scored with this protocol.")
@click.option(
    "--ablation",
    metavar="METHOD",
    help="An ablation table of METHOD's runs instead: a row per run, the options that differ as columns "
    "(docs/ablations.md).",
)
@click.option("--allow-mixed", is_flag=True, help="Show runs on different dataset versions side by side, marked.")
def table(
    runs_dir: Path,
    dataset: str | None,
    methods: str | None,
    metrics: str | None,
    fmt: str,
    output: Path | None,
    marks: bool,
    cell: str,
    layout: str,
    fit: str,
    float_env: str,
    protocol: str | None,
    ablation: str | None,
    allow_mixed: bool,
) -> None:
    """Build the leaderboard from the runs stored under RUNS_DIR (default: runs); docs/results.md, "Tables"."""
    from cxrbench.leaderboard.marks import table_marks
    from cxrbench.leaderboard.tables import build_leaderboard, format_table

    runs = stored_runs(runs_dir)
    if ablation:
        from cxrbench.leaderboard.ablation import build_ablation, format_ablation

        if methods or marks or allow_mixed:
            raise CxrbenchError("--ablation takes the method's runs itself: drop --methods, --marks, --allow-mixed")
        ablation_table = build_ablation(runs, dataset, ablation, split_list(metrics), protocol)
        emit(format_ablation(ablation_table, fmt, fit), output)  # type: ignore[arg-type]
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        board = build_leaderboard(runs, dataset, split_list(methods), split_list(metrics), allow_mixed, protocol)
        chosen = table_marks(board, runs) if marks and fmt != "csv" else None
    for warning in caught:
        click.echo(f"note: {warning.message}", err=True)
    text = format_table(board, fmt, chosen, cell, layout, fit, float_env)  # type: ignore[arg-type]
    emit(text, output)


@cli.command()
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--dataset", "-d", required=True, help="Dataset of the runs to compare.")
@click.option("--methods", required=True, help="Comma-separated runs to compare (at least 2), e.g. A,B,C.")
@click.option("--baseline", help="The run the others are compared against (default: the first of --methods).")
@click.option(
    "--metrics",
    default="cnr,miou,auc",
    show_default=True,
    help="Comma-separated: cnr, miou, auc, auc_binned, cnr_signed.",
)
@click.option("--n-resamples", type=int, default=10_000, show_default=True, help="Bootstrap resamples (at least 100).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option(
    "--format", "fmt", type=click.Choice(["markdown", "latex", "csv", "json"]), default="markdown", show_default=True
)
@click.option("--output", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
def compare(
    runs_dir: Path,
    dataset: str,
    methods: str,
    baseline: str | None,
    metrics: str,
    n_resamples: int,
    seed: int,
    fmt: str,
    output: Path | None,
) -> None:
    """Paired bootstrap comparison of stored runs against a baseline on the pairs all of them scored: per class
    and on average, the mean difference, its 95 % interval, a p-value and Holm-adjusted p-values across classes."""
    from cxrbench.benchmark.compare import format_comparison, paired_bootstrap, select_runs

    runs = stored_runs(runs_dir)
    names = split_list(methods) or []
    if baseline is not None and baseline not in names:
        names.insert(0, baseline)
    runs = select_runs(runs, dataset, names)
    comparison = paired_bootstrap(runs, baseline, split_list(metrics) or (), n_resamples, seed)
    if comparison.n_dropped:
        click.echo(f"left out {comparison.n_dropped} pairs that not every run scored", err=True)
    text = format_comparison(comparison, fmt)  # type: ignore[arg-type]
    emit(text, output)


@cli.command("export-pairs")
@click.option("--dataset", "-d", required=True, help="Dataset name (see `cxrbench list`).")
@click.option("--data-root", type=click.Path(path_type=Path), help="Folder holding the dataset's files.")
@click.option("--dataset-option", "-O", "dataset_extra", multiple=True, metavar="KEY=VALUE")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="CSV to write.")
def export_pairs_command(dataset: str, data_root: Path | None, dataset_extra: tuple[str, ...], output: Path) -> None:
    """Write the pairs (ids, image paths, prompts, sizes, expected heatmap file names) to run a model elsewhere,
    then score its outputs with `--method boxes:FILE.csv` or `--method heatmaps:DIR`."""
    import pandas as pd

    from cxrbench.baselines.predictions import export_pairs

    samples = list(open_dataset(dataset, data_root, dataset_extra))
    rows = export_pairs(samples)
    write_frame(output, pd.DataFrame(rows))
    broken = len(samples) - len(rows)
    click.echo(
        f"wrote {len(rows)} pairs to {output}" + (f" ({broken} unusable pairs left out)" if broken else ""), err=True
    )


@cli.command("list")
def list_() -> None:
    """List the registered methods and datasets (plugins included)."""
    from cxrbench.registry import DATASETS, METHODS

    for registry in (METHODS, DATASETS):
        click.echo(f"{registry.kind}s:")
        for entry in registry.entries():
            click.echo(f"  {entry.name:<18} {entry.summary}")


@cli.command()
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV with columns id, text and optionally pathology.",
)
@click.option("--output", required=True, type=click.Path(path_type=Path), help="CSV to write.")
@click.option("--extractor", type=click.Choice(["rules", "radgraph"]), default="rules", show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), help="Folder holding radgraph-xl/ (radgraph only).")
def prompts(input_path: Path, output: Path, extractor: str, weights: Path | None) -> None:
    """Turn report text into "{location} {pathology}" prompts, one row per (id, pathology) found."""
    from cxrbench.anatomy.prompts import prompts_from_reports

    table = prompts_from_reports(input_path, extractor, weights)  # type: ignore[arg-type]
    write_frame(output, table)
    click.echo(f"wrote {len(table)} prompts for {table['id'].nunique()} reports to {output}", err=True)


@cli.group()
def datasets() -> None:
    """Inspect dataset adapters."""


@datasets.command("describe")
@click.argument("name")
@click.option("--data-root", type=click.Path(path_type=Path), help="Folder holding the dataset's files.")
@click.option("--dataset-option", "-O", "dataset_extra", multiple=True, metavar="KEY=VALUE")
def datasets_describe(name: str, data_root: Path | None, dataset_extra: tuple[str, ...]) -> None:
    """Pairs, images and boxes per class, next to the published reference sizes."""
    from cxrbench.datasets.describe import describe_dataset

    click.echo(describe_dataset(open_dataset(name, data_root, dataset_extra)).to_string(index=False))


@cli.command()
@click.option(
    "--mimic-root",
    required=True,
    type=click.Path(path_type=Path),
    help="MIMIC-CXR-JPG root with the CheXpert label and metadata files and files/.",
)
@click.option("--output", required=True, type=click.Path(path_type=Path), help="The tuning set to write (CSV).")
@click.option("--reports", type=click.Path(path_type=Path), help="Folder holding the reports' files/ tree.")
@click.option("--lut", "lut_path", type=click.Path(path_type=Path), help="Location table (default: packaged).")
@click.option("--extractor", type=click.Choice(["rules", "radgraph"]), default="rules", show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), help="Folder holding radgraph-xl/ (radgraph only).")
def curate(
    mimic_root: Path, output: Path, reports: Path | None, lut_path: Path | None, extractor: str, weights: Path | None
) -> None:
    """Curate the prompt-tuning set (docs/tuning.md) from MIMIC-CXR reports and CheXpert labels."""
    from cxrbench.datasets.mimic import curate_tuning_set, summary_lines

    table = curate_tuning_set(mimic_root, reports, lut_path, extractor, weights)  # type: ignore[arg-type]
    write_frame(output, table)
    click.echo("\n".join([*summary_lines(table), f"wrote {output}"]))


@cli.command()
@click.option("--tuning-set", type=click.Path(path_type=Path), help="CSV from `cxrbench curate`.")
@click.option("--images", type=click.Path(path_type=Path), help="Folder the image paths are relative to.")
@click.option("--weights", type=click.Path(path_type=Path), help="Folder with the LDM and CLIP weights.")
@click.option("--output", type=click.Path(path_type=Path), help="Folder for step-*/ checkpoints and losses.csv.")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cuda.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--alpha", type=float, default=1.0, show_default=True, help="Weight of the masked own-map target.")
@click.option("--beta", type=float, default=1.0, show_default=True, help="Weight of the Gaussian target.")
@click.option(
    "--localization-weight", type=float, default=1.0, show_default=True, help="Weight of the localization loss."
)
@click.option("--diversity-weight", type=float, default=1.0, show_default=True, help="Weight of the diversity loss.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--steps",
    default="30-60",
    show_default=True,
    help="Training timesteps: steps A-B (A <= i < B) of --schedule, t = (1000 // T) i (docs/tuning.md).",
)
@click.option(
    "--schedule", type=click.IntRange(1, 1000), default=100, show_default=True, help="Steps T that --steps indexes."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Sample order and noise seed.")
@click.option(
    "--timestep-chunk",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Timesteps per U-Net pass; below 30, chunks run under activation checkpointing (less memory, more FLOPs).",
)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True, help="Steps.")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --output.")
@click.option(
    "--on-error",
    type=click.Choice(["fail", "skip"]),
    default="fail",
    show_default=True,
    help="skip: leave out rows whose image is missing or unreadable (listed in <output>/skipped.csv).",
)
@click.option("--show-codebook", is_flag=True, help="Print the codebook rows (latest checkpoint if any) and exit.")
@click.option("--allow-unverified-weights", is_flag=True, help="Load weight files that have no recorded sha256.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def tune(
    tuning_set: Path | None,
    images: Path | None,
    weights: Path | None,
    output: Path | None,
    device: str,
    dtype: str,
    resume: bool,
    on_error: str,
    show_codebook: bool,
    allow_unverified_weights: bool,
    no_progress: bool,
    **hyper: float,
) -> None:
    """Prompt-tune the LDM's location token embeddings on a tuning set (docs/tuning.md)."""
    from cxrbench.methods.ldm.tune_job import codebook_lines, run_tune
    from cxrbench.methods.ldm.tuning import TuneConfig
    from cxrbench.weights import weights_root

    root = weights_root(weights)
    if show_codebook:
        click.echo("\n".join(codebook_lines(root, output, allow_unverified_weights)))
        return
    if tuning_set is None or output is None:
        raise CxrbenchError("cxrbench tune needs --tuning-set and --output (or --show-codebook)")
    job = run_tune(
        tuning_set,
        images,
        root,
        output,
        TuneConfig(**hyper),  # type: ignore[arg-type]
        device=device,
        dtype=dtype,
        resume=resume,
        on_error=on_error,
        allow_unverified_weights=allow_unverified_weights,
        progress=not no_progress,
    )
    if job.skipped_file is not None:
        click.echo(f"skipped {len(job.skipped)} tuning-set row(s), listed in {job.skipped_file}", err=True)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in job.result.final_losses.items())
    click.echo(f"{job.result.steps} steps on {job.samples} samples; last 50 steps: {losses}")
    click.echo(f"checkpoint: {job.result.checkpoint} (cxrbench run --method ldm-tuned --checkpoint {output})")


@cli.group()
def lut() -> None:
    """The Gaussian look-up table of the 27 anatomical locations (docs/anatomy.md)."""


@lut.command("build")
@click.option(
    "--imagenome",
    required=True,
    type=click.Path(path_type=Path),
    help="Chest ImaGenome gold_bbox_coordinate_annotations_1000images.csv (or its folder).",
)
@click.option("--output", required=True, type=click.Path(path_type=Path), help="The table to write (JSON).")
@click.option(
    "--k", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True, help="sigma = box extent / k."
)
def lut_build(imagenome: Path, output: Path, k: float) -> None:
    """Build the table from the ImaGenome gold boxes."""
    from cxrbench.anatomy.lut import build_lut
    from cxrbench.benchmark.store import write_atomic
    from cxrbench.datasets.imagenome import find_gold_csv, read_gold_boxes

    table = build_lut(read_gold_boxes(imagenome), k=k, source=f"Chest ImaGenome gold boxes: {find_gold_csv(imagenome)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, table.to_json())
    click.echo(f"wrote {output} ({min(table.counts.values())}-{max(table.counts.values())} boxes per location)")


@lut.command("show")
@click.option(
    "--lut", "lut_path", type=click.Path(path_type=Path), help="A table from `lut build` (default: packaged)."
)
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Figure to write (PNG, PDF, SVG).")
def lut_show(lut_path: Path | None, output: Path) -> None:
    """Draw the 27 Gaussians on the 512 x 512 frame."""
    from cxrbench.anatomy.figure import draw_lut
    from cxrbench.anatomy.lut import load_lut

    click.echo(f"wrote {draw_lut(load_lut(lut_path), output)}")


for _command_module in (breakdown, figure, plot, report, run, sweep, weights):
    cli.add_command(_command_module)
datasets.add_command(verify)


# what an interrupted command keeps, per command that resumes
_RESUME = {
    "run": "; finished work is kept: rerun the same command to resume from the cached heatmaps",
    "sweep": "; finished work is kept: rerun the same command to resume (finished runs and cached heatmaps)",
    "tune": "; add --resume to the same command to continue from its last checkpoint",
}


def _command(argv: list[str] | None) -> str:
    """The subcommand's name, for messages."""
    words = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")]
    return words[0] if words else ""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the click group, turning user errors into one line and exit code 2."""
    debug = os.environ.get("CXRBENCH_DEBUG") == "1" or "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = cli.main(args=argv, prog_name="cxrbench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(f"interrupted{_RESUME.get(_command(argv), '')}", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CxrbenchError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ImportError as exc:  # a command whose extra (torch, monai, ...) is not installed
        if debug:
            raise
        click.echo(f"error: {missing_module_error(f'cxrbench {_command(argv)}', exc)}", err=True)
        sys.exit(2)
    except OSError as exc:  # a path that cannot be read or written: name it, keep what was written
        if debug:
            raise
        where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        click.echo(f"error: {exc.strerror or exc}" + (f": {where}" if where else ""), err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
