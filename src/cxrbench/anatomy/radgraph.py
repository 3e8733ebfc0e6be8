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

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from cxrbench.anatomy.rules import merge_locations, pathologies_named, phrase_locations
from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.errors import CxrbenchError, WeightsError
from cxrbench.weights import RADGRAPH_MODEL as MODEL
from cxrbench.weights import files_of, load_state_dict, verify, view_source, weights_root

SOURCE = (
    "radgraph-xl.tar.gz from the Hugging Face repository StanfordAIMI/RRG_scorers, unpacked into "
    "<weights>/radgraph-xl/ (`cxrbench weights fetch radgraph`)"
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


def radgraph_weights(weights: str | Path | None) -> Path:
    """The weights root holding a verified `radgraph-xl/` (`weights_root`: a layout folder, or a hub cache's view
    with the archive unpacked): config.json and weights.th match their recorded sha256 and weights.th unpickles
    with `torch.load(weights_only=True)` to a mapping of names to tensors before the radgraph package reads them
    (radgraph 0.1.18 itself calls a plain `torch.load` when CUDA is available)."""
    root = weights_root(weights)
    files = {f.path: f for f in files_of("radgraph")}
    verify(files[f"{MODEL}/config.json"], root)
    load_state_dict(files[f"{MODEL}/weights.th"], root)
    if not (root / MODEL / "vocabulary").is_dir():
        raise WeightsError(f"RadGraph-XL weights missing: {root / MODEL / 'vocabulary'}; they come from {SOURCE}")
    return root


class RadGraphExtractor:
    """RadGraph-XL read offline from `<weights>/radgraph-xl/` (`radgraph_weights`), its tokenizer from
    `<weights>/tokenizer/` (a hub cache's view: from that cache)."""

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
        tokenizer = view_source(root) or root / "tokenizer"
        self.model = RadGraph(model_type=MODEL, model_cache_dir=str(root), tokenizer_cache_dir=str(tokenizer))

    def findings(self, sentence: str, pathologies: Iterable[str] = PATHOLOGIES) -> dict[str, list[str]]:
        output = self.model([sentence])
        return graph_findings(output["0"], pathologies)


@lru_cache(maxsize=2)
def load_extractor(weights: str | None) -> RadGraphExtractor:
    return RadGraphExtractor(weights)
