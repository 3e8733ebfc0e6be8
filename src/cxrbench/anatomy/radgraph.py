"""SPEC 4.2: anatomy from RadGraph-XL entities (the `radgraph` package, weights from a local folder).

RadGraph labels "definitely present" anatomy (ANAT-DP) and observations (OBS-DP) and links an observation to
its anatomy with `located_at`; modifiers ("left", "lower") `modify` the anatomy they describe. For each OBS-DP
entity naming one of the 8 pathologies (the rule lexicon), the phrase of each linked ANAT-DP entity, its
modifiers included and in sentence order ("left lower lobe"), is normalised onto the 27 locations by the same
rules as the rule-based extractor, so both extractors speak one vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from cxrbench.anatomy import rules
from cxrbench.anatomy.vocabulary import PATHOLOGIES
from cxrbench.errors import CxrbenchError, WeightsError

MODEL = "radgraph-xl"
SOURCE = (
    "radgraph-xl.tar.gz from the Hugging Face repository StanfordAIMI/RRG_scorers, unpacked into <weights>/radgraph-xl/"
)
REQUIRED = ("config.json", "weights.th", "vocabulary")
ANATOMY = "Anatomy::definitely present"
OBSERVATION = "Observation::definitely present"


def graph_findings(graph: dict[str, Any], pathologies: Iterable[str] = PATHOLOGIES) -> dict[str, list[str]]:
    """{pathology: locations} from one RadGraph output entry ({"text", "entities": {id: {...}}})."""
    entities = graph.get("entities", {})
    modifiers: dict[str, list[str]] = {}
    for key, entity in entities.items():
        for relation, target in entity.get("relations", []):
            if relation == "modify":
                modifiers.setdefault(str(target), []).append(key)

    def phrase(key: str) -> list[str]:
        keys = {key, *modifiers.get(key, [])}
        ordered = sorted(keys, key=lambda k: int(entities[k].get("start_ix", 0)))
        return rules._tokens(" ".join(entities[k]["tokens"] for k in ordered))

    found: dict[str, list[str]] = {}
    for entity in entities.values():
        if entity.get("label") != OBSERVATION:
            continue
        tokens = rules._tokens(entity["tokens"])
        named = {m.pathology for m in rules._find_mentions(tokens, pathologies)}
        if not named:
            continue
        locations: list[str] = []
        for relation, target in entity.get("relations", []):
            target = str(target)
            if relation == "located_at" and entities.get(target, {}).get("label") == ANATOMY:
                locs, _ = rules._segment_locations(phrase(target), None)
                locations.extend(locs)
        for pathology in named:
            found.setdefault(pathology, []).extend(locations)
    return {p: ["cardiomegaly"] if p == "Cardiomegaly" else rules.merge_locations(locs) for p, locs in found.items()}


class RadGraphExtractor:
    """RadGraph-XL read from `<weights>/radgraph-xl/` (and its tokenizer from `<weights>/tokenizer/`), offline."""

    def __init__(self, weights: str | Path | None):
        if weights is None:
            raise WeightsError(f"the radgraph extractor needs --weights DIR holding {SOURCE}")
        folder = Path(weights) / MODEL
        missing = [name for name in REQUIRED if not (folder / name).exists()]
        if missing:
            raise WeightsError(
                f"RadGraph-XL weights missing: {', '.join(str(folder / m) for m in missing)}; they come from {SOURCE}"
            )
        try:
            from radgraph import RadGraph
        except ImportError as exc:
            raise CxrbenchError(
                "the radgraph extractor needs the radgraph package: pip install 'cxrbench[text]'"
            ) from exc
        os.environ["HF_HUB_OFFLINE"] = "1"  # never download at run time
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        self.model = RadGraph(
            model_type=MODEL, model_cache_dir=str(Path(weights)), tokenizer_cache_dir=str(Path(weights) / "tokenizer")
        )

    def findings(self, sentence: str, pathologies: Iterable[str] = PATHOLOGIES) -> dict[str, list[str]]:
        output = self.model([sentence])
        return graph_findings(output["0"], pathologies)


@lru_cache(maxsize=2)
def load_extractor(weights: str | None) -> RadGraphExtractor:
    return RadGraphExtractor(weights)
