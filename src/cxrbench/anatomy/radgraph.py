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

import json
import os
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from cxrbench.anatomy.rules import merge_locations, pathologies_named, phrase_locations
from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.errors import CxrbenchError, WeightsError
from cxrbench.weights import (
    RADGRAPH_BERT,
    RADGRAPH_BERT_FOLDER,
    RADGRAPH_BERT_NAMES,
    WeightFile,
    files_of,
    load_state_dict,
    present,
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
    the BERT's config.json and vocab.txt, and its optional tokenizer files where present."""
    root = weights_root(weights)
    files = {f.path: f for f in files_of("radgraph")}
    verify(files[f"{MODEL}/config.json"], root)
    load_state_dict(files[f"{MODEL}/weights.th"], root)
    if not (root / MODEL / "vocabulary").is_dir():
        raise WeightsError(f"RadGraph-XL weights missing: {root / MODEL / 'vocabulary'}; they come from {SOURCE}")
    for file in _bert_files():
        if not file.optional or present(file, root):
            verify(file, root)
    return root


def _at(config: Any, keys: tuple[str, ...]) -> Any:
    """config[keys[0]][keys[1]]..., None where a key is missing."""
    for key in keys:
        config = config.get(key) if isinstance(config, dict) else None
    return config


def package_folder(root: Path, folder: Path) -> Path:
    """`folder` as the radgraph package's `model_cache_dir`: `radgraph-xl/` links to the verified weights.th and
    vocabulary/ and holds the verified config.json with the BERT's name (`BERT_KEYS`) replaced by the folder of
    links to its verified files, `<folder>/<BERT>/`, so that transformers reads them from there (a local folder:
    nothing is looked up or downloaded). The archive must name the BERT cxrbench holds (`RADGRAPH_BERT_NAMES`)."""
    config_path = root / MODEL / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"cannot read {config_path}: {exc}") from None
    bert = folder / RADGRAPH_BERT_FOLDER
    bert.mkdir(parents=True)
    for file in _bert_files():
        if (found := present(file, root)) is not None:
            (bert / Path(found).name).symlink_to((root / found).resolve())
    for keys in BERT_KEYS:
        name = _at(config, keys)
        if name not in RADGRAPH_BERT_NAMES:
            raise WeightsError(
                f"{config_path} names {name!r} as its BERT ({'.'.join(keys)}), not {RADGRAPH_BERT}, whose files "
                "cxrbench holds for RadGraph-XL; fetch the archive again (`cxrbench weights fetch radgraph`)"
            )
        parent = _at(config, keys[:-1])
        parent[keys[-1]] = str(bert)
    model = folder / MODEL
    model.mkdir()
    for name in ("weights.th", "vocabulary"):
        (model / name).symlink_to((root / MODEL / name).resolve())
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


class RadGraphExtractor:
    """RadGraph-XL read offline from `<weights>/radgraph-xl/` and its BERT's files (`radgraph_weights`), handed to
    the radgraph package through `package_folder` (a temporary folder kept while the extractor lives)."""

    def __init__(self, weights: str | Path | None):
        root = radgraph_weights(weights)
        try:
            from radgraph import RadGraph
        except ImportError as exc:
            raise CxrbenchError(
                "the radgraph extractor needs the radgraph package: pip install 'cxrbench[text]'"
            ) from exc
        os.environ["HF_HUB_OFFLINE"] = "1"  # never download at run time
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        self._folder = tempfile.TemporaryDirectory(prefix="cxrbench-radgraph-")
        cache = package_folder(root, Path(self._folder.name))
        bert = str(cache / RADGRAPH_BERT_FOLDER)
        self.model = RadGraph(model_type=MODEL, model_cache_dir=str(cache), tokenizer_cache_dir=bert)

    def findings(self, sentence: str, pathologies: Iterable[str] = PATHOLOGIES) -> dict[str, list[str]]:
        output = self.model([sentence])
        return graph_findings(output["0"], pathologies)


@lru_cache(maxsize=2)
def load_extractor(weights: str | None) -> RadGraphExtractor:
    return RadGraphExtractor(weights)
