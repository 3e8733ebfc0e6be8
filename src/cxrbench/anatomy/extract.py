"""Anatomy from report text: one entry point over both extractors, and report-level findings (docs/anatomy.md, 4)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cxrbench.anatomy import rules
from cxrbench.anatomy.vocabulary import PATHOLOGIES, make_prompt
from cxrbench.errors import UnknownNameError

Extractor = Literal["rules", "radgraph"]
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])|\n\s*\n|\n(?=\s*[A-Z0-9-]+[.:)])")


def split_sentences(text: str) -> list[str]:
    """Report text -> sentences (on sentence-final punctuation followed by a capital, and blank lines)."""
    return [s for s in (part.strip() for part in _SENTENCE.split(text)) if s]


def sentence_findings(
    sentence: str,
    pathologies: Iterable[str] = PATHOLOGIES,
    extractor: Extractor = "rules",
    weights: str | Path | None = None,
) -> dict[str, list[str]]:
    """{pathology: locations} for the positive (not negated, not resolved) findings of one sentence, by the rule
    extractor (`rules.findings`) or RadGraph-XL (`RadGraphExtractor.findings`)."""
    if extractor == "rules":
        return rules.findings(sentence, pathologies)
    if extractor == "radgraph":
        from cxrbench.anatomy.radgraph import load_extractor

        return load_extractor(str(weights) if weights else None).findings(sentence, pathologies)
    raise UnknownNameError(f"unknown extractor {extractor!r}; choose 'rules' or 'radgraph'")


def extract_locations(
    sentence: str, extractor: Extractor = "rules", pathology: str | None = None, weights: str | Path | None = None
) -> list[str]:
    """The locations of the sentence's positive findings (of `pathology` only, when given), merged."""
    found = sentence_findings(sentence, [pathology] if pathology else PATHOLOGIES, extractor, weights)
    return rules.merge_locations(loc for locs in found.values() for loc in locs)


@dataclass(frozen=True)
class ReportFinding:
    """One pathology found in a report: the sentences that locate it, its merged locations, and the prompt."""

    pathology: str
    sentences: tuple[str, ...]
    locations: tuple[str, ...]

    @property
    def prompt(self) -> str:
        return make_prompt(list(self.locations), self.pathology)


def report_findings(
    text: str,
    pathologies: Iterable[str] = PATHOLOGIES,
    extractor: Extractor = "rules",
    weights: str | Path | None = None,
) -> list[ReportFinding]:
    """Per pathology, the located positive mentions across the report, left + right merged to bilateral."""
    pathologies = list(pathologies)
    sentences: dict[str, list[str]] = {}
    locations: dict[str, list[str]] = {}
    for sentence in split_sentences(text):
        for pathology, locs in sentence_findings(sentence, pathologies, extractor, weights).items():
            if locs:
                sentences.setdefault(pathology, []).append(sentence)
                locations.setdefault(pathology, []).extend(locs)
    return [
        ReportFinding(p, tuple(sentences[p]), tuple(rules.merge_locations(locations[p])))
        for p in pathologies
        if p in locations
    ]
