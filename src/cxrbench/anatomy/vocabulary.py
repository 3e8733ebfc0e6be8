"""SPEC 4.1: the 8 pathologies, the 27 locations and the "{location} {pathology}" prompt format.

Radiological convention: the patient's RIGHT is on the IMAGE's LEFT.
"""

from __future__ import annotations

from collections.abc import Sequence

# Order of the published tables (SPEC 3 reference sizes).
PATHOLOGIES: tuple[str, ...] = (
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Atelectasis",
    "Edema",
    "Cardiomegaly",
    "Lung Opacity",
    "Pleural Effusion",
)

SIDES: tuple[str, ...] = ("left", "right", "bilateral")
ZONES: tuple[str, ...] = ("", "apical", "upper", "middle", "lower", "costophrenic", "pleural", "base")
AND = " <and> "


def _side_zone(side: str, zone: str) -> str:
    if side == "bilateral" and zone == "base":
        return "bibasilar"
    return f"{side} {zone}".strip()


LOCATIONS: tuple[str, ...] = (
    *(_side_zone(side, zone) for side in SIDES for zone in ZONES),
    "lingular",
    "cardiomegaly",
    "pulmonary",
)


def make_prompt(locations: Sequence[str], pathology: str) -> str:
    """'{location} {pathology}' in lower case; several locations joined with ' <and> '."""
    unknown = [loc for loc in locations if loc not in LOCATIONS]
    if unknown:
        raise ValueError(f"unknown location(s) {unknown}; known: {', '.join(LOCATIONS)}")
    if not locations:
        raise ValueError("a prompt needs at least one location")
    return f"{AND.join(locations)} {pathology}".lower()


def parse_prompt(prompt: str) -> tuple[list[str], str]:
    """Inverse of `make_prompt`: ('left lower <and> right lower', 'atelectasis') -> (locations, Pathology)."""
    text = " ".join(prompt.lower().split())
    for pathology in sorted(PATHOLOGIES, key=len, reverse=True):
        suffix = " " + pathology.lower()
        if text.endswith(suffix):
            locations = [loc.strip() for loc in text[: -len(suffix)].split(AND.strip())]
            if locations and all(loc in LOCATIONS for loc in locations):
                return locations, pathology
    raise ValueError(f"{prompt!r} is not a '{{location}} {{pathology}}' prompt over the SPEC 4.1 vocabulary")
