"""Visit numbers keep their visit across protocol versions (the contract: codes keep their meaning, never
renumber); SDTM's VISITNUM depends on it."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.builders import protocol, visit
from trialcoord.scheduling.rules.protocol import renumbered

BASE = protocol(visit("V1"), visit("V2", offset="14d"), visit("V3", offset="28d"))


def test_a_version_keeping_every_number_has_no_problem():
    added = replace(
        protocol(visit("V1"), visit("V2", offset="14d"), visit("V3", offset="28d"), visit("V4", offset="42d")),
        version="2.0",
    )
    assert renumbered([BASE], added) == []


def test_found_a_new_visit_taking_a_removed_visits_number_is_named():
    # V3 removed and V4 added in its place: by position V4 would be number 3, V3's
    swapped = replace(protocol(visit("V1"), visit("V2", offset="14d"), visit("V4", offset="42d")), version="2.0")
    assert renumbered([BASE], swapped) == [
        "visit V4 takes number 3, which is V3's in version 1.0; give V4 a number of its own (`number:`)"
    ]


def test_a_visit_moved_to_another_number_is_named():
    moved = replace(protocol(visit("V2", offset="14d"), visit("V1"), visit("V3", offset="28d")), version="2.0")
    assert renumbered([BASE], moved) == [
        "visit V2 has number 1 here but 2 in version 1.0; visit numbers never change across versions",
        "visit V1 has number 2 here but 1 in version 1.0; visit numbers never change across versions",
    ]
