"""Model weights: which files each method family needs, where they come from, and safe, verified loading.

Nothing is downloaded. Files are looked up under `--weights DIR`, else `$CXRBENCH_HOME/weights`, else
`~/.cache/cxrbench/weights`. Every file is checked against its recorded sha256 before anything reads it:
the hash comes from this table where the publisher gives one, else from `<weights>/SHA256SUMS`, which
`cxrbench weights --pin` writes after you have checked the files' origin (trust on first use; a pin is never
replaced silently: a file whose content changed needs `--repin FILE`). A file with no recorded hash is refused
unless the user passes --allow-unverified-weights. `.pth`/`.pt`/`.th` files are read with
`torch.load(weights_only=True)` only, and must hold a mapping of names to tensors.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrbench.errors import WeightsError
from cxrbench.hashing import sha256_file

PIN_FILE = "SHA256SUMS"
# torch.load(weights_only=True) could run code before 2.6 (CVE-2025-32434).
MIN_TORCH = (2, 6)
_LDM = "cxr_image_synthesis_latent_diffusion_model"
_SD = "stable-diffusion-2-1-base"
_PIN_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")


@dataclass(frozen=True)
class WeightFile:
    """One file a method family needs: its path under the weights folder, its public source, its sha256."""

    family: str
    path: str
    source: str
    sha256: str | None = None


_CXR_BERT, _BIOVIL_T = "microsoft/BiomedVLP-CXR-BERT-specialized", "microsoft/BiomedVLP-BioViL-T"
_BERT_FILES = ("config.json", "pytorch_model.bin", "vocab.txt", "tokenizer_config.json")
WEIGHT_FILES: tuple[WeightFile, ...] = (
    WeightFile("ldm", f"{_LDM}/models/autoencoder.pth", f"MONAI model zoo bundle {_LDM} (large_files.yml)"),
    WeightFile("ldm", f"{_LDM}/models/diffusion_model.pth", f"MONAI model zoo bundle {_LDM} (large_files.yml)"),
    WeightFile("ldm", f"{_LDM}/configs/inference.json", f"MONAI model zoo bundle {_LDM}"),
    WeightFile("ldm", f"{_SD}/text_encoder/config.json", "Hugging Face stabilityai/stable-diffusion-2-1-base"),
    WeightFile("ldm", f"{_SD}/text_encoder/model.safetensors", "Hugging Face stabilityai/stable-diffusion-2-1-base"),
    WeightFile("ldm", f"{_SD}/tokenizer/vocab.json", "Hugging Face stabilityai/stable-diffusion-2-1-base"),
    WeightFile("ldm", f"{_SD}/tokenizer/merges.txt", "Hugging Face stabilityai/stable-diffusion-2-1-base"),
    # the special tokens (SD-2.x pads with "!"): they change the padded context, so they are verified too
    WeightFile("ldm", f"{_SD}/tokenizer/tokenizer_config.json", "Hugging Face stabilityai/stable-diffusion-2-1-base"),
    WeightFile("ldm", f"{_SD}/tokenizer/special_tokens_map.json", "Hugging Face stabilityai/stable-diffusion-2-1-base"),
    WeightFile("biovil", "biovil_image_resnet50_proj_size_128.pt", f"Hugging Face {_CXR_BERT}"),
    *(WeightFile("biovil", f"{_CXR_BERT.split('/')[1]}/{name}", f"Hugging Face {_CXR_BERT}") for name in _BERT_FILES),
    WeightFile("biovil-t", "biovil_t_image_model_proj_size_128.pt", f"Hugging Face {_BIOVIL_T}"),
    *(WeightFile("biovil-t", f"{_BIOVIL_T.split('/')[1]}/{name}", f"Hugging Face {_BIOVIL_T}") for name in _BERT_FILES),
    WeightFile("radgraph", "radgraph-xl/weights.th", "Hugging Face StanfordAIMI/RRG_scorers, radgraph-xl.tar.gz"),
    WeightFile("radgraph", "radgraph-xl/config.json", "Hugging Face StanfordAIMI/RRG_scorers, radgraph-xl.tar.gz"),
)


def weights_root(weights: str | Path | None = None) -> Path:
    """--weights DIR, else $CXRBENCH_HOME/weights, else ~/.cache/cxrbench/weights."""
    if weights:
        return Path(weights)
    home = os.environ.get("CXRBENCH_HOME")
    return Path(home) / "weights" if home else Path.home() / ".cache" / "cxrbench" / "weights"


def files_of(family: str) -> list[WeightFile]:
    return [f for f in WEIGHT_FILES if f.family == family]


def check_folder(root: Path) -> Path:
    """`root` once it is an existing folder (a missing one or a file is one clear error)."""
    if not root.exists():
        raise WeightsError(f"weights folder {root} does not exist")
    if not root.is_dir():
        raise WeightsError(f"weights folder {root} is a file, not a folder")
    return root


def pinned_hashes(root: Path) -> dict[str, str]:
    """<root>/SHA256SUMS as {relative path: sha256} (sha256sum's format; blank lines are ignored)."""
    path = root / PIN_FILE
    if not path.exists():
        return {}
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise WeightsError(f"{path} is not UTF-8 text; delete it and pin the files again") from None
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror or exc}") from None
    pins = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            match = _PIN_LINE.fullmatch(line.strip())
            if match is None:
                raise WeightsError(f"{path}, line {number} is not '<sha256>  <path>': {line.strip()[:80]!r}")
            pins[match["name"]] = match["digest"].lower()
    return pins


def recorded_hash(file: WeightFile, root: Path) -> str | None:
    return file.sha256 or pinned_hashes(root).get(file.path)


def verify(file: WeightFile, root: Path, allow_unverified: bool = False) -> Path:
    """The file's path once it exists and matches its recorded sha256 (nothing else reads it before)."""
    path = root / file.path
    if not path.is_file():
        raise WeightsError(
            f"missing weight file {path} (method family {file.family}); it comes from {file.source}. "
            f"Pass --weights DIR or set CXRBENCH_HOME."
        )
    expected = recorded_hash(file, root)
    if expected is None:
        if allow_unverified:
            return path
        raise WeightsError(
            f"no recorded sha256 for {path}: check that it came from {file.source}, then record it "
            f"with `cxrbench weights --weights {root} --pin`, or pass --allow-unverified-weights"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"{path} is corrupt or not the published file: sha256 {actual[:16]}... does not match the "
            f"recorded {expected[:16]}...; download it again from {file.source}"
        )
    return path


@dataclass(frozen=True)
class PinChange:
    """One recorded hash: `old` is None for a new pin."""

    path: str
    old: str | None
    new: str


def pin(root: Path, files: Sequence[WeightFile] = WEIGHT_FILES) -> list[PinChange]:
    """Record the sha256 of every present file that has no pin yet in <root>/SHA256SUMS (trust on first use).

    A pinned file whose content changed is refused, never re-approved: `repin` replaces a pin explicitly.
    """
    pins = pinned_hashes(check_folder(root))
    new: list[PinChange] = []
    changed: dict[str, str] = {}  # path -> what changed
    for file in files:
        if (root / file.path).is_file():
            digest, old = sha256_file(root / file.path), pins.get(file.path)
            if old is None:
                new.append(PinChange(file.path, None, digest))
            elif old != digest:
                changed[file.path] = f"sha256 {old[:16]}... now {digest[:16]}..."
    if changed:
        raise WeightsError(
            "; ".join(f"{path} changed since it was pinned ({what})" for path, what in changed.items())
            + ". Nothing was recorded. If you fetched the new file from its source yourself, record it with "
            f"`cxrbench weights --weights {root} {' '.join(f'--repin {path}' for path in changed)}`"
        )
    if new:
        _write_pins(root, {**pins, **{c.path: c.new for c in new}})
    return new


def repin(root: Path, paths: Sequence[str]) -> list[PinChange]:
    """Replace the recorded sha256 of the named files (paths as in WEIGHT_FILES) by their current hash."""
    pins = pinned_hashes(check_folder(root))
    known = {f.path for f in WEIGHT_FILES}
    changes = []
    for name in paths:
        if name not in known:
            raise WeightsError(f"--repin: {name} is not a weight file cxrbench knows (`cxrbench weights` lists them)")
        if not (root / name).is_file():
            raise WeightsError(f"--repin: {root / name} does not exist")
        changes.append(PinChange(name, pins.get(name), sha256_file(root / name)))
    _write_pins(root, {**pins, **{c.path: c.new for c in changes}})
    return changes


def _write_pins(root: Path, pins: dict[str, str]) -> None:
    """Replace <root>/SHA256SUMS atomically (a temporary file and a rename): never half-written."""
    from cxrbench.benchmark.store import write_atomic

    path = root / PIN_FILE
    try:
        write_atomic(path, "".join(f"{digest}  {name}\n" for name, digest in sorted(pins.items())))
    except OSError as exc:
        raise WeightsError(f"cannot write {path}: {exc.strerror or exc}") from None


def status(root: Path) -> list[dict[str, str]]:
    """Per file: family, path, present?, recorded hash and whether the file matches it."""
    rows = []
    for file in WEIGHT_FILES:
        path = root / file.path
        expected = recorded_hash(file, root)
        if not path.is_file():
            state = "missing"
        elif expected is None:
            state = "present, no recorded sha256 (pin it)"
        else:
            state = "ok" if sha256_file(path) == expected else "MISMATCH"
        rows.append(
            {"family": file.family, "file": file.path, "status": state, "sha256": expected or "", "source": file.source}
        )
    return rows


def load_state_dict(file: WeightFile, root: Path, allow_unverified: bool = False) -> dict[str, Any]:
    """A verified `.pth`/`.pt` state dict, unpickled with weights_only=True only: names -> tensors."""
    path = verify(file, root, allow_unverified)
    import torch

    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    if version < MIN_TORCH:
        raise WeightsError(
            f"torch {torch.__version__} can run code while loading weights (CVE-2025-32434); "
            f"install torch >= {'.'.join(map(str, MIN_TORCH))}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise WeightsError(
            f"refused to load {path}: it is not a plain tensor file ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"{path} does not hold a mapping of parameter names to tensors")
    return dict(state)
