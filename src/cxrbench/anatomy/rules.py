"""The rule-based anatomy extractor, the offline default: a report sentence -> {pathology: locations}.

docs/anatomy.md, section 2, states every rule with examples. A sentence goes through five steps, one function
each (`findings` runs them):

1. `segment`: `tokenize` lower-cases the words and rewrites a few phrases ("left and right", "left greater than
   right" -> "bilateral"); the words are cut into segments at commas, semicolons and joining words, and each
   segment keeps the joining words it started with.
2. `find_mentions`: the pathology terms of each segment, and terms of other findings (nodule, scarring, ...),
   which keep their locations to themselves.
3. `attach_locations`: a segment's own locations (`read_places`: a side paired with a zone, devices and films
   left out) go to its mentions; a segment without a mention gives its locations to the previous finding; then
   a finding still without a location takes a neighbour's: an interpretation ("..., likely atelectasis") and an
   adjacent finding ("with adjacent atelectasis") the previous finding's, a bare conjunct ("left basilar
   consolidation and pleural effusions") the previous one's, a finding followed by "and ... in the left base"
   that location.
4. `negate`: a mention with a negation cue before it in its clause, or a resolution cue after it, is dropped.
5. `merge_locations`: per pathology, a bare side covered by a zone of that side is dropped and left X + right X
   become bilateral X.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from cxrbench.anatomy.vocabulary import PATHOLOGIES, SIDED_LOCATIONS, SIDES, location_name

SIDE_WORDS = {
    "left": "left",
    "right": "right",
    "bilateral": "bilateral",
    "bilaterally": "bilateral",
    "both": "bilateral",
}
ZONE_WORDS = {
    "apex": "apical",
    "apices": "apical",
    "apical": "apical",
    "apically": "apical",
    "upper": "upper",
    "mid": "middle",
    "middle": "middle",
    "midlung": "middle",
    "perihilar": "middle",
    "hilar": "middle",
    "lower": "lower",
    "infrahilar": "lower",
    "base": "base",
    "bases": "base",
    "basilar": "base",
    "basal": "base",
    "basally": "base",
    "basilarly": "base",
    "costophrenic": "costophrenic",
    "pleural": "pleural",
}
# Zone words that, with no side of their own, name both sides: plurals always ("the bases"), the adjectives
# only when no side comes from a coordinated zone ("left apical and basilar pneumothorax" is left base).
PLURAL_ZONE_WORDS = {"apices", "bases"}
BOTH_SIDES_ZONE_WORDS = {"basilar", "basal", "basally", "basilarly", "perihilar", "hilar"}
# A zone word in a segment that names several of these, with no side, is bilateral ("the lower lobes").
PLURAL_ANATOMY = {"lungs", "lobes", "hemithoraces", "zones", "fields", "angles"}
# Words that are a whole location; a side word just before one is part of it ("left retrocardiac").
SPECIAL_WORDS = {
    "bibasilar": "bibasilar",
    "bibasal": "bibasilar",
    "bibasally": "bibasilar",
    "biapical": "bilateral apical",
    "retrocardiac": "left lower",
    "lingula": "lingular",
    "lingular": "lingular",
}
# A side word with one of these within 3 words of it (in its segment) names a device, a film or a structure
# outside the lungs, not where a finding is: "right PICC", "the left lateral decubitus film", "right IJ line".
DEVICE_OR_VIEW_WORDS = {
    "picc",
    "catheter",
    "tube",
    "drain",
    "port",
    "pacemaker",
    "pacer",
    "icd",
    "aicd",
    "defibrillator",
    "lead",
    "leads",
    "wire",
    "wires",
    "stent",
    "clip",
    "clips",
    "sheath",
    "ij",
    "jugular",
    "subclavian",
    "brachiocephalic",
    "decubitus",
    "film",
    "view",
    "radiograph",
    "projection",
    "shoulder",
    "arm",
    "humerus",
    "humeral",
    "clavicle",
    "clavicular",
    "scapula",
    "breast",
    "nipple",
    "mastectomy",
    "rib",
    "ribs",
    "neck",
    "wall",
}
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
        "enlargement of the heart",
        "enlargement of the cardiac silhouette",
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
# Findings outside the 8: they are never returned, but the locations of their segments stay theirs.
OTHER_FINDING = "other finding"
OTHER_FINDING_TERMS = (
    "nodule",
    "nodules",
    "mass",
    "masses",
    "granuloma",
    "granulomas",
    "scarring",
    "scar",
    "thickening",
    "fracture",
    "fractures",
    "calcification",
    "calcifications",
    "emphysema",
    "bulla",
    "bullae",
    "lesion",
    "lesions",
    "hernia",
    "aspiration",
)
TERMS: dict[str, tuple[str, ...]] = {**PATHOLOGY_TERMS, OTHER_FINDING: OTHER_FINDING_TERMS}

SEPARATORS = {
    ",",
    ";",
    ":",
    "and",
    "or",
    "versus",
    "vs",
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
# Joining words that end a clause: a negation before them does not reach past them.
CLAUSE_BREAKS = {";", ":", "with", "but", "however", "although", "though", "whereas", "while", "which"}
# Alternatives name one finding twice ("atelectasis or pneumonia"): the second takes the first one's location.
ALTERNATIVE_JOINERS = {"or", "versus", "vs"}
# A bare conjunct after these shares the previous finding's location ("consolidation and pleural effusions").
COORDINATING_JOINERS = {"and", "plus", "with"}
# A finding followed, through these, by one located after its mention shares that location.
LIST_JOINERS = {",", "and", "or", "versus", "vs"}
# Words a bare conjunct may have before its finding ("and the pleural effusion").
BARE_WORDS = {"a", "an", "the", "pleural"}
# Words before a finding that make it an interpretation of the previous finding (", likely atelectasis").
HEDGES = {
    "likely",
    "probably",
    "possibly",
    "possible",
    "presumably",
    "consistent_with",
    "compatible_with",
    "keeping_with",
    "concerning",
    "suggestive",
    "suggesting",
    "represent",
    "represents",
    "representing",
    "reflect",
    "reflects",
    "reflecting",
    "may",
    "could",
    "due",
    "worrisome",
    "suspicious",
    "favor",
    "favored",
    "most",
}
# Words before a finding that place it next to the previous finding ("with adjacent atelectasis").
ADJACENCY = {"adjacent", "associated", "underlying", "overlying", "surrounding", "accompanying", "compressive"}
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
# Phrases with a negation word that say nothing changed or that a region is hidden, not that a finding is absent.
NOT_NEGATION = (
    "not well seen",
    "not well visualized",
    "no change",
    "no significant change",
    "no interval change",
    "not changed",
    "no substantial change",
    "no definite change",
    "not significantly changed",
)
_SIDE = r"(?:left|right|l|r)"
_MORE = r"(?:(?:slightly|somewhat|much|mildly)\s+)?(?:greater|more|larger|worse|bigger)(?:\s+so)?"
_MORE_THAN = rf"(?:\s*>\s*|\s+{_MORE}\s+than\s+)"
# (pattern, replacement) applied to the lower-cased text, in order
PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:left and right|right and left)\b"), "bilateral"),
    (re.compile(rf"\b{_SIDE}(?:\s+side)?{_MORE_THAN}(?:the\s+)?{_SIDE}\b"), "bilateral"),  # a comparison of sides
    (re.compile(r"\b(compatible|consistent|keeping) with\b"), r"\1_with"),  # a hedge, not a joining "with"
    (re.compile(r"\b(?:along|together) with\b"), "with"),
    (re.compile(r"\bas well as\b"), "and"),
    (re.compile(r"\b(?:mildly|moderately|severely|markedly|slightly|minimally) enlarged\b"), "enlarged"),
)
_TOKEN = re.compile(r"[a-z0-9_]+|[,;:]")


@dataclass
class Mention:
    """A finding term in a segment: words `start:end`; its locations once attached, and whether it is negated."""

    pathology: str
    start: int
    end: int
    locations: list[str] = field(default_factory=list)
    negated: bool = False


@dataclass(frozen=True)
class Place:
    """A location a segment names, at the segment's word `position` (its side's or zone's, whichever is first)."""

    position: int
    location: str


@dataclass
class Segment:
    """Words between two joining words; `joiners` are the separators just before it (empty for the first)."""

    words: tuple[str, ...]
    joiners: frozenset[str] = frozenset()
    mentions: list[Mention] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)
    # its mentions' locations come from words after the first mention ("atelectasis in the left base")
    located_after: bool = False
    # for a segment without a mention: the segment its places went to
    gave_to: Segment | None = None

    @property
    def lead(self) -> tuple[str, ...]:
        """The words before its first mention (all of them without one)."""
        return self.words[: self.mentions[0].start] if self.mentions else self.words

    @property
    def starts_clause(self) -> bool:
        return bool(self.joiners & CLAUSE_BREAKS) or self.words[0] == "there"

    @property
    def ends_in_place(self) -> bool:
        """It names a location after its last mention ("right upper", "opacities in the right upper")."""
        last_mention = max((m.start for m in self.mentions), default=-1)
        return bool(self.places) and self.places[-1].position > last_mention

    def locations(self) -> list[str]:
        """Its mentions' locations, or, for a segment without a mention, those of the segment it gave them to."""
        if not self.mentions:
            return self.gave_to.locations() if self.gave_to else []
        return list(dict.fromkeys(loc for m in self.mentions for loc in m.locations if loc != "pulmonary"))


# --- step 1: words and segments ---------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lower-case words and `, ; :` of a text; hyphens and slashes split words; `PHRASES` are rewritten."""
    text = " ".join(text.lower().replace("-", " ").replace("/", " ").split())
    for pattern, replacement in PHRASES:
        text = pattern.sub(replacement, text)
    return _TOKEN.findall(text)


def segment(tokens: Sequence[str]) -> list[Segment]:
    """Cut the words at `SEPARATORS`; each segment records the separators before it."""
    segments: list[Segment] = []
    words: list[str] = []
    joiners: set[str] = set()
    for token in tokens:
        if token not in SEPARATORS:
            words.append(token)
            continue
        if words:
            segments.append(Segment(tuple(words), frozenset(joiners)))
            words, joiners = [], set()
        joiners.add(token)
    if words:
        segments.append(Segment(tuple(words), frozenset(joiners)))
    return segments


# --- step 2: mentions -------------------------------------------------------------------------------------------


def find_mentions(words: Sequence[str]) -> list[Mention]:
    """Every term of `TERMS` in the words, longest first, non-overlapping within one pathology, in word order."""
    mentions = []
    for pathology, terms in TERMS.items():
        phrases = sorted((tuple(term.split()) for term in terms), key=len, reverse=True)
        taken: set[int] = set()
        for start in range(len(words)):
            for phrase in phrases:
                span = range(start, start + len(phrase))
                if tuple(words[span.start : span.stop]) == phrase and taken.isdisjoint(span):
                    mentions.append(Mention(pathology, span.start, span.stop))
                    taken.update(span)
                    break
    return sorted(mentions, key=lambda m: m.start)


def pathologies_named(text: str, pathologies: Iterable[str] = PATHOLOGIES) -> list[str]:
    """The pathologies (of `pathologies`, in that order) whose terms occur in a short phrase such as a RadGraph
    observation ("pleural effusions" -> Pleural Effusion); no negation is read."""
    named = {m.pathology for m in find_mentions(tokenize(text))}
    return [p for p in pathologies if p in named]


# --- step 3: locations ------------------------------------------------------------------------------------------


def _names_device_or_view(words: Sequence[str], i: int) -> bool:
    return not DEVICE_OR_VIEW_WORDS.isdisjoint(words[max(0, i - 3) : i + 4])


def _nearest_zone(i: int, zones: Sequence[int], taken: set[int]) -> int | None:
    """The position of the free zone word nearest to the side word at `i`, within 5 words."""
    free = [j for j in zones if j not in taken and abs(j - i) <= 5]
    return min(free, key=lambda j: abs(j - i)) if free else None


def _unsided_zone_side(word: str, inherited_side: str | None, plural_anatomy: bool) -> str | None:
    """The side of a zone word that no side word pairs with, or None when it names no location."""
    zone = ZONE_WORDS[word]
    if word in PLURAL_ZONE_WORDS:
        return "bilateral"
    if zone == "pleural":  # "pleural" without its own side is part of a name ("pleural effusion")
        return None
    if inherited_side is not None:
        return inherited_side
    if word in BOTH_SIDES_ZONE_WORDS or plural_anatomy:
        return "bilateral"
    return None


def read_places(words: Sequence[str], inherited_side: str | None = None) -> list[Place]:
    """The locations the words name, in word order: each side word with the nearest free zone word within 5 words,
    or alone; special words; zone words without a side (`_unsided_zone_side`; `inherited_side` comes from a
    coordinated zone: "right upper and lower lobes"). A side word naming a device or a film is skipped."""
    specials = [Place(i, SPECIAL_WORDS[w]) for i, w in enumerate(words) if w in SPECIAL_WORDS]
    sides = [
        (i, SIDE_WORDS[w])
        for i, w in enumerate(words)
        if w in SIDE_WORDS
        and not any(0 < s.position - i <= 2 for s in specials)
        and not _names_device_or_view(words, i)
    ]
    zones = [j for j, w in enumerate(words) if w in ZONE_WORDS]
    places = list(specials)
    paired: set[int] = set()
    for i, side in sides:
        j = _nearest_zone(i, zones, paired)
        if j is None:
            places.append(Place(i, location_name(side, "")))
        else:
            paired.add(j)
            places.append(Place(min(i, j), location_name(side, ZONE_WORDS[words[j]])))
    plural_anatomy = not PLURAL_ANATOMY.isdisjoint(words)
    for j in zones:
        side = None if j in paired else _unsided_zone_side(words[j], inherited_side, plural_anatomy)
        if side is not None:
            places.append(Place(j, location_name(side, ZONE_WORDS[words[j]])))
    return sorted(places, key=lambda p: p.position)


def phrase_locations(text: str) -> list[str]:
    """The locations a short anatomy phrase names, such as a RadGraph anatomy entity with its modifiers
    ("left lower lobe" -> ["left lower"], "bases" -> ["bibasilar"], "pulmonary" -> ["pulmonary"]), merged."""
    words = tokenize(text)
    locations = [p.location for p in read_places(words)]
    if not locations and "pulmonary" in words:
        locations = ["pulmonary"]
    return merge_locations(locations)


def _side_of(location: str) -> str | None:
    return SIDED_LOCATIONS[location][0] if location in SIDED_LOCATIONS else None


def _anchored(seg: Segment) -> bool:
    """Its finding sits next to the previous one: "with (adjacent) atelectasis", "and associated atelectasis"."""
    return "with" in seg.joiners or not ADJACENCY.isdisjoint(seg.lead)


def _interprets(seg: Segment) -> bool:
    """Its finding names the previous one again: ", likely atelectasis", "or pneumonia"."""
    return bool(seg.joiners & ALTERNATIVE_JOINERS) or not HEDGES.isdisjoint(seg.lead)


def _bare_conjunct(seg: Segment) -> bool:
    """Its finding stands alone after "and": "... and pleural effusions"."""
    return bool(seg.joiners & COORDINATING_JOINERS) and set(seg.lead) <= BARE_WORDS


def _zone_of(location: str) -> str:
    return SIDED_LOCATIONS[location][1] if location in SIDED_LOCATIONS else ""


def _read_own_places(segments: Sequence[Segment]) -> None:
    """Each segment's places. A zone without a side takes the side of the previous segment's last place when that
    segment ends in it ("right upper and lower lobes") or this one is anchored to it ("left effusion with adjacent
    basilar atelectasis")."""
    previous: Segment | None = None
    for seg in segments:
        inherited = None
        if previous is not None and previous.places and (previous.ends_in_place or _anchored(seg)):
            inherited = _side_of(previous.places[-1].location)
        seg.places = read_places(seg.words, inherited)
        previous = seg


def _borrow_zones(segments: Sequence[Segment]) -> None:
    """Sides without a zone, in a segment without a finding, take the zone of the first place of the next segment
    when "and" / "or" joins them: "moderate left and small right pleural effusions" (left pleural, right pleural)."""
    for seg, nxt in pairwise(segments):
        if seg.mentions or not seg.places or not nxt.places or not nxt.joiners & {"and", "or"}:
            continue
        zone = _zone_of(nxt.places[0].location)
        if zone and all(p.location in SIDES for p in seg.places):
            seg.places = [Place(p.position, location_name(p.location, zone)) for p in seg.places]


def _give_places_without_mention(segments: Sequence[Segment]) -> None:
    """A segment without a mention gives its places to the previous segment with one, else to the next."""
    for k, seg in enumerate(segments):
        if seg.mentions or not seg.places:
            continue
        before = [s for s in segments[:k] if s.mentions]
        after = [s for s in segments[k + 1 :] if s.mentions]
        target = before[-1] if before else (after[0] if after else None)
        if target is None:
            continue
        for m in target.mentions:
            m.locations.extend(p.location for p in seg.places)
        target.located_after = target.located_after or bool(before)
        seg.gave_to = target


def _takes_no_neighbour(m: Mention) -> bool:
    return bool(m.locations) or m.pathology == "Cardiomegaly"


def _share_forward(segments: Sequence[Segment]) -> None:
    """A finding without a location takes the previous segment's: always as an interpretation, and, except for
    Edema (a diffuse finding), as an anchored finding or a bare conjunct."""
    for previous, seg in pairwise(segments):
        source = previous.locations()
        interprets, joins = _interprets(seg), _anchored(seg) or _bare_conjunct(seg)
        for m in seg.mentions:
            if not _takes_no_neighbour(m) and (interprets or (joins and m.pathology != "Edema")):
                m.locations.extend(source)


def _share_backward(segments: Sequence[Segment]) -> None:
    """A finding without a location, listed before one located after its mention, shares that location:
    "patchy atelectasis and airspace disease is present in the left base"."""
    for seg, nxt in reversed(list(pairwise(segments))):
        if not (nxt.joiners & LIST_JOINERS and nxt.mentions and nxt.located_after):
            continue
        waiting = [m for m in seg.mentions if not _takes_no_neighbour(m)]
        for m in waiting:
            m.locations.extend(nxt.locations())
        seg.located_after = seg.located_after or bool(waiting)


def attach_locations(segments: Sequence[Segment]) -> None:
    """Step 3: fill each mention's `locations` (docs/anatomy.md, section 2.5)."""
    _read_own_places(segments)
    _borrow_zones(segments)
    for seg in segments:
        own = [p.location for p in seg.places]
        if not own and "pulmonary" in seg.words:  # "pulmonary edema": both lungs, never passed on
            own = ["pulmonary"]
        for m in seg.mentions:
            m.locations = list(own)
        seg.located_after = bool(seg.mentions and seg.places and seg.places[0].position > seg.mentions[0].start)
    _give_places_without_mention(segments)
    _share_forward(segments)
    _share_backward(segments)


# --- step 4: negation -------------------------------------------------------------------------------------------


def _has_cue(words: Sequence[str], cues: Iterable[str], ignore: Iterable[str] = ()) -> bool:
    text = f" {' '.join(words)} "
    for phrase in ignore:
        text = text.replace(f" {phrase} ", " | ")
    return any(f" {cue} " in text for cue in cues)


def negate(segments: Sequence[Segment]) -> None:
    """Step 4: mark a mention negated when its clause has a negation cue before it ("no", "without", "free of",
    but not "no change in") or a resolution cue after it, up to the next comma or clause break ("has resolved")."""
    for k, seg in enumerate(segments):
        start = max(j for j in range(k + 1) if j == 0 or segments[j].starts_clause)
        clause_before = [w for s in segments[start:k] for w in s.words]
        following = []
        for s in segments[k + 1 :]:
            if s.joiners & (CLAUSE_BREAKS | {","}) or s.starts_clause:
                break
            following.extend(s.words)
        for m in seg.mentions:
            before = clause_before + list(seg.words[: m.start])
            after = list(seg.words[m.end :]) + following
            m.negated = _has_cue(before, NEGATION_BEFORE, NOT_NEGATION) or _has_cue(after, NEGATION_AFTER)


# --- step 5: merge ----------------------------------------------------------------------------------------------


def _sides_covered(location: str) -> set[str]:
    """The lung sides a location with a zone lies on ("lingular" is left); none for a bare side or the rest."""
    if location == "lingular":
        return {"left"}
    side, zone = SIDED_LOCATIONS.get(location, ("", ""))
    if not zone:
        return set()
    return {"left", "right"} if side == "bilateral" else {side}


def merge_locations(locations: Iterable[str]) -> list[str]:
    """Deduplicate (first-seen order); drop a bare side ("left") when zoned locations cover that side ("left lower");
    then left X + right X -> bilateral X ("bilateral base" is "bibasilar"). docs/anatomy.md, section 2.7."""
    found = list(dict.fromkeys(locations))
    covered = set().union(*(_sides_covered(loc) for loc in found))
    bare = {"left": {"left"}, "right": {"right"}, "bilateral": {"left", "right"}}
    found = [loc for loc in found if not (loc in bare and bare[loc] <= covered)]
    merged: list[str] = []
    for loc in found:
        side, zone = SIDED_LOCATIONS.get(loc, ("", ""))
        other = {"left": "right", "right": "left"}.get(side)
        if other and location_name(other, zone) in found:
            loc = location_name("bilateral", zone)
        if loc not in merged:
            merged.append(loc)
    return merged


# --- the steps together -----------------------------------------------------------------------------------------


def _analyse(sentence: str) -> list[Segment]:
    segments = segment(tokenize(sentence))
    for seg in segments:
        seg.mentions = find_mentions(seg.words)
    attach_locations(segments)
    negate(segments)
    return segments


def findings(sentence: str, pathologies: Iterable[str] = PATHOLOGIES) -> dict[str, list[str]]:
    """{pathology: merged locations} for the pathologies the sentence mentions without negation or resolution
    (an empty list: mentioned, no location). Cardiomegaly's location is always "cardiomegaly"."""
    wanted = set(pathologies)
    found: dict[str, list[str]] = {}
    for seg in _analyse(sentence):
        for m in seg.mentions:
            if m.pathology in wanted and not m.negated:
                found.setdefault(m.pathology, []).extend(m.locations)
    return {p: ["cardiomegaly"] if p == "Cardiomegaly" else merge_locations(locs) for p, locs in found.items()}


def anatomy_locations(sentence: str) -> list[str]:
    """Every location the sentence names, whatever finding it belongs to, merged; "pulmonary" when it names no
    other. For sentences known to describe one finding (MS-CXR's)."""
    segments = segment(tokenize(sentence))
    for seg in segments:
        seg.mentions = find_mentions(seg.words)
    _read_own_places(segments)
    _borrow_zones(segments)
    found = [p.location for seg in segments for p in seg.places]
    if not found and "pulmonary" in (w for seg in segments for w in seg.words):
        found = ["pulmonary"]
    return merge_locations(found)
