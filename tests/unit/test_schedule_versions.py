"""Protocol amendments take effect from their date, never backwards (issue 11, section 1).

A visit is judged by the version in force for the participant on the day it was done or, if not done, on
the day its window closes; visits a new version adds are expected only when their window closes on or after
the change date; visits it removes are not applicable from that date.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.unit.builders import protocol, visit
from trialcoord.scheduling.protocol_files import load_protocol
from trialcoord.scheduling.rules.schedule import evaluate, evaluate_judged

PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols" / "DEMO-001"
V1, V2 = load_protocol(PROTOCOLS / "1.0.yaml"), load_protocol(PROTOCOLS / "2.0.yaml")
DAY = timedelta(days=1)

# A DEMO-001 participant: randomised 2026-05-01, Week 2 (V3) on its target, Week 4 (V4) on 2026-05-29, so
# that Week 8 (V5) targets 2026-06-26 (1.0's window closes 2026-07-01, 2.0's 2026-07-03) and Week 12 (V6)
# 2026-07-24; V7, added by 2.0 four weeks after V6, closes 2026-08-28.
EVENTS = {"consent": date(2026, 4, 10), "randomization": date(2026, 5, 1), "first_dose": date(2026, 5, 1)}
ACTUALS = {
    "V1": date(2026, 4, 20),
    "V2": date(2026, 5, 1),
    "V3": date(2026, 5, 15),
    "V4": date(2026, 5, 29),
    "V5": date(2026, 7, 2),
    "V6": date(2026, 7, 24),
}
CHANGE = date(2026, 11, 1)
AS_OF = date(2026, 11, 2)


def rows(changes=((CHANGE, V2),), actuals=ACTUALS, as_of=AS_OF, first=V1):
    return {row.visit: row for row in evaluate(first, EVENTS, actuals, as_of, arm="A", changes=changes)}


def test_found_a_visit_the_new_version_adds_whose_window_closed_before_the_change_is_not_missed():
    v7 = rows()["V7"]
    assert v7.latest == date(2026, 8, 28)
    assert v7.status == "not_applicable"


def test_found_a_visit_done_before_the_change_is_judged_by_the_old_window():
    v5 = rows()["V5"]
    assert (v5.status, v5.days_outside, v5.latest) == ("late", 1, date(2026, 7, 1))


def test_without_a_change_the_participant_follows_one_version():
    assert rows(changes=())["V5"].status == "late"
    assert "V7" not in rows(changes=())
    assert rows(changes=(), first=V2)["V5"].status == "on_time"  # 2.0's own wider window


def test_the_version_in_force_on_the_day_the_visit_was_done_judges_it():
    # Done 2026-07-02: late under 1.0 (closes 07-01), on time under 2.0 (closes 07-03).
    assert rows(changes=((date(2026, 7, 2), V2),))["V5"].status == "on_time"  # the change took effect that day
    assert rows(changes=((date(2026, 7, 3), V2),))["V5"].status == "late"  # a day later: still 1.0's


def test_an_open_visit_is_judged_by_the_version_in_force_when_its_window_closes():
    undone = {code: day for code, day in ACTUALS.items() if code != "V5"}
    # 1.0's window closes 2026-07-01: a change on that day gives 2.0's window (to 07-03), a day later does not.
    assert rows(changes=((date(2026, 7, 1), V2),), actuals=undone, as_of=date(2026, 7, 2))["V5"].status == "due"
    assert rows(changes=((date(2026, 7, 2), V2),), actuals=undone, as_of=date(2026, 7, 2))["V5"].status == "missed"


@pytest.mark.parametrize(
    "change, status",
    [
        (date(2026, 8, 28), "upcoming"),  # V7's window closes on the change date: expected
        (date(2026, 8, 29), "not_applicable"),  # a day later: it closed before 2.0 was in force
    ],
)
def test_an_added_visit_is_expected_only_if_its_window_closes_on_or_after_the_change(change, status):
    as_of = date(2026, 8, 1)
    assert rows(changes=((change, V2),), as_of=as_of)["V7"].status == status


REMOVES = protocol(visit("V2", offset="2w", early="3d", late="3d"), visit("V3", offset="4w", early="3d", late="3d"))
KEEPS_V2 = protocol(visit("V2", offset="2w", early="3d", late="3d"))
R = date(2024, 3, 4)  # V2 window 03-15 .. 03-21, V3 window 03-29 .. 04-04


def judged(actuals, change, as_of=date(2024, 6, 1)):
    found = evaluate_judged(REMOVES, {"randomization": R}, actuals, as_of, changes=((change, KEEPS_V2),))
    return {row.visit: (row.status, index) for row, index in found}


def test_a_removed_visit_is_not_applicable_from_the_change_date():
    assert judged({}, date(2024, 4, 4))["V3"] == ("not_applicable", 1)  # open on the change date
    assert judged({}, date(2024, 4, 5))["V3"] == ("missed", 0)  # its window closed under the old version


def test_a_removed_visit_done_before_the_change_keeps_its_status():
    assert judged({"V3": date(2024, 4, 6)}, date(2024, 4, 10))["V3"] == ("late", 0)
    # Done after the change, it is not a visit of the protocol in force that day.
    assert judged({"V3": date(2024, 4, 12)}, date(2024, 4, 10))["V3"] == ("unscheduled", 1)


def test_each_row_names_the_version_that_judged_it():
    found = evaluate_judged(V1, EVENTS, ACTUALS, AS_OF, arm="A", changes=((CHANGE, V2),))
    by_code = {row.visit: index for row, index in found}
    assert by_code["V5"] == 0 and by_code["V6"] == 0  # done before the change
    assert by_code["V7"] == 1  # added by 2.0 (not applicable)
    assert by_code["FU"] == 1  # pending: no last dose yet, so judged by the version in force now


def test_several_changes_apply_in_order():
    back = ((date(2026, 6, 1), V2), (date(2026, 9, 1), V1))  # 2.0 from June, back to 1.0 from September
    got = rows(changes=back)
    assert got["V5"].status == "on_time"  # done in July, under 2.0
    assert got["V7"].status == "missed"  # its window closed 08-28, under 2.0: removing it later changes nothing
    # Removed while its window was still open: not applicable.
    assert rows(changes=((date(2026, 6, 1), V2), (date(2026, 8, 20), V1)))["V7"].status == "not_applicable"


def test_found_a_longer_repeat_interval_leaves_no_old_occurrence_open_after_the_change():
    """Review finding: the old version's occurrences the new one lists only past the horizon stayed, some missed."""
    from dataclasses import replace

    every_2w = protocol(visit("C{n}", frm="randomization", repeat=("14d", None), early="3d", late="3d"))
    every_4w = replace(
        protocol(visit("C{n}", frm="randomization", repeat=("28d", None), early="3d", late="3d")), version="2.0"
    )
    start, change, as_of = date(2024, 1, 1), date(2024, 3, 11), date(2024, 5, 20)
    actuals = {f"C{n}": start + timedelta(days=14 * (n - 1)) for n in range(1, 6)}  # done until the change
    judged = evaluate_judged(
        every_2w, {"randomization": start}, actuals, as_of, horizon_days=60, changes=[(change, every_4w)]
    )
    found = {row.visit: (row, version) for row, version in judged}
    assert all(found[f"C{n}"][0].status == "on_time" and found[f"C{n}"][1] == 0 for n in range(1, 6))
    assert [row.visit for row, version in judged if version == 0 and row.actual is None] == []  # none of 2w's left
    later = sorted((row.target, version) for row, version in judged if row.target and row.target > change)
    assert later and all(version == 1 for _, version in later)  # every open occurrence is the new version's
    assert all(
        row.target is None or row.target - start in {timedelta(days=28 * k) for k in range(20)}
        for row, version in judged
        if version == 1 and row.actual is None
    )


def test_a_repeat_far_off_under_a_middle_version_follows_the_third_as_a_visit_it_adds():
    """Review finding: every 2w, then every 26w from 03-11, then every 2w again from 04-22 (as of 05-01): the
    occurrences the middle version put far off are the third version's, expected only if their window closes
    on or after 04-22, whatever the horizon."""
    from dataclasses import replace

    def every(days: str, version: str):
        return replace(
            protocol(visit("C{n}", frm="randomization", repeat=(days, None), early="3d", late="3d")), version=version
        )

    start, as_of = date(2024, 1, 1), date(2024, 5, 1)
    actuals = {f"C{n}": start + timedelta(days=14 * (n - 1)) for n in range(1, 6)}
    changes = [(date(2024, 3, 11), every("182d", "2.0")), (date(2024, 4, 22), every("14d", "3.0"))]
    for horizon in (60, 200):
        judged = {
            row.visit: (row.status, version)
            for row, version in evaluate_judged(
                every("14d", "1.0"), {"randomization": start}, actuals, as_of, horizon_days=horizon, changes=changes
            )
        }
        assert [judged[f"C{n}"] for n in (6, 7, 8)] == [("not_applicable", 2)] * 3, horizon
        assert judged["C9"] == ("missed", 2) and judged["C5"] == ("on_time", 0)


def test_a_window_the_new_version_narrows_to_before_the_change_is_not_missed():
    """Open under the old window on the change date, closed under the new one before it took effect: the new
    version never expected it while in force, so it is not applicable, not missed (never backwards)."""
    from dataclasses import replace

    old = protocol(visit("V1", offset="30d", early="10d", late="10d"))  # window to day 40
    new = replace(protocol(visit("V1", offset="30d", early="2d", late="2d")), version="2.0")  # to day 32
    start = date(2024, 1, 1)
    change = start + timedelta(days=35)
    [(row, version)] = evaluate_judged(
        old, {"randomization": start}, {}, start + timedelta(days=50), changes=[(change, new)]
    )
    assert (row.status, version) == ("not_applicable", 1)
    [(later, _)] = evaluate_judged(
        old, {"randomization": start}, {}, start + timedelta(days=50), changes=[(start + timedelta(days=31), new)]
    )  # the new window still open
    assert later.status == "missed"
