"""One table per phrase kind of docs/anatomy.md, section 2.5, in the style of real reports; each row gives every
finding of the sentence, so a location given to the wrong finding fails too."""

import pytest

from cxrbench.anatomy.rules import (
    anatomy_locations,
    find_mentions,
    findings,
    merge_locations,
    pathologies_named,
    phrase_locations,
    segment,
    tokenize,
)


def _check(sentence, expected):
    got = findings(sentence)
    assert {p: sorted(locs) for p, locs in got.items()} == {p: sorted(locs) for p, locs in expected.items()}


LOCATION_AFTER_THE_FINDING = [
    (
        "Patchy atelectasis and airspace disease is present in the left base.",
        {"Atelectasis": ["left base"], "Lung Opacity": ["left base"]},
    ),
    (
        "Atelectasis and small effusion at the right base.",
        {"Atelectasis": ["right base"], "Pleural Effusion": ["right base"]},
    ),
    (
        "Subsegmental atelectasis, consolidation or aspiration in the right lower lobe.",
        {"Atelectasis": ["right lower"], "Consolidation": ["right lower"], "Pneumonia": ["right lower"]},
    ),
    (
        "Atelectasis versus pneumonia in the left lower lobe.",
        {"Atelectasis": ["left lower"], "Pneumonia": ["left lower"]},
    ),
    # the location after the second finding is not shared with a first finding that has its own
    (
        "Right upper lobe collapse and opacity in the left lower lobe.",
        {"Atelectasis": ["right upper"], "Lung Opacity": ["left lower"]},
    ),
]


@pytest.mark.parametrize(("sentence", "expected"), LOCATION_AFTER_THE_FINDING)
def test_a_location_after_the_findings_belongs_to_all_of_them(sentence, expected):
    _check(sentence, expected)


SHARED_LOCATION = [
    (
        "Left basilar consolidation and pleural effusions.",
        {"Consolidation": ["left base"], "Pneumonia": ["left base"], "Pleural Effusion": ["left base"]},
    ),
    ("Right lower lobe opacity and atelectasis.", {"Lung Opacity": ["right lower"], "Atelectasis": ["right lower"]}),
    (
        "Opacities in the right upper and lower lobes.",
        {"Lung Opacity": ["right upper", "right lower"]},
    ),
    ("Small left apical and basilar pneumothorax.", {"Pneumothorax": ["left apical", "left base"]}),
    ("Moderate left and small right pleural effusions.", {"Pleural Effusion": ["bilateral pleural"]}),
    # a conjunct with words of its own ("mild") or a diffuse finding (edema) keeps to itself
    ("Right lower lobe opacity and mild atelectasis.", {"Lung Opacity": ["right lower"], "Atelectasis": []}),
    ("Right lower lobe pneumonia and edema.", {"Pneumonia": ["right lower"], "Edema": []}),
    (
        "Left basilar opacity and mild pulmonary edema.",
        {"Lung Opacity": ["left base"], "Edema": ["pulmonary"]},
    ),
]


@pytest.mark.parametrize(("sentence", "expected"), SHARED_LOCATION)
def test_coordinated_findings_and_zones_share_a_location(sentence, expected):
    _check(sentence, expected)


ANCHORED = [
    (
        "Right pleural effusion with adjacent atelectasis.",
        {"Pleural Effusion": ["right pleural"], "Atelectasis": ["right pleural"]},
    ),
    (
        "Opacities in the left lung base, likely atelectasis.",
        {"Lung Opacity": ["left base"], "Atelectasis": ["left base"]},
    ),
    (
        "Increased retrocardiac opacity, which may represent atelectasis or pneumonia.",
        {"Lung Opacity": ["left lower"], "Atelectasis": ["left lower"], "Pneumonia": ["left lower"]},
    ),
    (
        "Hazy opacity at the right base, compatible with a small layering effusion.",
        {"Lung Opacity": ["right base"], "Pleural Effusion": ["right base"]},
    ),
    (
        "Moderate left effusion with adjacent basilar atelectasis.",
        {"Pleural Effusion": ["left"], "Atelectasis": ["left base"]},
    ),
    (
        "Diffuse bilateral interstitial opacities, likely edema.",
        {"Lung Opacity": ["bilateral"], "Edema": ["bilateral"]},
    ),
    # an interpretation of a finding placed by a following segment ("in the right upper and lower lobes")
    (
        "Opacity in the right upper and lower lobes, concerning for infection.",
        {"Lung Opacity": ["right upper", "right lower"], "Pneumonia": ["right upper", "right lower"]},
    ),
]


@pytest.mark.parametrize(("sentence", "expected"), ANCHORED)
def test_a_finding_anchored_to_another_takes_its_location(sentence, expected):
    _check(sentence, expected)


UNSIDED_ZONE = [
    ("Basilar atelectasis.", {"Atelectasis": ["bibasilar"]}),
    ("Bibasilar opacities.", {"Lung Opacity": ["bibasilar"]}),
    ("Mild basal atelectasis is again seen.", {"Atelectasis": ["bibasilar"]}),
    ("Minimal atelectasis at the lung bases.", {"Atelectasis": ["bibasilar"]}),
    ("Patchy opacities in the lower lobes.", {"Lung Opacity": ["bilateral lower"]}),
    ("Mild perihilar edema.", {"Edema": ["bilateral middle"]}),
    ("Blunting of the costophrenic angles suggests small effusions.", {"Pleural Effusion": ["bilateral costophrenic"]}),
    # a basilar finding after a sided one is still both bases; a singular "base" or "apical" names no side
    (
        "Right lower lobe pneumonia and basilar atelectasis.",
        {"Pneumonia": ["right lower"], "Atelectasis": ["bibasilar"]},
    ),
    ("Atelectasis at the lung base.", {"Atelectasis": []}),
    ("Tiny apical pneumothorax.", {"Pneumothorax": []}),
]


@pytest.mark.parametrize(("sentence", "expected"), UNSIDED_ZONE)
def test_an_unsided_basal_or_plural_zone_is_bilateral(sentence, expected):
    _check(sentence, expected)


COMPARATIVES = [
    ("Small effusions, left greater than right.", {"Pleural Effusion": ["bilateral"]}),
    ("Bilateral pleural effusions, R>L.", {"Pleural Effusion": ["bilateral pleural"]}),
    ("Bibasilar atelectasis, right slightly greater than left.", {"Atelectasis": ["bibasilar"]}),
    ("Right greater than left basilar opacities.", {"Lung Opacity": ["bibasilar"]}),
    (
        "Patchy airspace opacities, left more so than right, could represent pneumonia.",
        {"Lung Opacity": ["bilateral"], "Pneumonia": ["bilateral"]},
    ),
]


@pytest.mark.parametrize(("sentence", "expected"), COMPARATIVES)
def test_a_comparison_of_sides_is_bilateral(sentence, expected):
    _check(sentence, expected)


DEVICE_OR_FILM = [
    (
        "Small right pleural effusion seen only on the left lateral decubitus film.",
        {"Pleural Effusion": ["right pleural"]},
    ),
    ("Right PICC tip in the SVC with left lower lobe atelectasis.", {"Atelectasis": ["left lower"]}),
    ("Right IJ catheter in place and mild bibasilar atelectasis.", {"Atelectasis": ["bibasilar"]}),
    ("Left-sided pacemaker leads are unchanged, with mild pulmonary edema.", {"Edema": ["pulmonary"]}),
    ("A right chest tube is in place, with a tiny residual apical pneumothorax.", {"Pneumothorax": []}),
    ("Layering effusion on the right lateral decubitus view.", {"Pleural Effusion": []}),
    # a lung location next to a device word further away than 3 words is kept
    ("Small left apical pneumothorax after removal of the chest tube.", {"Pneumothorax": ["left apical"]}),
]


@pytest.mark.parametrize(("sentence", "expected"), DEVICE_OR_FILM)
def test_a_side_naming_a_device_or_a_film_is_not_a_location(sentence, expected):
    _check(sentence, expected)


NEGATION_KEEPS_ITS_LOCATIONS = [
    ("Left lower lobe atelectasis; no right effusion.", {"Atelectasis": ["left lower"]}),
    ("Left lower lobe atelectasis, without effusion on the right.", {"Atelectasis": ["left lower"]}),
    ("There is no pneumothorax, and there is a small left effusion.", {"Pleural Effusion": ["left"]}),
    ("The left effusion is smaller, and the right effusion has resolved.", {"Pleural Effusion": ["left"]}),
    ("Right lower lobe atelectasis and left lower lobe nodule.", {"Atelectasis": ["right lower"]}),
    ("No change in the moderate right pleural effusion.", {"Pleural Effusion": ["right pleural"]}),
    ("The left lower lobe is not well seen due to a moderate effusion.", {"Pleural Effusion": ["left lower"]}),
]


@pytest.mark.parametrize(("sentence", "expected"), NEGATION_KEEPS_ITS_LOCATIONS)
def test_negated_findings_and_other_findings_keep_their_locations(sentence, expected):
    _check(sentence, expected)


def test_the_steps_one_by_one():
    """segment keeps each segment's joining words; find_mentions finds every pathology's terms."""
    tokens = tokenize("Left greater than right effusions, likely with adjacent atelectasis; no pneumothorax.")
    assert tokens[:2] == ["bilateral", "effusions"]
    segments = segment(tokens)
    assert [(s.words, sorted(s.joiners)) for s in segments] == [
        (("bilateral", "effusions"), []),
        (("likely",), [","]),
        (("adjacent", "atelectasis"), ["with"]),
        (("no", "pneumothorax"), [";"]),
    ]
    assert [m.pathology for m in find_mentions(tokenize("Right lower lobe consolidation."))] == [
        "Pneumonia",
        "Consolidation",
    ]
    assert tokenize("Heart is moderately enlarged, compatible with CHF.") == [
        "heart",
        "is",
        "enlarged",
        ",",
        "compatible_with",
        "chf",
    ]


def test_public_helpers_for_other_extractors():
    """The helpers RadGraph's wrapper uses: anatomy phrases and observation phrases onto the vocabulary."""
    assert phrase_locations("left lower lobe") == ["left lower"]
    assert phrase_locations("bases") == ["bibasilar"]
    assert phrase_locations("basilar") == ["bibasilar"]
    assert phrase_locations("pulmonary") == ["pulmonary"]
    assert phrase_locations("lung") == []
    assert phrase_locations("right PICC") == []
    assert pathologies_named("pleural effusions") == ["Pleural Effusion"]
    assert pathologies_named("consolidation", ["Consolidation", "Atelectasis"]) == ["Consolidation"]
    assert pathologies_named("no") == []


def test_anatomy_locations_skip_devices_and_films():
    assert anatomy_locations("Right PICC; left basilar opacity.") == ["left base"]
    assert anatomy_locations("Moderate pulmonary edema.") == ["pulmonary"]


def test_merge_drops_a_bare_side_a_zone_covers():
    assert merge_locations(["left", "left lower"]) == ["left lower"]
    assert merge_locations(["bilateral", "bilateral pleural"]) == ["bilateral pleural"]
    assert merge_locations(["bilateral", "left base", "right base"]) == ["bibasilar"]
    assert merge_locations(["left", "lingular"]) == ["lingular"]
    assert merge_locations(["left", "right lower"]) == ["left", "right lower"]
    assert merge_locations(["bilateral", "left lower"]) == ["bilateral", "left lower"]
    assert merge_locations(["right", "pulmonary"]) == ["right", "pulmonary"]
