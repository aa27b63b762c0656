"""Ending events as real protocols define them (issue 11, section 3; contract "Ending events").

Once an ending event is recorded, visits whose window opens after it are not applicable, except visits
marked `after_end: expected` and visits counted from (or conditional on) that ending event itself; an event
recorded on the same day keeps nothing alive. After an ending event with `collection: stops`, nothing is
expected and anything done is a deviation; after any other, visits done are evaluated as they happened.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.unit.builders import protocol, visit
from trialcoord.deviations.rules.deviations import detect
from trialcoord.scheduling.protocol_files import load_protocol
from trialcoord.scheduling.rules.protocol import Event
from trialcoord.scheduling.rules.schedule import evaluate

ROOT = Path(__file__).resolve().parents[2] / "protocols"
DEMO = load_protocol(ROOT / "DEMO-001" / "1.0.yaml")
ONC = load_protocol(ROOT / "ONC-201" / "1.0.yaml")
R = date(2026, 3, 2)
DAY = timedelta(days=1)


def demo(events, actuals=None, as_of=None):
    return {
        row.visit: row
        for row in evaluate(
            DEMO,
            {"randomization": R, "first_dose": R, **events},
            actuals or {},
            as_of or R + timedelta(days=200),
            arm="A",
        )
    }


def test_found_safety_follow_up_after_the_last_dose_survives_an_early_termination():
    # The normal case: the last dose, then early termination a week later. FU is 30 days after the last dose.
    last_dose, stopped = R + timedelta(days=40), R + timedelta(days=47)
    rows = demo({"last_dose": last_dose, "early_termination": stopped}, as_of=stopped)
    assert (rows["FU"].target, rows["FU"].status) == (last_dose + timedelta(days=30), "upcoming")
    assert rows["ET"].status == "due"  # counted from the ending event itself
    assert rows["V6"].status == "not_applicable"  # Week 12: its window opens after the end


def test_found_randomised_and_withdrawn_the_same_day_leaves_no_later_visit_missed():
    rows = demo({"withdrawal": R}, as_of=R + timedelta(days=200))
    assert {code: row.status for code, row in rows.items() if code not in ("V1", "V2")} == {
        code: "not_applicable" for code in ("V3", "V4", "V5", "V6", "PK", "ET", "FU")
    }
    assert rows["V2"].status == "missed"  # Baseline's window is the randomisation day itself: still expected


def test_an_event_recorded_on_the_ending_day_keeps_no_visit_alive():
    # Early termination and the last dose on one day: FU survives only because it says `after_end: expected`.
    plain = protocol(visit("FU", frm="last_dose", when="last_dose", offset="28d", early="2d", late="2d"))
    day = R + timedelta(days=20)
    events = {"randomization": R, "last_dose": day, "early_termination": day}
    assert evaluate(plain, events, {}, day)[0].status == "not_applicable"
    kept = protocol(visit("FU", frm="last_dose", when="last_dose", offset="28d", early="2d", late="2d", after_end=True))
    assert evaluate(kept, events, {}, day)[0].status == "upcoming"


def test_collection_stops_keeps_nothing_alive_not_even_follow_up():
    rows = demo({"last_dose": R + timedelta(days=40), "withdrawal": R + timedelta(days=41)})
    assert rows["FU"].status == "not_applicable"


def test_a_follow_up_counted_from_one_ending_event_ends_with_another():
    # ONC-201: survival follow-up calls count from end of treatment and stop at death.
    first_dose, eot = date(2026, 1, 5), date(2026, 3, 2)
    events = {"first_dose": first_dose, "end_of_treatment": eot}
    alive = {r.visit: r for r in evaluate(ONC, events, {}, eot + timedelta(days=410))}
    assert alive["SFU"].status == "missed" and alive["LTFU1"].status == "not_applicable"  # optional, closed
    assert alive["LTFU5"].status == "due"  # 420 days after the end, window from day 406
    died = {
        r.visit: r for r in evaluate(ONC, {**events, "death": eot + timedelta(days=100)}, {}, eot + timedelta(days=410))
    }
    assert [r.visit for r in died.values() if r.visit.startswith("LTFU") and r.status != "not_applicable"] == []


def test_a_visit_done_after_the_end_is_evaluated_as_it_happened():
    stopped = R + timedelta(days=20)
    rows = demo({"early_termination": stopped}, {"V4": R + timedelta(days=33)})
    # V4 counts from V3's target (V3 not done): its window, R+25 .. R+31, opens after the end; done, it is late.
    assert (rows["V4"].status, rows["V4"].days_outside) == ("late", 2)
    assert rows["V5"].status == "not_applicable"


def findings(events, actuals):
    rows = evaluate(DEMO, {"randomization": R, "first_dose": R, **events}, actuals, R + timedelta(days=60), arm="A")
    stops = min((events[name] for name in events if DEMO.events[name].stops_collection), default=None)
    return {(f.visit, str(f.rule)) for f in detect("101-001", rows, collection_stopped_on=stops)}


def test_found_unscheduled_visits_after_early_termination_raise_nothing():
    stopped = R + timedelta(days=20)
    found = findings(
        {"early_termination": stopped},
        {"AE-FU": stopped + 5 * DAY, "DRUG-RETURN": stopped + 9 * DAY, "ET": stopped + 2 * DAY},
    )
    assert not {rule for _, rule in found} & {"visit_after_ending_event"}


@pytest.mark.parametrize("code", ["AE-FU", "V3", "ET"])
def test_after_collection_stops_any_visit_done_later_is_a_deviation(code):
    withdrawn = R + timedelta(days=5)
    assert (code, "visit_after_ending_event") in findings({"withdrawal": withdrawn}, {code: withdrawn + DAY})
    assert (code, "visit_after_ending_event") not in findings({"withdrawal": withdrawn}, {code: withdrawn})


def test_events_parse_collection_and_visits_after_end():
    assert DEMO.events["withdrawal"] == Event("withdrawal", ends_schedule=True, stops_collection=True)
    assert DEMO.events["early_termination"] == Event("early_termination", ends_schedule=True)
    assert DEMO.visits_by_code["FU"].after_end and not DEMO.visits_by_code["V6"].after_end
    assert ONC.visits_by_code["SFU"].after_end and ONC.events["death"].stops_collection
