"""Model weights: which files each method family needs, where they come from, and safe, verified loading
(docs/weights.md).

Nothing is downloaded here (`cxrbench weights fetch` does that: cxrbench.weights_fetch). Files are looked up
under `--weights DIR`, else `$CXRBENCH_HOME/weights`, else `~/.cache/cxrbench/weights`; where that folder does
not exist, or where `--weights` names a Hugging Face hub cache, the files are read offline from the hub cache
(`huggingface_hub.try_to_load_from_cache`) through a view: a folder of links in the layout below, which also
holds the view's pins. Every file is checked against its recorded sha256 before anything reads it: the hash
comes from this table where the publisher gives one, or, for a file the hub stores in Git LFS, from its blob's
name in the hub cache (the sha256 the hub publishes), else from `<weights>/SHA256SUMS`, which `cxrbench weights
--pin` writes after you have checked the files' origin (trust on first use; a pin is never replaced silently: a
file whose content changed needs `--repin FILE`). A file with no recorded hash is refused unless the user
passes --allow-unverified-weights. `.pth`/`.pt`/`.th` files are read with `torch.load(weights_only=True)` only,
and must hold a mapping of names to tensors; `pytorch_model.bin` stands in for a missing `model.safetensors`.
"""

from __future__ import annotations

import hashlib
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
LDM_BUNDLE = _LDM = "cxr_image_synthesis_latent_diffusion_model"
_SD = "stable-diffusion-2-1-base"
_PIN_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")


_LFS_BLOB = re.compile(r"[0-9a-f]{64}")
# Safetensors first; `pytorch_model.bin` (read by transformers with weights_only=True) where it is missing.
ALTERNATIVES = {"model.safetensors": ("pytorch_model.bin",)}


@dataclass(frozen=True)
class WeightFile:
    """One file a method family needs: its path under the weights folder, its public source, its sha256, and
    where a Hugging Face hub cache keeps it (`repo`, the file's path in the repo, the revision its publisher's
    code pins; None: the repo's `main`)."""

    family: str
    path: str
    source: str
    sha256: str | None = None
    repo: str | None = None
    repo_path: str | None = None
    revision: str | None = None

    @property
    def candidates(self) -> tuple[str, ...]:
        """The layout paths that can hold this file, preferred first (`pytorch_model.bin` for a safetensors)."""
        folder, _, name = self.path.rpartition("/")
        return (self.path, *(f"{folder}/{alt}" if folder else alt for alt in ALTERNATIVES.get(name, ())))


def repo_path(file: WeightFile, layout_path: str) -> str:
    """Where the hub repo keeps `layout_path` (the file's layout path or a stand-in's): the layout path less the
    folder the layout puts the repo's files in."""
    assert file.repo_path is not None
    return layout_path[len(file.path) - len(file.repo_path) :]


def _hf(family: str, path: str, repo: str, repo_path: str, revision: str | None = None) -> WeightFile:
    return WeightFile(family, path, f"Hugging Face {repo}", repo=repo, repo_path=repo_path, revision=revision)


def _bundle(path: str, note: str = "") -> WeightFile:
    return WeightFile(
        "ldm", f"{_LDM}/{path}", f"MONAI model zoo bundle {_LDM}{note}", repo=f"MONAI/{_LDM}", repo_path=path
    )


# The repositories and revisions hi-ml-multimodal's own code downloads from (health_multimodal.image.model.pretrained)
CXR_BERT, BIOVIL_T, SD_REPO = (
    "microsoft/BiomedVLP-CXR-BERT-specialized",
    "microsoft/BiomedVLP-BioViL-T",
    f"stabilityai/{_SD}",
)
REVISIONS = {CXR_BERT: "v1.1", BIOVIL_T: "v1.0"}
RADGRAPH_REPO, RADGRAPH_ARCHIVE = "StanfordAIMI/RRG_scorers", "radgraph-xl.tar.gz"
_BERT_FILES = ("config.json", "pytorch_model.bin", "vocab.txt", "tokenizer_config.json")
_SD_FILES = (
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    # the special tokens (SD-2.x pads with "!"): they change the padded context, so they are verified too
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
)


def _biovil(family: str, image_file: str, repo: str) -> tuple[WeightFile, ...]:
    folder = repo.split("/")[1]
    return (
        _hf(family, image_file, repo, image_file, REVISIONS[repo]),
        *(_hf(family, f"{folder}/{name}", repo, name, REVISIONS[repo]) for name in _BERT_FILES),
    )


WEIGHT_FILES: tuple[WeightFile, ...] = (
    _bundle("models/autoencoder.pth", " (large_files.yml)"),
    _bundle("models/diffusion_model.pth", " (large_files.yml)"),
    _bundle("configs/inference.json"),
    *(_hf("ldm", f"{_SD}/{name}", SD_REPO, name) for name in _SD_FILES),
    *_biovil("biovil", "biovil_image_resnet50_proj_size_128.pt", CXR_BERT),
    *_biovil("biovil-t", "biovil_t_image_model_proj_size_128.pt", BIOVIL_T),
    WeightFile("radgraph", "radgraph-xl/weights.th", f"Hugging Face {RADGRAPH_REPO}, {RADGRAPH_ARCHIVE}"),
    WeightFile("radgraph", "radgraph-xl/config.json", f"Hugging Face {RADGRAPH_REPO}, {RADGRAPH_ARCHIVE}"),
)
FAMILIES = tuple(dict.fromkeys(f.family for f in WEIGHT_FILES))


def cxrbench_home() -> Path:
    home = os.environ.get("CXRBENCH_HOME")
    return Path(home) if home else Path.home() / ".cache" / "cxrbench"


def layout_root(weights: str | Path | None = None) -> Path:
    """--weights DIR, else $CXRBENCH_HOME/weights, else ~/.cache/cxrbench/weights."""
    return Path(weights) if weights else cxrbench_home() / "weights"


def hub_cache(folder: Path) -> Path | None:
    """`folder` (or its `hub/`, as in $HF_HOME) when it is a Hugging Face hub cache: it holds `models--*` repos."""
    for candidate in (folder, folder / "hub"):
        if candidate.is_dir() and any(candidate.glob("models--*--*")):
            return candidate
    return None


def default_hub_cache() -> Path | None:
    """The hub cache huggingface_hub itself uses ($HF_HUB_CACHE, else $HF_HOME/hub, else
    ~/.cache/huggingface/hub); None without huggingface_hub (installed with the ldm and biovil extras)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    return Path(constants.HF_HUB_CACHE)


def weights_root(weights: str | Path | None = None) -> Path:
    """The folder the methods read `<root>/<path>` from: the layout folder (`layout_root`), or, where `--weights`
    names a hub cache or no layout folder exists and the default hub cache does, that cache's view (`hub_view`)."""
    root = layout_root(weights)
    if weights is None and not root.exists():
        hub = default_hub_cache()
        return hub_view(hub) if hub is not None and hub_cache(hub) else root
    hub = hub_cache(root) if root.is_dir() else None
    return hub_view(hub) if hub is not None else root


def find_in_hub(file: WeightFile, hub: Path) -> tuple[str, Path] | None:
    """(layout path, cached file) of the first of the file's candidates the hub cache holds, offline: the
    publisher's pinned revision, else `main` (`huggingface_hub.try_to_load_from_cache`, nothing downloaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise WeightsError(
            f"reading the Hugging Face hub cache {hub} needs huggingface_hub: pip install 'cxrbench[ldm]'"
        ) from None
    if file.repo is None:
        return None
    for path in file.candidates:
        for revision in dict.fromkeys((file.revision, None)):
            hit = try_to_load_from_cache(file.repo, repo_path(file, path), cache_dir=hub, revision=revision)
            if isinstance(hit, str):
                return path, Path(hit)
    return None


def hub_view(hub: Path) -> Path:
    """`$CXRBENCH_HOME/hub-views/<digest of the cache's path>/`: links in the weights layout to the files the hub
    cache holds (refreshed on each call), next to the view's own SHA256SUMS and a SOURCE file naming the cache."""
    hub = hub.resolve()
    view = cxrbench_home() / "hub-views" / hashlib.sha256(str(hub).encode("utf-8")).hexdigest()[:16]
    try:
        view.mkdir(parents=True, exist_ok=True)
        (view / "SOURCE").write_text(f"{hub}\n", encoding="utf-8")
        for file in WEIGHT_FILES:
            found = find_in_hub(file, hub)
            for path in file.candidates:
                if found is not None and path == found[0]:
                    _link(view / path, found[1])
                elif (view / path).is_symlink():
                    (view / path).unlink(missing_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot write the view of hub cache {hub} at {view}: {exc.strerror or exc}") from None
    return view


def _link(link: Path, target: Path) -> None:
    """Point `link` at `target` by a rename, so that a concurrent reader never sees it missing."""
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, link)


def present(file: WeightFile, root: Path) -> str | None:
    """The layout path (of the file's candidates) that exists under `root`, or None."""
    return next((path for path in file.candidates if (root / path).is_file()), None)


def found_where(root: Path, path: str) -> str:
    """Where `<root>/<path>` really lies: the file itself, or the hub repo, revision and file it links to."""
    target = root / path
    if not target.is_symlink():
        return str(target)
    link = Path(os.readlink(target))
    parts = link.parts
    if "snapshots" in parts:
        at = parts.index("snapshots")
        repo = parts[at - 1].removeprefix("models--").replace("--", "/")
        return f"hub {repo}@{parts[at + 1][:12]}: {link}"
    return f"{target} -> {link}"


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


def hub_sha256(path: Path) -> str | None:
    """The sha256 a hub cache names a Git LFS file's blob by (`blobs/<sha256>`), for a link into a hub cache."""
    if not path.is_symlink():
        return None
    blob = path.resolve()
    return blob.name if blob.parent.name == "blobs" and _LFS_BLOB.fullmatch(blob.name) else None


def published_hash(file: WeightFile, root: Path, path: str) -> str | None:
    """The sha256 its publisher gives: the table's, else the hub's for a Git LFS file read from a hub cache."""
    return file.sha256 or hub_sha256(root / path)


def recorded_hash(file: WeightFile, root: Path, path: str | None = None) -> str | None:
    """The published sha256 of `path` (default: the file's layout path), else its pin."""
    path = path or file.path
    return published_hash(file, root, path) or pinned_hashes(root).get(path)


def verify(file: WeightFile, root: Path, allow_unverified: bool = False) -> Path:
    """The file's path (or its stand-in's, e.g. `pytorch_model.bin`) once it exists and matches its recorded
    sha256 (nothing else reads it before)."""
    found = present(file, root)
    if found is None:
        raise WeightsError(
            f"missing weight file {root / file.path} (method family {file.family}); it comes from {file.source}. "
            f"Fetch it with `cxrbench weights fetch {file.family}`, or pass --weights DIR or set CXRBENCH_HOME."
        )
    path = root / found
    expected = recorded_hash(file, root, found)
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
        path = present(file, root)
        if path is not None and published_hash(file, root, path) is None:  # a published hash needs no pin
            digest, old = sha256_file(root / path), pins.get(path)
            if old is None:
                new.append(PinChange(path, None, digest))
            elif old != digest:
                changed[path] = f"sha256 {old[:16]}... now {digest[:16]}..."
    if changed:
        raise WeightsError(
            "; ".join(f"{path} changed since it was pinned ({what})" for path, what in changed.items())
            + ". Nothing was recorded. If you fetched the new file from its source yourself, record it with "
            f"`cxrbench weights --weights {root} {' '.join(f'--repin {path}' for path in changed)}`"
        )
    if new:
        write_pins(root, {**pins, **{c.path: c.new for c in new}})
    return new


def repin(root: Path, paths: Sequence[str]) -> list[PinChange]:
    """Replace the recorded sha256 of the named files (paths as in WEIGHT_FILES) by their current hash."""
    pins = pinned_hashes(check_folder(root))
    known = {path for f in WEIGHT_FILES for path in f.candidates}
    changes = []
    for name in paths:
        if name not in known:
            raise WeightsError(f"--repin: {name} is not a weight file cxrbench knows (`cxrbench weights` lists them)")
        if not (root / name).is_file():
            raise WeightsError(f"--repin: {root / name} does not exist")
        changes.append(PinChange(name, pins.get(name), sha256_file(root / name)))
    write_pins(root, {**pins, **{c.path: c.new for c in changes}})
    return changes


def write_pins(root: Path, pins: dict[str, str]) -> None:
    """Replace <root>/SHA256SUMS atomically (a temporary file and a rename): never half-written."""
    from cxrbench.benchmark.store import write_atomic

    path = root / PIN_FILE
    try:
        write_atomic(path, "".join(f"{digest}  {name}\n" for name, digest in sorted(pins.items())))
    except OSError as exc:
        raise WeightsError(f"cannot write {path}: {exc.strerror or exc}") from None


def status(root: Path) -> list[dict[str, str]]:
    """Per file: family, layout path (the stand-in's where one is used), present?, recorded hash, whether the
    file matches it, and where it was found."""
    rows = []
    for file in WEIGHT_FILES:
        path = present(file, root)
        expected = recorded_hash(file, root, path) if path else file.sha256
        if path is None:
            state = "missing"
        elif expected is None:
            state = "present, no recorded sha256 (pin it)"
        else:
            state = "ok" if sha256_file(root / path) == expected else "MISMATCH"
        rows.append(
            {
                "family": file.family,
                "file": path or file.path,
                "status": state,
                "sha256": expected or "",
                "source": file.source,
                "found": found_where(root, path) if path else "",
            }
        )
    return rows


def hashes_of(family: str, root: Path) -> dict[str, str]:
    """{layout path: sha256} of the family's files present under `root` (stand-ins included), for a run's config."""
    return {path: sha256_file(root / path) for f in files_of(family) if (path := present(f, root))}


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
