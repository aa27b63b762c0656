"""Invariants of the schedule engine, checked over generated protocols and recorded dates."""

from dataclasses import replace
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.builders import protocol, visit
from trialcoord.scheduling.rules.durations import Calendar
from trialcoord.scheduling.rules.protocol import Event
from trialcoord.scheduling.rules.schedule import STATUSES, evaluate, evaluate_judged

days = st.dates(min_value=date(2024, 1, 1), max_value=date(2025, 6, 30))


def durations(signed=False, unbounded=False):
    amount = st.integers(-40 if signed else 0, 40)
    text = st.builds(lambda n, unit: f"{n}{unit}", amount, st.sampled_from(["d", "w", "mo", "bd"]))
    return st.one_of(text, st.just("unbounded")) if unbounded else text


@st.composite
def protocols(draw):
    """Up to six visits, each counted from an event or an earlier non-repeating visit."""
    visits, referable = [], ["randomization", "first_dose"]
    for index in range(draw(st.integers(1, 6))):
        repeat = (f"{draw(st.integers(7, 30))}d", draw(st.sampled_from([None, 1, 3]))) if draw(st.booleans()) else None
        code = f"R{index}{{n}}" if repeat else f"V{index}"
        visits.append(
            visit(
                code,
                frm=draw(st.sampled_from(referable)),
                offset=draw(durations(signed=True)),
                early=draw(durations(unbounded=True)),
                late=draw(durations(unbounded=True)),
                reference=draw(st.sampled_from(["actual", "planned"])),
                optional=draw(st.booleans()),
                repeat=repeat,
            )
        )
        if not repeat:
            referable.append(code)
    return protocol(*visits, calendar=Calendar("weekdays"))


@st.composite
def participants(draw):
    proto = draw(protocols())
    events = draw(st.dictionaries(st.sampled_from(["randomization", "first_dose", "last_dose"]), days))
    codes = [v.code_for(1) for v in proto.visits] + ["R0" + "2", "UNS"]
    actuals = draw(st.dictionaries(st.sampled_from(codes), days, max_size=4))
    return proto, events, actuals, draw(days)


@given(participants())
def test_windows_contain_their_target(case):
    proto, events, actuals, as_of = case
    for row in evaluate(proto, events, actuals, as_of):
        if row.target is None:
            continue
        assert row.earliest is None or row.earliest <= row.target
        assert row.latest is None or row.target <= row.latest
        assert row.status in STATUSES


@given(participants())
def test_evaluation_is_deterministic_and_idempotent(case):
    proto, events, actuals, as_of = case
    first = evaluate(proto, dict(events), dict(actuals), as_of)
    assert evaluate(proto, dict(events), dict(actuals), as_of) == first
    assert events == case[1] and actuals == case[2]  # inputs untouched


@given(participants(), days)
def test_an_unscheduled_visit_changes_no_scheduled_status(case, day):
    proto, events, actuals, as_of = case
    actuals = {code: d for code, d in actuals.items() if code != "UNS"}
    before = evaluate(proto, events, actuals, as_of)
    after = evaluate(proto, events, {**actuals, "UNS": day}, as_of)
    assert [r for r in after if r.visit != "UNS"] == before


@given(participants(), st.data())
def test_an_actual_date_inside_the_window_is_on_time(case, data):
    proto, events, actuals, as_of = case
    for row in evaluate(proto, events, {}, as_of):
        if row.target is None or row.status == "not_applicable" or row.occurrence != 1:
            continue
        low = row.earliest or row.target - timedelta(days=400)
        high = row.latest or row.target + timedelta(days=400)
        inside = data.draw(st.dates(min_value=low, max_value=high))
        again = {r.visit: r for r in evaluate(proto, events, {row.visit: inside}, as_of)}
        assert again[row.visit].status == "on_time"
        assert again[row.visit].days_outside == 0


@given(participants())
def test_days_outside_measures_from_the_nearest_bound(case):
    proto, events, actuals, as_of = case
    for row in evaluate(proto, events, actuals, as_of):
        if row.status == "early":
            assert row.days_outside == (row.actual - row.earliest).days < 0
        elif row.status == "late":
            assert row.days_outside == (row.actual - row.latest).days > 0
        else:
            assert row.days_outside == 0


# --- version changes and ending events (issue 11) ---


@given(participants(), protocols(), days)
def test_a_visit_done_before_a_version_change_never_changes_status(case, other, change):
    proto, events, actuals, as_of = case
    before = {row.visit: row for row in evaluate(proto, events, actuals, as_of)}
    after = {row.visit: row for row in evaluate(proto, events, actuals, as_of, changes=((change, other),))}
    for code, row in before.items():
        if row.actual is not None and row.actual < change:
            assert (after[code].status, after[code].days_outside) == (row.status, row.days_outside)


@given(participants(), protocols(), days)
def test_a_version_change_keeps_what_was_recorded_and_judges_each_open_visit_by_the_version_in_force(
    case, other, change
):
    proto, events, actuals, as_of = case
    history = ((date.min, proto), (change, other))
    judged = evaluate_judged(proto, events, actuals, as_of, horizon_days=60, changes=history[1:])
    own = [
        {row.visit: row for row in evaluate(version, events, actuals, as_of, horizon_days=60)} for _, version in history
    ]
    assert set(actuals) <= {row.visit for row, _ in judged}  # nothing recorded disappears
    for row, index in judged:
        if row.status in ("not_applicable", "unscheduled"):
            continue
        assert own[index].get(row.visit) == row  # the row is that version's own evaluation of the visit
        if row.actual is None and (row.latest is None or row.latest >= change):
            assert index == 1, row  # still open at the change: the new version's


ENDINGS = {"early_termination": False, "end_of_treatment": False, "withdrawal": True}  # name: collection stops


@st.composite
def ended_participants(draw):
    """Visits counted from ordinary or ending events, some conditional on an ending event, some `after_end`."""
    anchors = ["randomization", "last_dose", *ENDINGS]
    visits = [
        visit(
            f"V{index}",
            frm=draw(st.sampled_from(anchors)),
            offset=draw(durations(signed=True)),
            early=draw(durations()),
            late=draw(durations()),
            optional=draw(st.booleans()),
            when=draw(st.sampled_from([None, None, *ENDINGS])),
            after_end=draw(st.booleans()),
            repeat=None,
        )
        for index in range(draw(st.integers(1, 5)))
    ]
    proto = protocol(*visits, calendar=Calendar("weekdays"))
    events = {name: Event(name, ends_schedule=True, stops_collection=stops) for name, stops in ENDINGS.items()}
    proto = replace(proto, events={**proto.events, **events})
    recorded = draw(st.dictionaries(st.sampled_from(["randomization", "last_dose", *ENDINGS]), days, min_size=1))
    return proto, recorded, draw(days)


@given(ended_participants())
def test_nothing_after_an_ending_event_is_missed_unless_it_is_expected_after_it(case):
    proto, events, as_of = case
    for row in evaluate(proto, events, {}, as_of, horizon_days=60):
        if row.status != "missed":
            continue
        definition = proto.visits_by_code[row.definition]
        opens = row.earliest or row.target
        for name, stops in ENDINGS.items():
            if name in events and opens > events[name]:
                rests_on_it = name in (definition.reference_name, definition.when)
                assert not stops and (definition.after_end or rests_on_it), (row, name)
