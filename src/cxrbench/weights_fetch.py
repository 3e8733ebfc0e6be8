"""`cxrbench weights fetch`: download a method family's files through the libraries that publish them, into the
weights layout, then hash them and record their pins and provenance (docs/weights.md).

- Hugging Face repositories (CXR-BERT and BioViL-T with their image checkpoints, SD-2.1-base's tokenizer and
  text encoder, RadGraph-XL's archive): `huggingface_hub.snapshot_download` with `allow_patterns` naming only the
  files cxrbench reads, through the user's hub cache (so `HF_HUB_OFFLINE=1` resolves from it). The BioViL image
  checkpoints come from the repository, revision and file hi-ml-multimodal's own download uses
  (`health_multimodal.image.model.pretrained`), and at that revision must match the library's md5.
- The MONAI bundle `cxr_image_synthesis_latent_diffusion_model`: `monai.bundle.download` at the version cxrbench
  pins (`LDM_BUNDLE_VERSION`, the bundle files' `WeightFile.revision`; `--revision` for another), from its
  default source (the hub repo `MONAI/<bundle>` at the revision named by that version) or `url=` for a copy of
  the bundle's zip; the bundle's `metadata.json` must name that version.
- RadGraph-XL's archive, unpacked into `radgraph-xl/` as the radgraph package unpacks it, and the files of the BERT
  its config.json names that transformers reads when the radgraph package builds its tokenizer and encoder
  (`RADGRAPH_BERT`: config.json and vocab.txt, with tokenizer_config.json and special_tokens_map.json where the
  repo has them), by `snapshot_download` from that repo's main.

An optional file (`WeightFile.optional`) the snapshot lacks counts as absent only where the repo says it lacks it:
huggingface_hub's `.no_exist/<commit>/<file>` marker in the hub cache (written when a download found no such file;
offline, `snapshot_download` returns whatever snapshot folder the cache holds, complete or not), else, online, the
repo's file list at that commit (`HfApi.list_repo_files`). Otherwise the fetch fails, naming the file. Placing a
fetch deletes the family's optional files it did not bring, with their pins and provenance, so that a copy from an
earlier fetch never verifies as the repo's.

PROVENANCE.json records, per file, the revision it was resolved at, the one cxrbench pins and, where `--revision`
asked for another, that one.

Everything lands in a temporary folder inside the weights folder first; files are moved into place only once
every download of the family succeeded and every file hashed, and pins are written last, so a failed or partial
fetch leaves nothing that verifies. A pinned file whose content changed is refused (`cxrbench weights --repin`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cxrbench.errors import WeightsError
from cxrbench.hashing import sha256_file
from cxrbench.weights import (
    FAMILIES,
    LDM_BUNDLE,
    PIN_FILE,
    RADGRAPH_ARCHIVE,
    RADGRAPH_MODEL,
    RADGRAPH_REPO,
    WeightFile,
    extract_archive,
    files_of,
    hub_cache,
    library_md5,
    md5_file,
    pinned_hashes,
    repo_path,
    write_pins,
)

PROVENANCE_FILE = "PROVENANCE.json"
_STAGING = ".fetch-"


@dataclass(frozen=True)
class Fetched:
    """One file placed in the layout: where it came from (source, repo or bundle, resolved revision), its hash,
    the revision cxrbench pins for its source (None: main) and the one `--revision` asked for (None: the pin)."""

    path: str
    source: str
    revision: str
    sha256: str
    pinned: str | None = None
    requested: str | None = None


def offline_error(family: str, root: Path, exc: BaseException) -> WeightsError:
    return WeightsError(
        f"cannot download the {family} weights (no network, or the source refused: {type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else ''}); "
        f"place the files by hand under {root} as `cxrbench weights --weights {root}` lists them, then pin them "
        "with `cxrbench weights --pin` (docs/weights.md)"
    )


def _hub_snapshot(repo: str, patterns: list[str], revision: str | None, cache: Path | None) -> Path:
    """The snapshot folder of `repo` holding `patterns`, through the hub cache (offline when HF_HUB_OFFLINE=1)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, cache_dir=cache))


def _repo_lacks(repo: str, commit: str, path: str, cache: Path | None, listing: dict[str, set[str]]) -> bool:
    """Whether `repo` at `commit` has no file `path`: huggingface_hub's `.no_exist` marker for it in the hub cache
    (`try_to_load_from_cache` answers `_CACHED_NO_EXIST`), else, online, the repo's file list at that commit (asked
    once per repo: `listing`). False where neither says so (offline, or the list is unavailable)."""
    from huggingface_hub import _CACHED_NO_EXIST, HfApi, constants, try_to_load_from_cache

    if try_to_load_from_cache(repo, path, cache_dir=cache, revision=commit) is _CACHED_NO_EXIST:
        return True
    if constants.HF_HUB_OFFLINE:
        return False
    if repo not in listing:
        try:
            listing[repo] = set(HfApi().list_repo_files(repo, revision=commit))
        except (OSError, ValueError, RuntimeError):  # requests' and huggingface_hub's errors: no answer
            return False
    return path not in listing[repo]


def _hub_files(files: Sequence[WeightFile], requested: str | None, cache: Path | None, stage: Path) -> list[Fetched]:
    """Copy the files of one Hugging Face repo (a stand-in where the preferred file is absent) into `stage`."""
    repo, pinned = files[0].repo, files[0].revision
    revision = requested or pinned
    assert repo is not None
    patterns = sorted({repo_path(f, c) for f in files for c in f.candidates})
    snapshot = _hub_snapshot(repo, patterns, revision, cache)
    fetched: list[Fetched] = []
    listing: dict[str, set[str]] = {}
    for file in files:
        found = next((c for c in file.candidates if (snapshot / repo_path(file, c)).is_file()), None)
        at = f"{repo} at revision {revision or 'main'}"
        if found is None and file.optional:  # its library reads it only where the repo has it
            if all(_repo_lacks(repo, snapshot.name, repo_path(file, c), cache, listing) for c in file.candidates):
                continue
            raise WeightsError(
                f"{at} (commit {snapshot.name[:12]}): the hub cache holds no {file.repo_path}, and nothing says "
                "the repo lacks it (huggingface_hub's .no_exist marker in the cache, or the repo's file list online); "
                "fetch it online, or place it by hand; nothing was placed"
            )
        if found is None:
            raise WeightsError(f"{at} has no {file.repo_path}; nothing was placed")
        target = stage / found
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(snapshot / repo_path(file, found), target)
        _check_library_md5(file, revision, target)
        source = f"Hugging Face {repo}"
        fetched.append(Fetched(found, source, snapshot.name, sha256_file(target), pinned, requested))
    return fetched


def _check_library_md5(file: WeightFile, revision: str | None, path: Path) -> None:
    """At hi-ml-multimodal's own revision, its image checkpoint must have the md5 the library checks."""
    md5 = library_md5(file)
    if md5 is not None and revision == file.revision and (actual := md5_file(path)) != md5:
        raise WeightsError(
            f"{file.path} at revision {revision} has md5 {actual}, not the {md5} hi-ml-multimodal checks; "
            "nothing was placed"
        )


def _bundle_table() -> list[WeightFile]:
    return [f for f in files_of("ldm") if f.path.startswith(f"{LDM_BUNDLE}/")]


def _bundle_files(requested: str | None, url: str | None, stage: Path) -> list[Fetched]:
    """The bundle's inference config and checkpoints, downloaded by `monai.bundle.download` into `stage`, at the
    version cxrbench pins or the one `--revision` asked for, which its metadata.json must name."""
    from monai.bundle import download

    # `download` passes the version to huggingface_hub as the revision of MONAI/<bundle>: the ref a hub cache keeps
    # the bundle under, so the version asked for by default is the table's pin, the revision the hub lookup reads.
    (pinned,) = {f.revision for f in _bundle_table()}
    assert pinned is not None
    version, origin = requested or pinned, url or f"MONAI bundle {LDM_BUNDLE}"
    folder = stage / ".bundle"
    download(name=LDM_BUNDLE, version=version, bundle_dir=str(folder), url=url, progress=True)
    metadata = folder / LDM_BUNDLE / "configs" / "metadata.json"
    try:
        found = str(json.loads(metadata.read_text(encoding="utf-8")).get("version", "no version"))
    except (OSError, ValueError, AttributeError):
        found = "unknown (its configs/metadata.json is missing or not a JSON object)"
    if found != version:
        raise WeightsError(
            f"the {LDM_BUNDLE} bundle from {origin} is version {found}, not "
            + (f"the {version} --revision asked for" if requested else f"{version}, the one cxrbench supports")
            + "; nothing was placed. Pass --revision VERSION to fetch another version (recorded as such)"
        )
    fetched = []
    for file in _bundle_table():
        source = folder / file.path
        if not source.is_file():
            raise WeightsError(
                f"the {LDM_BUNDLE} bundle from {origin} has no {file.path.split('/', 1)[1]} "
                "(its large_files.yml lists where the checkpoints are published); nothing was placed"
            )
        (stage / file.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, stage / file.path)
        digest = sha256_file(stage / file.path)
        fetched.append(Fetched(file.path, origin, found, digest, file.revision, requested))
    shutil.rmtree(folder)
    return fetched


def _radgraph_files(requested: str | None, cache: Path | None, stage: Path) -> list[Fetched]:
    """RadGraph-XL's archive from its Hugging Face repo, unpacked into `stage/radgraph-xl/` as the radgraph
    package unpacks it (`weights.extract_archive`)."""
    snapshot = _hub_snapshot(RADGRAPH_REPO, [RADGRAPH_ARCHIVE], requested, cache)
    extract_archive(snapshot / RADGRAPH_ARCHIVE, stage / RADGRAPH_MODEL)
    fetched = []
    for file in (f for f in files_of("radgraph") if f.repo is None):  # the archive's members
        if not (stage / file.path).is_file():
            raise WeightsError(f"{RADGRAPH_ARCHIVE} from {RADGRAPH_REPO} holds no {file.path}; nothing was placed")
        source, digest = f"Hugging Face {RADGRAPH_REPO}", sha256_file(stage / file.path)
        fetched.append(Fetched(file.path, source, snapshot.name, digest, None, requested))
    return fetched


def _download(family: str, revision: str | None, cache: Path | None, url: str | None, stage: Path) -> list[Fetched]:
    """Every file of `family`, grouped by the repository or bundle that publishes it, into `stage`. `revision` is
    the family's own source's: the repo's for biovil, biovil-t and radgraph (RadGraph-XL's archive; its BERT's
    files come from that repo's main), the bundle's version for ldm (whose SD-2.1-base files come from that repo's
    main)."""
    fetched = []
    if family == "radgraph":
        fetched += _radgraph_files(revision, cache, stage)
        revision = None
    if family == "ldm":
        fetched += _bundle_files(revision, url, stage)
        revision = None
    repos: dict[str, list[WeightFile]] = {}
    for file in files_of(family):
        if file.repo and file not in _bundle_table():
            repos.setdefault(file.repo, []).append(file)
    for files in repos.values():
        fetched += _hub_files(files, revision, cache, stage)
    return fetched


def _place(stage: Path, root: Path, family: str, fetched: Sequence[Fetched]) -> None:
    """Refuse a fetched file whose pin differs, then move everything `stage` holds into `root`, delete the family's
    optional files the fetch did not bring, and write provenance and pins last (without the deleted files')."""
    pins = pinned_hashes(root)
    changed = [f.path for f in fetched if pins.get(f.path, f.sha256) != f.sha256]
    if changed:
        raise WeightsError(
            f"{', '.join(changed)}: the fetched file differs from the one pinned in {root / PIN_FILE}; nothing was "
            f"placed. If the new file is the one you want, run `cxrbench weights --weights {root} "
            f"{' '.join(f'--repin {p}' for p in changed)}` after placing it"
        )
    for source in sorted(p for p in stage.rglob("*") if p.is_file()):
        target = root / source.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        source.replace(target)
    brought = {f.path for f in fetched}
    stale = {p for f in files_of(family) if f.optional for p in f.candidates if p not in brought}
    for path in stale:
        (root / path).unlink(missing_ok=True)
    _write_provenance(root, fetched, stale)
    kept = {name: digest for name, digest in pins.items() if name not in stale}
    write_pins(root, {**kept, **{f.path: f.sha256 for f in fetched}})


def _write_provenance(root: Path, fetched: Iterable[Fetched], dropped: Iterable[str] = ()) -> None:
    """Record the fetched files in PROVENANCE.json, and forget the `dropped` ones'."""
    from cxrbench.benchmark.store import write_atomic

    path = root / PROVENANCE_FILE
    try:
        records = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read {path}: {exc}; move it away and fetch again") from None
    for name in dropped:
        records.pop(name, None)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for f in fetched:
        records[f.path] = {
            "source": f.source,
            "revision": f.revision,
            "pinned_revision": f.pinned,
            "requested_revision": f.requested,
            "sha256": f.sha256,
            "fetched": when,
        }
    write_atomic(path, json.dumps(records, indent=2, sort_keys=True) + "\n")


def fetch(
    families: Sequence[str],
    root: Path,
    revision: str | None = None,
    cache: Path | None = None,
    bundle_url: str | None = None,
) -> list[Fetched]:
    """Fetch each family in turn into the layout folder `root` (created); see the module docstring."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise WeightsError(f"unknown weight family {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    if root.is_dir() and hub_cache(root):
        raise WeightsError(f"{root} is a Hugging Face hub cache; fetch into a weights folder (--weights DIR)")
    root.mkdir(parents=True, exist_ok=True)
    done: list[Fetched] = []
    for family in dict.fromkeys(families):
        with tempfile.TemporaryDirectory(prefix=_STAGING, dir=root) as stage:
            try:
                fetched = _download(family, revision, cache, bundle_url, Path(stage))
            except (OSError, ValueError, RuntimeError) as exc:  # huggingface_hub / urllib / MONAI download errors
                raise offline_error(family, root, exc) from exc
            _place(Path(stage), root, family, fetched)
        done += fetched
    return done
