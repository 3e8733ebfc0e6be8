"""The 8 pathologies, the 27 locations and the "{location} {pathology}" prompt format (docs/anatomy.md, section 1).

Radiological convention: the patient's RIGHT is on the IMAGE's LEFT.
"""

from __future__ import annotations

from collections.abc import Sequence

# Order of the published tables (docs/datasets.md, "mscxr and mscxr-loc": published sizes).
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
# The zones a side combines with; "" is the whole side ("left", "right", "bilateral").
ZONES: tuple[str, ...] = ("", "apical", "upper", "middle", "lower", "costophrenic", "pleural", "base")
AND = " <and> "


def location_name(side: str, zone: str) -> str:
    """The vocabulary's name of a side and a zone: "left lower", "right" (zone ""), "bibasilar" (bilateral base)."""
    if side == "bilateral" and zone == "base":
        return "bibasilar"
    return f"{side} {zone}".strip()


# location -> (side, zone) for the 24 side x zone locations
SIDED_LOCATIONS: dict[str, tuple[str, str]] = {location_name(s, z): (s, z) for s in SIDES for z in ZONES}
LOCATIONS: tuple[str, ...] = (*SIDED_LOCATIONS, "lingular", "cardiomegaly", "pulmonary")


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
    raise ValueError(
        f"{prompt!r} is not a '{{location}} {{pathology}}' prompt over the vocabulary of docs/anatomy.md, section 1"
    )
