"""Anatomy from RadGraph-XL entities (the `radgraph` package, its weights found and verified as every family's:
docs/weights.md); docs/anatomy.md, section 3.

RadGraph labels anatomy and observations ("definitely present", "uncertain", "definitely absent"), links an
observation to its anatomy with `located_at` and to the observation it suggests with `suggestive_of`; modifiers
("left", "lower", "pleural") `modify` the entity they describe. For each present or uncertain observation whose
phrase (the entity with its modifiers, in sentence order) names one of the 8 pathologies (`rules.pathologies_named`),
the phrase of each linked present anatomy entity is put onto the 27 locations by the rule extractor's own reading
(`rules.phrase_locations`), so both extractors speak one vocabulary. An observation without a location takes the
locations of the observation that suggests it ("opacity ..., likely atelectasis").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from cxrbench.anatomy.rules import merge_locations, pathologies_named, phrase_locations
from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.errors import CxrbenchError, WeightsError
from cxrbench.hashing import sha256_file
from cxrbench.weights import (
    RADGRAPH_BERT,
    RADGRAPH_BERT_FOLDER,
    RADGRAPH_BERT_NAMES,
    WeightFile,
    cxrbench_home,
    files_of,
    load_state_dict,
    pinned_hashes,
    present,
    recorded_hash,
    verify,
    weights_root,
)
from cxrbench.weights import RADGRAPH_MODEL as MODEL

SOURCE = (
    "radgraph-xl.tar.gz from the Hugging Face repository StanfordAIMI/RRG_scorers, unpacked into "
    "<weights>/radgraph-xl/ (`cxrbench weights fetch radgraph`)"
)
# Where radgraph 0.1.18 reads the BERT's name in the archive's config.json: its tokenizer's, its encoder's.
BERT_KEYS = (
    ("dataset_reader", "token_indexers", "bert", "model_name"),
    ("model", "embedder", "token_embedders", "bert", "model_name"),
)
PACKAGE_FOLDERS = "radgraph-package"  # under $CXRBENCH_HOME: the folders handed to the radgraph package
ANATOMY = "Anatomy::definitely present"
# Observations that count: present, or uncertain as the rule extractor counts hedged findings ("may represent").
OBSERVATIONS = ("Observation::definitely present", "Observation::uncertain")


def _modifier_map(entities: dict[str, Any]) -> dict[str, list[str]]:
    """entity id -> the ids of the entities that `modify` it."""
    modifiers: dict[str, list[str]] = {}
    for key, entity in entities.items():
        for relation, target in entity.get("relations", []):
            if relation == "modify":
                modifiers.setdefault(str(target), []).append(key)
    return modifiers


def _phrase(entities: dict[str, Any], modifiers: dict[str, list[str]], key: str) -> str:
    """The entity's tokens with its modifiers' (and theirs, recursively), in sentence order."""
    keys, todo = set(), [key]
    while todo:
        k = todo.pop()
        if k not in keys and k in entities:
            keys.add(k)
            todo.extend(modifiers.get(k, []))
    ordered = sorted(keys, key=lambda k: int(entities[k].get("start_ix", 0)))
    return " ".join(entities[k]["tokens"] for k in ordered)


def graph_findings(graph: dict[str, Any], pathologies: Iterable[str] = PATHOLOGIES) -> dict[str, list[str]]:
    """{pathology: locations} from one RadGraph output entry ({"text", "entities": {id: {...}}})."""
    entities = graph.get("entities", {})
    modifiers = _modifier_map(entities)
    observations = [k for k, e in entities.items() if e.get("label") in OBSERVATIONS]
    located: dict[str, list[str]] = {}
    for key in observations:
        located[key] = [
            loc
            for relation, target in entities[key].get("relations", [])
            if relation == "located_at" and entities.get(str(target), {}).get("label") == ANATOMY
            for loc in phrase_locations(_phrase(entities, modifiers, str(target)))
        ]
    for key in observations:  # "opacity suggestive_of atelectasis": the atelectasis is where the opacity is
        for relation, target in entities[key].get("relations", []):
            if relation == "suggestive_of" and str(target) in located and not located[str(target)]:
                located[str(target)] = list(located[key])
    found: dict[str, list[str]] = {}
    for key in observations:
        for pathology in pathologies_named(_phrase(entities, modifiers, key), pathologies):
            found.setdefault(pathology, []).extend(located[key])
    return {p: ["cardiomegaly"] if p == "Cardiomegaly" else merge_locations(locs) for p, locs in found.items()}


def _bert_files() -> list[WeightFile]:
    return [f for f in files_of("radgraph") if f.repo == RADGRAPH_BERT]


def radgraph_weights(weights: str | Path | None) -> Path:
    """The weights root holding a verified `radgraph-xl/` (`weights_root`: a layout folder, or a hub cache's view
    with the archive unpacked) and the files of its BERT: config.json and weights.th match their recorded sha256
    and weights.th unpickles with `torch.load(weights_only=True)` to a mapping of names to tensors before the
    radgraph package reads them (radgraph 0.1.18 itself calls a plain `torch.load` when CUDA is available); so do
    the BERT's config.json and vocab.txt, and its optional tokenizer files where present or pinned."""
    root = weights_root(weights)
    files = {f.path: f for f in files_of("radgraph")}
    verify(files[f"{MODEL}/config.json"], root)
    load_state_dict(files[f"{MODEL}/weights.th"], root)
    if not (root / MODEL / "vocabulary").is_dir():
        raise WeightsError(f"RadGraph-XL weights missing: {root / MODEL / 'vocabulary'}; they come from {SOURCE}")
    pins = pinned_hashes(root)
    for file in _bert_files():
        if not file.optional or present(file, root) or file.path in pins:  # a pinned file must be there
            verify(file, root)
    return root


def _at(config: Any, keys: tuple[str, ...]) -> Any:
    """config[keys[0]][keys[1]]..., None where a key is missing."""
    for key in keys:
        config = config.get(key) if isinstance(config, dict) else None
    return config


def _sources(root: Path) -> list[tuple[str, Path, str]]:
    """(name in the package folder, verified file, its sha256) of everything the package reads, vocabulary/ too."""
    sources = []
    for file in files_of("radgraph"):
        found = present(file, root)
        if found is not None:
            name = f"{RADGRAPH_BERT_FOLDER}/{Path(found).name}" if file.repo == RADGRAPH_BERT else found
            sources.append((name, root / found, recorded_hash(file, root, found) or sha256_file(root / found)))
    for path in sorted((root / MODEL / "vocabulary").rglob("*")):
        if path.is_file():
            sources.append((f"{MODEL}/{path.relative_to(root / MODEL)}", path, sha256_file(path)))
    return sources


def package_folder(root: Path) -> Path:
    """The radgraph package's `model_cache_dir` for the verified files of `root`:
    `$CXRBENCH_HOME/radgraph-package/<key>/`, built once per set of files (key: their hashes and where they lie)
    and reused, so that the package's own model cache, keyed by the BERT's folder, keeps one BERT per set of files.
    It holds `radgraph-xl/` with a link to the verified weights.th, a copy of vocabulary/ (the package takes a lock
    file in it: the weights folder may be read-only) and the verified config.json with the BERT's name
    (`BERT_KEYS`) replaced by `<folder>/<BERT>/`, a folder of links to its verified files that transformers reads as
    a local folder (nothing looked up or downloaded). The archive must name the BERT cxrbench holds."""
    config_path = root / MODEL / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"cannot read {config_path}: {exc}") from None
    sources = _sources(root)
    key = hashlib.sha256(json.dumps([(n, str(p.resolve()), h) for n, p, h in sources]).encode()).hexdigest()[:16]
    folder = cxrbench_home() / PACKAGE_FOLDERS / key
    for keys in BERT_KEYS:
        name = _at(config, keys)
        if name not in RADGRAPH_BERT_NAMES:
            raise WeightsError(
                f"{config_path} names {name!r} as its BERT ({'.'.join(keys)}); cxrbench holds and verifies the files "
                f"of {RADGRAPH_BERT} only (docs/weights.md), so it cannot run this RadGraph-XL archive"
            )
        _at(config, keys[:-1])[keys[-1]] = str(folder / RADGRAPH_BERT_FOLDER)
    if (folder / MODEL / "config.json").is_file():  # built before: the folder appears whole (a rename)
        return folder
    building = folder.with_name(f".tmp-{key}-{os.getpid()}")
    try:
        shutil.rmtree(building, ignore_errors=True)
        for name, path, _ in sources:
            target = building / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if name.startswith(f"{MODEL}/vocabulary/"):
                shutil.copyfile(path, target)
            elif name != f"{MODEL}/config.json":
                target.symlink_to(path.resolve())
        (building / MODEL / "config.json").write_text(json.dumps(config), encoding="utf-8")
        try:
            building.rename(folder)
        except OSError:
            if not (folder / MODEL / "config.json").is_file():  # not another process that built it meanwhile
                raise
    except OSError as exc:
        raise WeightsError(
            f"cannot prepare RadGraph-XL's folder {folder} ({exc.strerror or exc}); set CXRBENCH_HOME to a writable "
            f"folder"
        ) from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE set, and huggingface_hub's flag (read when it was imported) on,
    while the package builds its models; all restored after. The package is handed local folders only: this only
    makes sure that a file it might look for beyond them is never downloaded."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        from huggingface_hub import constants
    except ImportError:
        constants = None
    flag = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = flag
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class RadGraphExtractor:
    """RadGraph-XL read offline from `<weights>/radgraph-xl/` and its BERT's files (`radgraph_weights`), handed to
    the radgraph package through `package_folder`."""

    def __init__(self, weights: str | Path | None):
        root = radgraph_weights(weights)
        try:
            from radgraph import RadGraph
        except ImportError as exc:
            raise CxrbenchError(
                "the radgraph extractor needs the radgraph package: pip install 'cxrbench[text]'"
            ) from exc
        self.folder = package_folder(root)
        bert = str(self.folder / RADGRAPH_BERT_FOLDER)
        try:
            with _offline():
                self.model = RadGraph(model_type=MODEL, model_cache_dir=str(self.folder), tokenizer_cache_dir=bert)
        except Exception as exc:
            raise WeightsError(
                f"the radgraph package could not build RadGraph-XL from {root / MODEL} and {bert}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def findings(self, sentence: str, pathologies: Iterable[str] = PATHOLOGIES) -> dict[str, list[str]]:
        output = self.model([sentence])
        return graph_findings(output["0"], pathologies)


@lru_cache(maxsize=2)
def load_extractor(weights: str | None) -> RadGraphExtractor:
    return RadGraphExtractor(weights)
