"""Model weights: which files each method family needs, where they come from, and safe, verified loading
(docs/weights.md).

Nothing is downloaded here (`cxrbench weights fetch` does that: cxrbench.weights_fetch). Files are looked up
under `--weights DIR`, else `$CXRBENCH_HOME/weights`, else `~/.cache/cxrbench/weights`; where that folder does
not exist, or where `--weights` names a Hugging Face hub cache, the files are read offline from the hub cache
(`huggingface_hub.try_to_load_from_cache`) through a view: a folder of links in the layout below, which also
holds the view's pins; a file the cache holds only at another revision than the one its publisher's code pins is
refused unless the library's own md5 confirms it is that file, and RadGraph-XL's archive is unpacked as the
radgraph package unpacks it. Every file is checked against its recorded sha256 before anything reads it: the hash
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
import shutil
import tarfile
import tempfile
import warnings
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
# The MONAI model-zoo release `weights fetch ldm` downloads: the latest in its metadata.json changelog (1.0.1 moved
# the hosting to Hugging Face, 1.0.2 changed the metadata only), the model-zoo port of docs/ldm.md section 1.
LDM_BUNDLE_VERSION = "1.0.2"
_SD = "stable-diffusion-2-1-base"
_PIN_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")


_LFS_BLOB = re.compile(r"[0-9a-f]{64}")
# Safetensors first; `pytorch_model.bin` (read by transformers with weights_only=True) where it is missing.
ALTERNATIVES = {"model.safetensors": ("pytorch_model.bin",)}


@dataclass(frozen=True)
class WeightFile:
    """One file a method family needs: its path under the weights folder, its public source, its sha256, where a
    Hugging Face hub cache keeps it (`repo`, the file's path in the repo, the revision its publisher's code pins;
    None: the repo's `main`), the repo's former names the hub still redirects, under which a hub cache may keep it
    too (`aliases`), and whether its library reads it only where the repo has it (`optional`)."""

    family: str
    path: str
    source: str
    sha256: str | None = None
    repo: str | None = None
    repo_path: str | None = None
    revision: str | None = None
    optional: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def repo_names(self) -> tuple[str, ...]:
        """The names a hub cache may keep the file's repo under: its current name first, then its former ones."""
        return (self.repo, *self.aliases) if self.repo else ()

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


def _hf(
    family: str,
    path: str,
    repo: str,
    repo_path: str,
    revision: str | None = None,
    optional: bool = False,
    aliases: tuple[str, ...] = (),
) -> WeightFile:
    source = f"Hugging Face {repo}" + (f" (formerly {', '.join(aliases)})" if aliases else "")
    return WeightFile(
        family, path, source, repo=repo, repo_path=repo_path, revision=revision, optional=optional, aliases=aliases
    )


def _bundle(path: str, note: str = "") -> WeightFile:
    """A file of the LDM bundle. MONAI's bundle download (monai.bundle.scripts.download, default source
    "monaihosting") fetches it with `huggingface_hub.snapshot_download(repo_id="MONAI/<bundle>",
    revision=<version>)`: in a hub cache it lies under `models--MONAI--<bundle>`, its ref named by the version."""
    return WeightFile(
        "ldm",
        f"{_LDM}/{path}",
        f"MONAI model zoo bundle {_LDM} {LDM_BUNDLE_VERSION}{note}",
        repo=f"MONAI/{_LDM}",
        repo_path=path,
        revision=LDM_BUNDLE_VERSION,
    )


# The repositories and revisions hi-ml-multimodal's own code downloads from (health_multimodal.image.model.pretrained)
CXR_BERT, BIOVIL_T, SD_REPO = (
    "microsoft/BiomedVLP-CXR-BERT-specialized",
    "microsoft/BiomedVLP-BioViL-T",
    f"stabilityai/{_SD}",
)
REVISIONS = {CXR_BERT: "v1.1", BIOVIL_T: "v1.0"}
# RadGraph-XL: the radgraph package downloads this archive (hf_hub_download) and unpacks it into
# `<model_cache_dir>/radgraph-xl/`, then reads config.json, weights.th and vocabulary/ there (radgraph 0.1.18).
RADGRAPH_REPO, RADGRAPH_ARCHIVE, RADGRAPH_MODEL = "StanfordAIMI/RRG_scorers", "radgraph-xl.tar.gz", "radgraph-xl"
# The BERT the archive's config.json names (dataset_reader.token_indexers.bert.model_name and
# model.embedder.token_embedders.bert.model_name): radgraph 0.1.18 builds its tokenizer with
# `AutoTokenizer.from_pretrained(name, use_fast=True[, cache_dir=tokenizer_cache_dir])` and its encoder with
# `AutoModel.from_config(AutoConfig.from_pretrained(name))`, the encoder's weights coming from weights.th; it pins
# no revision (main). The hub renamed the repo from its former PubMedBERT name, which it still redirects.
RADGRAPH_BERT = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext"
RADGRAPH_BERT_NAMES = (RADGRAPH_BERT, "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext")
RADGRAPH_BERT_FOLDER = RADGRAPH_BERT.split("/")[1]
_RADGRAPH_BERT_FORMER = RADGRAPH_BERT_NAMES[1:]  # a hub cache keeps it under the name transformers was asked for
# What AutoConfig and the BERT tokenizer read: required, then read only where the repo has them.
_RADGRAPH_BERT_FILES = (("config.json", False), ("vocab.txt", False), ("tokenizer_config.json", True))
_RADGRAPH_BERT_FILES += (("special_tokens_map.json", True),)
ARCHIVES = "hub-archives"
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
    *(
        _hf("radgraph", f"{RADGRAPH_BERT_FOLDER}/{name}", RADGRAPH_BERT, name, None, optional, _RADGRAPH_BERT_FORMER)
        for name, optional in _RADGRAPH_BERT_FILES
    ),
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


def _cached(repo: str, path: str, hub: Path, revision: str | None = None) -> Path | None:
    """The hub cache's file `path` of `repo` at `revision` (None: main), offline (nothing downloaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise WeightsError(
            f"reading the Hugging Face hub cache {hub} needs huggingface_hub: pip install 'cxrbench[ldm]'"
        ) from None
    hit = try_to_load_from_cache(repo, path, cache_dir=hub, revision=revision)
    return Path(hit) if isinstance(hit, str) else None


def find_in_hub(file: WeightFile, hub: Path) -> tuple[str, Path] | None:
    """(layout path, cached file) of the file in the hub cache, offline: any of its candidates at the publisher's
    pinned revision first, else at `main` (`huggingface_hub.try_to_load_from_cache`), each under the repo's current
    name, then its former ones (`WeightFile.aliases`: transformers caches a renamed repo under the name it was asked
    for); `verify` refuses a file found at another revision than the pinned one unless its library's md5 confirms
    it (`stray_revision`)."""
    for revision in dict.fromkeys((file.revision, None)):
        for repo in file.repo_names:
            for path in file.candidates:
                hit = _cached(repo, repo_path(file, path), hub, revision)
                if hit is not None:
                    return path, hit
    return None


def hub_view(hub: Path) -> Path:
    """`$CXRBENCH_HOME/hub-views/<digest of the cache's path>/`: links in the weights layout to the files the hub
    cache holds (refreshed on each call; `radgraph-xl/` to its unpacked archive), next to the view's own
    SHA256SUMS and a SOURCE file naming the cache."""
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
        _link_radgraph(view, hub)
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


def view_source(root: Path) -> Path | None:
    """The hub cache a view (`hub_view`) shows, or None for a layout folder."""
    source = root / "SOURCE"
    return Path(source.read_text(encoding="utf-8").strip()) if source.is_file() else None


def _link_radgraph(view: Path, hub: Path) -> None:
    """Point `<view>/radgraph-xl` at RadGraph-XL's archive from the hub cache, unpacked (`unpack_archive`); drop
    the link when the cache has no archive."""
    archive = _cached(RADGRAPH_REPO, RADGRAPH_ARCHIVE, hub)
    folder = unpack_archive(archive) if archive is not None else None
    if folder is not None:
        _link(view / RADGRAPH_MODEL, folder / RADGRAPH_MODEL)
    elif (view / RADGRAPH_MODEL).is_symlink():
        (view / RADGRAPH_MODEL).unlink()


def extract_archive(archive: Path, target: Path) -> None:
    """Unpack a tar archive into `target` as the radgraph package does, with tarfile's `data` filter (a member
    leaving the folder, a link or a device is refused)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise WeightsError(f"cannot unpack {archive}: {exc}") from exc


def unpack_archive(archive: Path) -> Path | None:
    """`$CXRBENCH_HOME/hub-archives/<sha256>/`: RadGraph-XL's archive from a hub cache, unpacked into
    `radgraph-xl/` once its sha256 matches the one the hub names its blob by, with the members' sha256 in the
    folder's SHA256SUMS (their published hashes: `archive_hash`) and the archive's path in SOURCE. None where the
    cache keeps no blob name to check it by (a cache without links)."""
    digest = hub_sha256(archive)
    if digest is None:
        return None
    folder = cxrbench_home() / ARCHIVES / digest
    if (folder / PIN_FILE).is_file():
        return folder
    actual = sha256_file(archive)
    if actual != digest:
        raise WeightsError(
            f"{archive} is corrupt: sha256 {actual[:16]}... is not the {digest[:16]}... the hub published; delete it "
            f"from the hub cache and fetch it again (`cxrbench weights fetch radgraph`)"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder.parent))
    try:
        extract_archive(archive, stage / RADGRAPH_MODEL)
        members = sorted(p for p in stage.rglob("*") if p.is_file())
        (stage / "SOURCE").write_text(f"{archive}\n", encoding="utf-8")
        write_pins(stage, {p.relative_to(stage).as_posix(): sha256_file(p) for p in members})
        os.rename(stage, folder)
    except OSError:
        if not (folder / PIN_FILE).is_file():  # not another process that unpacked it meanwhile
            raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return folder


def _archive_folder(path: Path) -> Path | None:
    """The `unpack_archive` folder `path` lies in (links followed), or None."""
    archives, resolved = (cxrbench_home() / ARCHIVES).resolve(), path.resolve()
    return archives / resolved.relative_to(archives).parts[0] if archives in resolved.parents else None


def archive_hash(path: Path) -> str | None:
    """The sha256 recorded for a file unpacked by `unpack_archive` from an archive the hub published, else None."""
    folder = _archive_folder(path)
    return pinned_hashes(folder).get(path.resolve().relative_to(folder).as_posix()) if folder else None


def present(file: WeightFile, root: Path) -> str | None:
    """The layout path (of the file's candidates) that exists under `root`, or None."""
    return next((path for path in file.candidates if (root / path).is_file()), None)


def _hub_snapshot(link: Path) -> tuple[Path, str, str] | None:
    """(repo folder, repo name, commit) of a path inside a hub cache's snapshot: the name is the one the cache keeps
    the repo under (a former name where the file was found under an alias), else None."""
    parts = link.parts
    if "snapshots" not in parts:
        return None
    at = parts.index("snapshots")
    return Path(*parts[:at]), parts[at - 1].removeprefix("models--").replace("--", "/"), parts[at + 1]


def _hub_label(link: Path) -> str | None:
    """`hub <repo>@<commit>` for a path inside a hub cache's snapshot (the repo under the name the cache keeps it
    by), else None."""
    snapshot = _hub_snapshot(link)
    return f"hub {snapshot[1]}@{snapshot[2][:12]}" if snapshot else None


def found_where(root: Path, path: str) -> str:
    """Where `<root>/<path>` really lies: the file itself, the hub repo, revision and file it links to, or the
    hub archive it was unpacked from."""
    target = root / path
    if target.is_symlink():
        link = Path(os.readlink(target))
        label = _hub_label(link)
        return f"{label}: {link}" if label else f"{target} -> {link}"
    folder = _archive_folder(target)
    if folder is not None:
        archive = Path((folder / "SOURCE").read_text(encoding="utf-8").strip())
        return f"{_hub_label(archive) or archive}: {archive.name}, unpacked at {target.resolve()}"
    return str(target)


def stray_revision(file: WeightFile, root: Path, path: str) -> str | None:
    """The revision a hub cache served `<root>/<path>` at (`main (commit 0123abcd...)`) when the file's publisher
    pins another one (`WeightFile.revision`) whose ref does not name that commit; None otherwise."""
    target = root / path
    if file.revision is None or not target.is_symlink():
        return None
    snapshot = _hub_snapshot(Path(os.readlink(target)))
    if snapshot is None:
        return None
    refs, commit = snapshot[0] / "refs", snapshot[2]
    named = sorted(r.relative_to(refs).as_posix() for r in refs.rglob("*") if r.is_file() and _ref(r) == commit)
    if commit == file.revision or file.revision in named:
        return None
    return f"{', '.join(named) or 'no named revision'} (commit {commit[:12]})"


def _ref(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def library_md5(file: WeightFile) -> str | None:
    """The md5 hi-ml-multimodal checks its image checkpoint against (`health_multimodal.image.model.pretrained`),
    for the BioViL and BioViL-T image checkpoints; None for other files or without the library."""
    if file.family not in ("biovil", "biovil-t"):
        return None
    try:
        with warnings.catch_warnings():  # the library imports timm.models.layers, which timm deprecated
            warnings.simplefilter("ignore", FutureWarning)
            from health_multimodal.image.model import pretrained as hi_ml
    except ImportError:
        return None
    return {
        hi_ml.BIOVIL_IMAGE_WEIGHTS_NAME: hi_ml.BIOVIL_IMAGE_WEIGHTS_MD5,
        hi_ml.BIOVIL_T_IMAGE_WEIGHTS_NAME: hi_ml.BIOVIL_T_IMAGE_WEIGHTS_MD5,
    }.get(file.path)


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def unconfirmed_revision(file: WeightFile, root: Path, path: str) -> str | None:
    """Why `<root>/<path>` is not known to be the file at its pinned revision (`stray_revision`, and no md5 of
    its library confirms it), or None."""
    stray = stray_revision(file, root, path)
    if stray is None:
        return None
    md5 = library_md5(file)
    if md5 is not None and md5_file(root / path) == md5:
        return None
    snapshot = _hub_snapshot(Path(os.readlink(root / path)))  # a link into a snapshot: `stray_revision` checked
    assert snapshot is not None
    return (
        f"{root / path} is {snapshot[1]}'s file at {stray} in the hub cache {view_source(root) or root}, not at the "
        f"pinned revision {file.revision}, and "
        + (f"its md5 is not hi-ml-multimodal's {md5}" if md5 else "nothing confirms it is the same file")
    )


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
    """The sha256 its publisher gives: the table's, else the hub's for a Git LFS file read from a hub cache, or for
    a file unpacked from an archive the hub published."""
    return file.sha256 or hub_sha256(root / path) or archive_hash(root / path)


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
    unconfirmed = unconfirmed_revision(file, root, found)
    if unconfirmed is not None:
        if not allow_unverified:
            raise WeightsError(
                f"{unconfirmed}; fetch revision {file.revision} with `cxrbench weights fetch {file.family}`, or "
                "pass --allow-unverified-weights to use this file"
            )
        warnings.warn(f"{unconfirmed}; used as --allow-unverified-weights asks", stacklevel=2)
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
        if path is None or unconfirmed_revision(file, root, path) is not None:  # never approved by a pin
            continue
        if published_hash(file, root, path) is None:  # a published hash needs no pin
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
    """Per file: family, layout path (the stand-in's where one is used), present? (an absent optional file is no
    fault), recorded hash, whether the file matches it, and where it was found."""
    rows = []
    for file in WEIGHT_FILES:
        path = present(file, root)
        expected = recorded_hash(file, root, path) if path else file.sha256
        stray = stray_revision(file, root, path) if path else None
        if path is None:
            state = "absent (optional: read only where its repo has it)" if file.optional else "missing"
        elif stray is not None and unconfirmed_revision(file, root, path) is not None:
            state = f"at {stray}, not the pinned {file.revision}: unverified"
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
