"""The schedule engine against the contract: worked example, every window edge, every rule."""

from datetime import date, timedelta

import pytest

from tests.unit.builders import protocol, visit
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling.rules.durations import Calendar
from trialcoord.scheduling.rules.schedule import evaluate, study_day

R = date(2024, 3, 4)  # randomisation, a Monday (the contract's worked example)

WORKED = protocol(
    visit("SCR", offset="-7d", early="7d", late="6d"),
    visit("V2", offset="2w", early="3d", late="3d"),
    visit("V3", frm="V2", offset="2w", early="3d", late="3d"),
    visit("V3P", frm="V2", offset="2w", early="3d", late="3d", reference="planned"),
)


def rows_by_code(rows):
    return {row.visit: row for row in rows}


def one(proto, code, events=None, actuals=None, as_of=R, **kw):
    rows = evaluate(proto, events if events is not None else {"randomization": R}, actuals or {}, as_of, **kw)
    return rows_by_code(rows)[code]


def test_worked_example_of_the_contract():
    rows = rows_by_code(evaluate(WORKED, {"randomization": R}, {"V2": date(2024, 3, 20)}, R))
    got = {c: (r.target, r.earliest, r.latest, r.study_day) for c, r in rows.items()}
    assert got == {
        "SCR": (date(2024, 2, 26), date(2024, 2, 19), date(2024, 3, 3), -7),
        "V2": (date(2024, 3, 18), date(2024, 3, 15), date(2024, 3, 21), 15),
        "V3": (date(2024, 4, 3), date(2024, 3, 31), date(2024, 4, 6), 31),
        "V3P": (date(2024, 4, 1), date(2024, 3, 29), date(2024, 4, 4), 29),
    }


@pytest.mark.parametrize(
    ("day", "expected"),
    [(date(2024, 3, 3), -1), (date(2024, 3, 4), 1), (date(2024, 3, 5), 2), (date(2024, 2, 26), -7)],
)
def test_study_day_has_no_day_zero(day, expected):
    assert study_day(day, R) == expected


# V2: window 2024-03-15 .. 2024-03-21
@pytest.mark.parametrize(
    ("as_of", "status"),
    [
        (date(2024, 3, 14), "upcoming"),
        (date(2024, 3, 15), "due"),
        (date(2024, 3, 16), "due"),
        (date(2024, 3, 20), "due"),
        (date(2024, 3, 21), "due"),
        (date(2024, 3, 22), "missed"),
    ],
)
def test_status_as_of_each_window_edge(as_of, status):
    assert one(WORKED, "V2", as_of=as_of).status == status


@pytest.mark.parametrize(
    ("actual", "status", "outside"),
    [
        (date(2024, 3, 13), "early", -2),
        (date(2024, 3, 14), "early", -1),
        (date(2024, 3, 15), "on_time", 0),
        (date(2024, 3, 18), "on_time", 0),
        (date(2024, 3, 21), "on_time", 0),
        (date(2024, 3, 22), "late", 1),
        (date(2024, 3, 25), "late", 4),
    ],
)
def test_actual_date_against_each_window_edge(actual, status, outside):
    row = one(WORKED, "V2", actuals={"V2": actual}, as_of=date(2024, 6, 1))
    assert (row.status, row.days_outside) == (status, outside)


def test_unknown_reference_is_pending_and_dependents_too():
    rows = rows_by_code(evaluate(WORKED, {"consent": R}, {}, R))
    assert {r.status for r in rows.values()} == {"pending"}
    assert all(r.target is None and r.study_day is None for r in rows.values())


def test_chained_visit_counts_from_actual_else_target():
    assert one(WORKED, "V3").target == date(2024, 4, 1)  # V2 not done yet: its target
    assert one(WORKED, "V3", actuals={"V2": date(2024, 3, 16)}).target == date(2024, 3, 30)


def test_missed_reference_visit_falls_back_to_its_target():
    v3 = one(WORKED, "V3", as_of=date(2024, 3, 25))
    assert one(WORKED, "V2", as_of=date(2024, 3, 25)).status == "missed"
    assert v3.target == date(2024, 4, 1)
    marked = one(WORKED, "V3", marked_missed={"V2"})
    assert marked.target == date(2024, 4, 1)
    assert one(WORKED, "V2", marked_missed={"V2"}).status == "missed"


def test_planned_reference_ignores_actual():
    assert one(WORKED, "V3P", actuals={"V2": date(2024, 3, 20)}).target == date(2024, 4, 1)


CYCLES = protocol(
    visit("C{n}D1", frm="first_dose", repeat=("21d", 6), early="0d", late="3d"),
    day_one="first_dose",
)
D = date(2024, 1, 8)


def test_repeat_with_count_lists_every_occurrence():
    rows = evaluate(CYCLES, {"first_dose": D}, {}, D)
    assert [r.visit for r in rows] == [f"C{n}D1" for n in range(1, 7)]
    assert [r.target for r in rows] == [D + timedelta(days=21 * i) for i in range(6)]
    assert [r.occurrence for r in rows] == list(range(1, 7))


def test_dose_delay_shifts_later_cycles_when_chained_to_actual():
    rows = rows_by_code(evaluate(CYCLES, {"first_dose": D}, {"C1D1": D, "C2D1": D + timedelta(days=25)}, D))
    assert rows["C2D1"].status == "late" and rows["C2D1"].days_outside == 1
    assert rows["C3D1"].target == D + timedelta(days=46)
    assert rows["C4D1"].target == D + timedelta(days=67)


def test_planned_chain_ignores_dose_delay():
    proto = protocol(visit("C{n}D1", frm="first_dose", repeat=("21d", 3), chain="planned"))
    rows = rows_by_code(evaluate(proto, {"first_dose": D}, {"C2D1": D + timedelta(days=25)}, D))
    assert rows["C3D1"].target == D + timedelta(days=42)


OPEN = protocol(
    visit("C{n}D1", frm="first_dose", repeat=("21d", None), early="0d", late="3d"),
    visit("EOT", frm="end_of_treatment", when="end_of_treatment", late="7d"),
    day_one="first_dose",
)


def test_open_repeat_stops_at_first_occurrence_past_the_horizon():
    rows = evaluate(OPEN, {"first_dose": D}, {}, D + timedelta(days=43))
    cycles = [r for r in rows if r.definition == "C{n}D1"]
    assert [r.visit for r in cycles] == ["C1D1", "C2D1", "C3D1", "C4D1"]  # C4 (day 63) is the next one
    assert [r.status for r in cycles] == ["missed", "missed", "due", "upcoming"]


def test_open_repeat_horizon_extends_listing():
    rows = evaluate(OPEN, {"first_dose": D}, {}, D, horizon_days=63)
    assert [r.visit for r in rows if r.definition == "C{n}D1"] == ["C1D1", "C2D1", "C3D1", "C4D1", "C5D1"]


def test_open_repeat_lists_recorded_occurrences_past_the_horizon():
    actuals = {f"C{n}D1": D + timedelta(days=21 * (n - 1)) for n in range(1, 9)}
    rows = evaluate(OPEN, {"first_dose": D}, actuals, D)
    cycles = [r for r in rows if r.definition == "C{n}D1"]
    assert len(cycles) == 8 and all(r.status == "on_time" for r in cycles)
    later = evaluate(OPEN, {"first_dose": D}, actuals, D + timedelta(days=150))
    assert [r.visit for r in later if r.status not in ("on_time", "not_applicable")] == ["C9D1"]


def test_open_repeat_ends_with_the_ending_event():
    end = D + timedelta(days=30)
    rows = evaluate(OPEN, {"first_dose": D, "end_of_treatment": end}, {"C1D1": D, "C2D1": D + timedelta(days=21)}, end)
    cycles = [r for r in rows if r.definition == "C{n}D1"]
    assert [r.status for r in cycles] == ["on_time", "on_time", "not_applicable"]
    eot = rows_by_code(rows)["EOT"]
    assert (eot.target, eot.status) == (end, "due")


ENDED = protocol(
    visit("V2", offset="2w", early="3d", late="3d"),
    visit("V6", offset="6w", early="3d", late="3d"),
    visit("ET", frm="early_termination", when="early_termination", late="7d"),
    visit("FU", frm="last_dose", when="last_dose", offset="28d", early="2d", late="2d"),
)


def test_ending_event_makes_later_visits_not_applicable_but_not_its_own():
    et = R + timedelta(days=20)
    events = {"randomization": R, "early_termination": et, "last_dose": et}
    rows = rows_by_code(evaluate(ENDED, events, {"V2": R + timedelta(days=14)}, et))
    assert rows["V2"].status == "on_time"
    assert rows["V6"].status == "not_applicable"
    assert rows["ET"].status == "due"
    assert rows["FU"].status == "not_applicable"  # an event recorded on the ending date keeps nothing alive


def test_window_opening_on_the_ending_date_still_applies():
    # V6 window opens R+39; an ending event on that date leaves it applicable, a day earlier does not.
    opens = R + timedelta(days=39)
    assert one(ENDED, "V6", events={"randomization": R, "withdrawal": opens}, as_of=opens).status == "due"
    before = opens - timedelta(days=1)
    assert one(ENDED, "V6", events={"randomization": R, "withdrawal": before}, as_of=opens).status == "not_applicable"


def test_conditional_visit_expected_only_once_event_recorded():
    assert one(ENDED, "ET").status == "not_applicable"
    assert one(ENDED, "FU").status == "not_applicable"
    fu = one(ENDED, "FU", events={"randomization": R, "last_dose": R})
    assert (fu.target, fu.status) == (R + timedelta(days=28), "upcoming")


ARMED = protocol(visit("V2", offset="2w", arms=["A"]), visit("V3", offset="4w"))


def test_arm_limited_visit():
    assert one(ARMED, "V2", arm="A").status == "upcoming"
    assert one(ARMED, "V2", arm="P").status == "not_applicable"
    assert one(ARMED, "V2", arm=None).status == "pending"
    assert one(ARMED, "V3", arm="P").status == "upcoming"


def test_month_arithmetic_clamps_to_month_end():
    proto = protocol(visit("M1", offset="1mo"), visit("M2", offset="P1M", late="1mo"))
    jan31 = date(2024, 1, 31)
    rows = rows_by_code(evaluate(proto, {"randomization": jan31}, {}, jan31))
    assert rows["M1"].target == date(2024, 2, 29)  # leap year
    assert rows["M2"].latest == date(2024, 3, 29)
    assert one(proto, "M1", events={"randomization": date(2023, 1, 31)}).target == date(2023, 2, 28)


def test_negative_offset_and_one_sided_and_unbounded_windows():
    proto = protocol(
        visit("PRE", offset="-3d", early="unbounded", late="0d"),
        visit("POST", offset="10d", early="0d", late="unbounded"),
        visit("EXACT", offset="5d"),
    )
    rows = rows_by_code(evaluate(proto, {"randomization": R}, {"PRE": date(2020, 1, 1)}, R + timedelta(days=400)))
    assert (rows["PRE"].target, rows["PRE"].earliest, rows["PRE"].latest) == (R - timedelta(3), None, R - timedelta(3))
    assert rows["PRE"].status == "on_time"
    assert (rows["POST"].latest, rows["POST"].status) == (None, "due")  # never closes
    assert rows["EXACT"].earliest == rows["EXACT"].latest == R + timedelta(5)
    assert rows["EXACT"].status == "missed"  # zero means zero, never "no limit"


def test_business_day_windows_skip_weekends_and_holidays():
    july4 = date(2024, 7, 4)  # a Thursday, declared a holiday
    cal = Calendar("test", holidays=frozenset({july4}))
    proto = protocol(visit("B", offset="1bd", early="1bd", late="2bd"), calendar=cal)
    row = one(proto, "B", events={"randomization": date(2024, 7, 3)})
    assert row.target == date(2024, 7, 5)  # skips the holiday
    assert row.earliest == date(2024, 7, 3)
    assert row.latest == date(2024, 7, 9)  # Fri -> Mon, Tue


def test_calendar_day_window_is_never_widened_by_a_weekend():
    sat = date(2024, 3, 16)
    proto = protocol(visit("V", offset="12d", late="0d"))
    row = one(proto, "V", events={"randomization": R}, actuals={"V": sat + timedelta(days=2)})
    assert row.latest == sat and row.status == "late"


def test_unscheduled_visit_is_listed_and_changes_nothing():
    actuals = {"V2": date(2024, 3, 17), "UNS1": date(2024, 3, 10)}
    rows = evaluate(WORKED, {"randomization": R}, actuals, date(2024, 3, 19))
    uns = rows_by_code(rows)["UNS1"]
    assert (uns.status, uns.target, uns.actual, uns.study_day) == ("unscheduled", None, date(2024, 3, 10), 7)
    without = evaluate(WORKED, {"randomization": R}, {"V2": date(2024, 3, 17)}, date(2024, 3, 19))
    assert [r for r in rows if r.status != "unscheduled"] == without


def test_occurrence_beyond_count_is_unscheduled():
    rows = rows_by_code(evaluate(CYCLES, {"first_dose": D}, {"C7D1": D + timedelta(days=200)}, D))
    assert rows["C7D1"].status == "unscheduled"


def test_optional_visit_is_never_missed():
    proto = protocol(visit("OPT", offset="7d", optional=True))
    assert one(proto, "OPT", as_of=R + timedelta(days=8)).status == "not_applicable"
    assert one(proto, "OPT", as_of=R + timedelta(days=7)).status == "due"


def test_rows_are_ordered_by_target_date():
    rows = evaluate(WORKED, {"randomization": R}, {"X": R}, R)
    assert [r.visit for r in rows] == ["SCR", "X", "V2", "V3", "V3P"]


@pytest.mark.parametrize("day", [date(9999, 12, 30), date(1, 1, 2)])
def test_dates_beyond_the_calendar_are_bad_input_not_a_crash(day):
    with pytest.raises(InvalidInput, match="outside the years 1 to 9999"):
        evaluate(WORKED, {"randomization": day}, {}, day, horizon_days=60)
