"""What `cxrbench tune` does, as one library call: check the output folder, read the tuning set, load the
models, encode the images, set up or resume the codebook and train (docs/tuning.md). The CLI only prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrbench.benchmark.store import write_table
from cxrbench.datasets.mimic import read_tuning_set
from cxrbench.errors import CxrbenchError
from cxrbench.hashing import sha256_file
from cxrbench.methods.ldm.checkpoints import SKIPPED_FILE, check_output, checkpoint_dirs
from cxrbench.methods.ldm.codebook import FILE, Codebook
from cxrbench.methods.ldm.model import load_ldm, load_text
from cxrbench.methods.ldm.tuning import TuneConfig, TuneResult, encode_latents, tune


@dataclass
class TuneJob:
    """A finished `cxrbench tune`: the training result, the samples it used and the rows it left out."""

    result: TuneResult
    samples: int
    skipped: list[tuple[int, str]]
    skipped_file: Path | None


def _check_rows(problems: list[tuple[int, str]], on_error: str, output: Path) -> Path | None:
    """Stop at the first unusable tuning-set row (fail), or list them all in <output>/skipped.csv (skip)."""
    if not problems:
        return None
    if on_error == "fail":
        raise CxrbenchError(f"{problems[0][1]} ({len(problems)} unusable row(s); --on-error skip leaves them out)")
    output.mkdir(parents=True, exist_ok=True)
    path = output / SKIPPED_FILE
    write_table(path, pd.DataFrame(sorted(problems), columns=["line", "problem"]))
    return path


def run_tune(
    tuning_set: Path,
    images: Path | None,
    weights: Path,
    output: Path,
    config: TuneConfig,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    resume: bool = False,
    on_error: str = "fail",
    allow_unverified_weights: bool = False,
    progress: bool = True,
) -> TuneJob:
    """Train the codebook on the tuning set; every check that can fail runs before the slow parts."""
    if on_error not in ("fail", "skip"):
        raise CxrbenchError(f"--on-error must be 'fail' or 'skip', not {on_error!r}")
    check_output(output, resume)  # before minutes of image encoding
    samples, problems = read_tuning_set(tuning_set, images)
    if on_error == "fail":
        _check_rows(problems, on_error, output)  # before the models load
    models = load_ldm(weights, device, dtype, allow_unverified_weights)
    latents, unreadable = encode_latents(models, samples, progress=progress)
    skipped = problems + unreadable
    skipped_file = _check_rows(skipped, on_error, output)
    samples = [s for s in samples if s.image in latents]
    result = tune(models, samples, config, output, sha256_file(tuning_set), resume, progress, latents=latents)
    return TuneJob(result, len(samples), skipped, skipped_file)


def codebook_lines(weights: Path, output: Path | None, allow_unverified_weights: bool = False) -> list[str]:
    """The codebook's rows as text: the latest checkpoint's in `output` if any, else the initial codebook."""
    tokenizer, text_encoder = load_text(weights, allow_unverified_weights)
    found = checkpoint_dirs(output) if output is not None else []
    if found:
        return [f"codebook of {found[-1]}", *Codebook.load(found[-1] / FILE, tokenizer, text_encoder).describe()]
    initial = Codebook.from_text_encoder(tokenizer, text_encoder)
    return ["initial codebook (the text encoder's input embeddings)", *initial.describe()]
