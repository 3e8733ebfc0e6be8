"""SPEC 4.2: the rule-based anatomy extractor (the offline default).

A sentence is lower-cased, hyphens become spaces, and it is cut into segments at commas, semicolons and
joining words ("and", "with", "but", ...). In each segment, side words (left, right, bilateral, both) pair
with the nearest zone word (apical, upper, mid, lower, base, costophrenic, pleural, perihilar) to form one of
the 27 locations; a zone without a side takes the side of the previous segment ("right upper and lower
lobes"), or "bilateral" when the zone word is plural ("bases", "apices") or, with no side to take, the
anatomy is ("lower lungs"); special words carry both ("bibasilar", "biapical", "retrocardiac" = left lower,
"lingula").

A segment's locations belong to the pathology mentions in it; a segment without a mention gives its
locations to the previous segment's mentions (or the next one's when it comes first), and a hedging segment
("..., likely atelectasis", "... compatible with edema") takes the previous segment's locations. A mention
preceded by a negation ("no", "without", "free of", ...) within its clause, or followed by "resolved",
"cleared", "no longer", ..., is dropped. Per pathology, left X and right X become bilateral X ("bilateral
base" is written "bibasilar"). Cardiomegaly's location is always "cardiomegaly" (the heart region);
"pulmonary" applies when a mention has no other location.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cxrbench.anatomy.vocabulary import LOCATIONS, PATHOLOGIES, _side_zone

SIDE_WORDS = {
    "left": "left",
    "right": "right",
    "bilateral": "bilateral",
    "bilaterally": "bilateral",
    "both": "bilateral",
}
# zone word -> (zone, plural)
ZONE_WORDS = {
    "apex": ("apical", False),
    "apices": ("apical", True),
    "apical": ("apical", False),
    "apically": ("apical", False),
    "upper": ("upper", False),
    "mid": ("middle", False),
    "middle": ("middle", False),
    "midlung": ("middle", False),
    "perihilar": ("middle", False),
    "hilar": ("middle", False),
    "lower": ("lower", False),
    "infrahilar": ("lower", False),
    "base": ("base", False),
    "bases": ("base", True),
    "basilar": ("base", False),
    "basal": ("base", False),
    "basally": ("base", False),
    "basilarly": ("base", False),
    "costophrenic": ("costophrenic", False),
    "pleural": ("pleural", False),
}
# words that are a whole location
SPECIAL_WORDS = {
    "bibasilar": "bibasilar",
    "bibasal": "bibasilar",
    "bibasally": "bibasilar",
    "biapical": "bilateral apical",
    "retrocardiac": "left lower",
    "lingula": "lingular",
    "lingular": "lingular",
}
PLURAL_ANATOMY = {"lungs", "lobes", "hemithoraces", "zones", "fields"}
PATHOLOGY_TERMS: dict[str, tuple[str, ...]] = {
    "Pneumonia": (
        "pneumonia",
        "pneumonias",
        "bronchopneumonia",
        "pneumonic",
        "consolidation",
        "consolidations",
        "consolidative",
        "infection",
        "infections",
        "infectious process",
    ),
    "Pneumothorax": ("pneumothorax", "pneumothoraces", "ptx"),
    "Consolidation": ("consolidation", "consolidations", "consolidative", "consolidated"),
    "Atelectasis": ("atelectasis", "atelectases", "atelectatic", "collapse", "collapsed"),
    "Edema": (
        "edema",
        "oedema",
        "vascular congestion",
        "venous congestion",
        "congestion",
        "fluid overload",
        "vascular engorgement",
    ),
    "Cardiomegaly": (
        "cardiomegaly",
        "enlarged heart",
        "heart is enlarged",
        "heart size is enlarged",
        "enlarged cardiac silhouette",
        "cardiac silhouette is enlarged",
        "cardiac enlargement",
        "heart is mildly enlarged",
        "heart is moderately enlarged",
        "heart is severely enlarged",
    ),
    "Lung Opacity": (
        "opacity",
        "opacities",
        "opacification",
        "opacifications",
        "opacified",
        "density",
        "densities",
        "infiltrate",
        "infiltrates",
        "infiltration",
        "airspace disease",
    ),
    "Pleural Effusion": ("effusion", "effusions", "pleural fluid", "hydrothorax"),
}
SEPARATORS = {
    ",",
    ";",
    ":",
    "and",
    "with",
    "but",
    "while",
    "whereas",
    "which",
    "plus",
    "also",
    "although",
    "though",
    "however",
}
CLAUSE_BREAKS = {";", ":", "but", "however", "although", "though", "whereas", "while", "which", "with"}
NEGATION_BEFORE = (
    "no",
    "not",
    "without",
    "free of",
    "negative for",
    "absence of",
    "rather than",
    "resolution of",
    "resolved",
    "clearing of",
    "never",
)
NEGATION_AFTER = (
    "resolved",
    "cleared",
    "has resolved",
    "have resolved",
    "no longer",
    "not seen",
    "not present",
    "not identified",
    "not visualized",
    "not appreciated",
    "absent",
    "ruled out",
    "excluded",
)
NOT_NEGATION = (
    "no change",
    "no significant change",
    "no interval change",
    "not changed",
    "no substantial change",
    "no definite change",
    "not significantly changed",
)
HEDGES = {
    "likely",
    "probably",
    "possibly",
    "possible",
    "consistent",
    "compatible",
    "concerning",
    "suggestive",
    "representing",
    "reflecting",
    "may",
    "could",
    "due",
    "which",
    "worrisome",
    "suspicious",
    "most",
}
_TOKEN = re.compile(r"[a-z0-9]+|[,;:]")


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("-", " ").replace("/", " ")
    text = re.sub(r"\b(right and left|left and right)\b", "bilateral", text)
    return _TOKEN.findall(text)


@dataclass
class _Mention:
    pathology: str
    start: int
    end: int
    negated: bool = False
    locations: list[str] = field(default_factory=list)


def _find_mentions(tokens: Sequence[str], pathologies: Iterable[str]) -> list[_Mention]:
    mentions = []
    for pathology in pathologies:
        terms = sorted((t.split() for t in PATHOLOGY_TERMS[pathology]), key=len, reverse=True)
        taken: set[int] = set()
        for i in range(len(tokens)):
            for words in terms:
                span = range(i, i + len(words))
                if list(tokens[i : i + len(words)]) == words and not taken.intersection(span):
                    mentions.append(_Mention(pathology, i, i + len(words)))
                    taken.update(span)
                    break
    return mentions


def _contains(tokens: Sequence[str], phrase: str) -> list[int]:
    words = phrase.split()
    return [i for i in range(len(tokens) - len(words) + 1) if list(tokens[i : i + len(words)]) == words]


def _negated(tokens: Sequence[str], mention: _Mention) -> bool:
    """A negation cue before the mention in its clause, or a resolution cue after it."""
    start = mention.start
    while start > 0 and tokens[start - 1] not in CLAUSE_BREAKS:
        start -= 1
    end = mention.end
    while end < len(tokens) and tokens[end] not in CLAUSE_BREAKS and tokens[end] != ",":
        end += 1
    before, after = list(tokens[start : mention.start]), list(tokens[mention.end : end])
    masked = set()
    for phrase in NOT_NEGATION:
        for i in _contains(before, phrase):
            masked.update(range(i, i + len(phrase.split())))
    cue_before = any(i not in masked for phrase in NEGATION_BEFORE for i in _contains(before, phrase))
    cue_after = any(_contains(after, phrase) for phrase in NEGATION_AFTER)
    return cue_before or cue_after


def _segments(tokens: Sequence[str]) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for i, token in enumerate(tokens):
        if token in SEPARATORS:
            if i > start:
                bounds.append((start, i))
            start = i + 1
    if start < len(tokens):
        bounds.append((start, len(tokens)))
    return bounds


def _segment_locations(tokens: Sequence[str], inherited_side: str | None) -> tuple[list[str], str | None]:
    """Locations in one segment, and the last side it names (for the next segment)."""
    sides = [(i, SIDE_WORDS[t]) for i, t in enumerate(tokens) if t in SIDE_WORDS]
    zones = [(i, *ZONE_WORDS[t]) for i, t in enumerate(tokens) if t in ZONE_WORDS]
    plural_anatomy = any(t in PLURAL_ANATOMY for t in tokens)
    specials = [i for i, t in enumerate(tokens) if t in SPECIAL_WORDS]
    found = [SPECIAL_WORDS[tokens[i]] for i in specials]
    # a side word right before a special word is part of it ("left retrocardiac")
    sides = [(i, side) for i, side in sides if not any(0 < j - i <= 2 for j in specials)]
    paired: set[int] = set()
    for i, side in sides:
        free = [z for z in zones if z[0] not in paired]
        if free:
            j, zone, _ = min(free, key=lambda z: abs(z[0] - i))
            if abs(j - i) <= 5:
                paired.add(j)
                found.append(_side_zone(side, zone))
                continue
        found.append(_side_zone(side, ""))
    for j, zone, plural in zones:
        if j in paired:
            continue
        if plural or (plural_anatomy and inherited_side is None):
            found.append(_side_zone("bilateral", zone))
        elif inherited_side is not None and zone != "pleural":  # "pleural" alone is part of a name
            found.append(_side_zone(inherited_side, zone))
        elif zone == "middle" and tokens[j] in ("perihilar", "hilar"):
            found.append("bilateral middle")
    last_side = sides[-1][1] if sides else inherited_side
    return [loc for loc in found if loc in LOCATIONS], last_side


def merge_locations(locations: Iterable[str]) -> list[str]:
    """Deduplicate (first-seen order) and merge left X + right X into bilateral X (SPEC 4.2)."""
    found = list(dict.fromkeys(locations))
    merged: list[str] = []
    for loc in found:
        side, _, zone = loc.partition(" ")
        if side in ("left", "right"):
            other = _side_zone("right" if side == "left" else "left", zone)
            if other in found:
                loc = _side_zone("bilateral", zone)
        if loc not in merged:
            merged.append(loc)
    return merged


def sentence_findings(sentence: str, pathologies: Iterable[str] = PATHOLOGIES) -> dict[str, list[str]]:
    """{pathology: locations} for the pathologies the sentence mentions without negation or resolution."""
    wanted = set(pathologies)
    tokens = _tokens(sentence)
    # every pathology's mentions take part in attaching locations; only the wanted ones are returned
    mentions = [m for m in _find_mentions(tokens, PATHOLOGIES) if not _negated(tokens, m)]
    if not any(m.pathology in wanted for m in mentions):
        return {}
    segments = _segments(tokens)
    seg_locations, seg_mentions = [], []
    side = None
    for start, end in segments:
        locs, side = _segment_locations(tokens[start:end], side)
        seg_locations.append(locs)
        seg_mentions.append([m for m in mentions if start <= m.start < end])
    for k, ((start, _), locs, here) in enumerate(zip(segments, seg_locations, seg_mentions, strict=True)):
        if here and not locs and k > 0 and HEDGES.intersection(tokens[max(0, start - 2) : start + 1]):
            locs = seg_locations[k - 1]
        if here:
            for m in here:
                m.locations.extend(locs)
        elif locs:
            before = [j for j in range(k - 1, -1, -1) if seg_mentions[j]]
            after = [j for j in range(k + 1, len(segments)) if seg_mentions[j]]
            target = before[0] if before else (after[0] if after else None)
            if target is not None:
                for m in seg_mentions[target]:
                    m.locations.extend(locs)
    findings: dict[str, list[str]] = {}
    for m in mentions:
        if m.pathology in wanted:
            findings.setdefault(m.pathology, []).extend(m.locations)
    for pathology, locs in findings.items():
        if pathology == "Cardiomegaly":
            findings[pathology] = ["cardiomegaly"]
        elif not locs and "pulmonary" in tokens:
            findings[pathology] = ["pulmonary"]
        else:
            findings[pathology] = merge_locations(locs)
    return findings


def anatomy_locations(sentence: str) -> list[str]:
    """Every location the sentence names, whatever finding it belongs to, merged; "pulmonary" when it names
    no other. For sentences known to describe one finding (MS-CXR's)."""
    tokens = _tokens(sentence)
    found, side = [], None
    for start, end in _segments(tokens):
        locs, side = _segment_locations(tokens[start:end], side)
        found.extend(locs)
    if not found and "pulmonary" in tokens:
        found = ["pulmonary"]
    return merge_locations(found)
