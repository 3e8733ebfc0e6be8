"""Checkpoints of `cxrbench tune`: `<output>/step-<N>/` with `codebook.safetensors`, `optimizer.safetensors`
(Adam's moments and step) and `state.json` (options, layers, timesteps, tuning-set and weight hashes, step).
Every file is written atomically (store.write_atomic) into a temporary sibling folder `.tmp-step-<N>/`, which is
renamed to `step-<N>/` once complete, so a kill leaves either a complete checkpoint or none that
`checkpoint_dirs` lists; the last KEEP_CHECKPOINTS are kept. `losses.csv` logs every step."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cxrbench.benchmark.store import write_atomic
from cxrbench.errors import CxrbenchError
from cxrbench.methods.ldm.codebook import FILE as CODEBOOK_FILE
from cxrbench.methods.ldm.codebook import Codebook

STATE_FILE, OPTIMIZER_FILE = "state.json", "optimizer.safetensors"
LOSSES_FILE, SKIPPED_FILE = "losses.csv", "skipped.csv"
KEEP_CHECKPOINTS = 2
# Options that may change between a run and its --resume (they do not change the steps already taken).
RESUMABLE = ("epochs", "checkpoint_every", "timestep_chunk")
TMP_PREFIX = ".tmp-"


def checkpoint_dirs(output: Path) -> list[Path]:
    """Complete checkpoints in `output`, oldest first (a `.tmp-step-*` folder is a save that did not finish)."""
    return sorted(p for p in output.glob("step-*") if (p / STATE_FILE).is_file())


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint folder, or the latest complete one in a `cxrbench tune --output` folder."""
    path = Path(path)
    if not path.is_dir():
        raise CxrbenchError(f"checkpoint folder {path} does not exist")
    if (path / CODEBOOK_FILE).is_file():
        return path
    found = checkpoint_dirs(path)
    if not found:
        raise CxrbenchError(
            f"no checkpoint in {path}: expected {CODEBOOK_FILE} or step-*/ folders written by `cxrbench tune`"
        )
    return found[-1]


def check_output(output: Path, resume: bool) -> None:
    """A fresh run needs a folder without checkpoints; --resume needs one with."""
    found = checkpoint_dirs(output) if output.is_dir() else []
    if found and not resume:
        raise CxrbenchError(f"{output} already holds checkpoints: add --resume to continue, or pick a new --output")
    if resume and not found:
        raise CxrbenchError(f"--resume: no checkpoint in {output}")


def read_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CxrbenchError(f"cannot read {folder / STATE_FILE}: {exc}") from exc


def save_checkpoint(output: Path, step: int, codebook: Codebook, optimizer: Any, state: dict[str, Any]) -> Path:
    """Write step-<step>/: each file atomically into a temporary sibling folder, then one rename of the folder;
    keep the last KEEP_CHECKPOINTS."""
    from safetensors.torch import save

    final = output / f"step-{step:08d}"
    tmp = output / f"{TMP_PREFIX}{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    codebook.save(tmp)
    adam = optimizer.state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in adam["state"].get(0, {}).items()}
    write_atomic(tmp / OPTIMIZER_FILE, save(tensors))
    groups = [{k: v for k, v in g.items() if k != "params"} for g in adam["param_groups"]]
    write_atomic(tmp / STATE_FILE, json.dumps({**state, "step": step, "optimizer": groups}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_folder(output)
    for old in [*checkpoint_dirs(output)[:-KEEP_CHECKPOINTS], *output.glob(f"{TMP_PREFIX}step-*")]:
        shutil.rmtree(old, ignore_errors=True)  # older checkpoints, and saves that were interrupted
    return final


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_optimizer(folder: Path, optimizer: Any, state: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / OPTIMIZER_FILE))
    device = optimizer.param_groups[0]["params"][0].device
    moved = {k: (v if k == "step" else v.to(device)) for k, v in tensors.items()}
    groups = [{**g, "params": [0]} for g in state["optimizer"]]
    optimizer.load_state_dict({"state": {0: moved} if moved else {}, "param_groups": groups})


def check_resumable(state: dict[str, Any], expected: dict[str, Any], folder: Path, defaults: dict[str, Any]) -> None:
    """The options, tuning set and weights of a resumed run must be the checkpoint's; an option the checkpoint
    does not record (written before it existed) counts as its default."""
    old = json.loads(json.dumps({**defaults, **state["config"]}))
    new = json.loads(json.dumps(expected["config"]))
    changed = [k for k in new if k not in RESUMABLE and old.get(k) != new[k]]
    changed += [k for k in ("tuning_set_sha256", "samples", "weights") if state.get(k) != expected[k]]
    if changed:
        raise CxrbenchError(
            f"cannot resume from {folder}: {', '.join(changed)} differ from the run that wrote it "
            "(start a new --output folder, or pass the same options and tuning set)"
        )


def truncate_losses(path: Path, step: int) -> None:
    """Keep the log's rows up to `step` (a resumed run rewrites what followed its checkpoint)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for i, line in enumerate(lines) if i == 0 or int(line.split(",", 1)[0]) <= step] if step else []
    write_atomic(path, "".join(kept))


def tuned_with(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint was tuned with, for ldm-tuned's config: the options that change the codebook (loss
    weights, alpha, beta, lr, epochs, seed, the timestep window), the layers and timesteps, the tuning set."""
    ignored = ("checkpoint_every", "timestep_chunk")
    options = {k: v for k, v in state.get("config", {}).items() if k not in ignored}
    return {
        **options,
        **{k: state[k] for k in ("layers", "timesteps", "tuning_set_sha256", "samples") if k in state},
    }
