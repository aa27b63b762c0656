"""The scheduling use cases on both engines: what they store, what they refuse, and their worklists."""

from __future__ import annotations

from datetime import date, timedelta

import aiosqlite
import anyio
import pytest

from tests.conftest import PROTOCOL_V1, RANDOMIZED
from trialcoord.demo import demo
from trialcoord.deviations import queue
from trialcoord.kernel.database.tables import ProtocolChange
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.scheduling import participants, protocols, schedules, sites, version_changes, worklists
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.rules.schedule import evaluate
from trialcoord.scheduling.visits import book_appointment, mark_missed, record_event, record_visit

pytestmark = [pytest.mark.anyio, pytest.mark.db]

TODAY = date(2024, 3, 16)
S = "101-001"


@pytest.fixture
async def randomized(study):
    """101-001 in arm A, randomised 2024-03-04: V2's window is 2024-03-15 .. 2024-03-21."""
    await participants.enroll_participant(study, S, "101", arm="A", enrolled_on=date(2024, 2, 26), today=TODAY)
    await record_event(study, S, "randomization", RANDOMIZED, today=TODAY)
    return S


async def visits(subject=S, as_of=TODAY):
    return {row.visit.visit: row for row in await worklists.participant_schedule("TST-1", subject, as_of)}


def fields(error: InvalidInput) -> set[str]:
    return {problem.field for problem in error.problems}


def count_connections(db, monkeypatch) -> list:
    """Connections taken from now on: opened (SQLite, no pool) or acquired from asyncpg's pool."""
    taken = []
    owner, name = (aiosqlite, "connect") if db.kind == "sqlite" else (type(db.engine.pool), "acquire")
    take = getattr(owner, name)

    def counted(*args, **kwargs):
        taken.append(name)
        return take(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return taken


async def test_protocol_load_is_idempotent_and_a_changed_text_conflicts(study):
    again = await protocols.load_protocol_version(parse_protocol(PROTOCOL_V1, "tst.yaml"), PROTOCOL_V1, "tst.yaml")
    assert again.created is False and again.version == "1.0"
    assert [v.version for v in await protocols.list_protocol_versions(study)] == ["1.0", "2.0"]
    changed = PROTOCOL_V1.replace("title: Test study", "title: Changed")
    with pytest.raises(Conflict, match=r"study TST-1, protocol version 1\.0 is already loaded"):
        await protocols.load_protocol_version(parse_protocol(changed, "other.yaml"), changed, "other.yaml")
    assert (await protocols.get_protocol(study)).version == "2.0"
    assert (await protocols.get_protocol(study, "1.0")).effective == date(2024, 1, 1)
    with pytest.raises(InvalidInput, match="no protocol version 9.9; versions: 1.0, 2.0"):
        await protocols.get_protocol(study, "9.9")


async def test_enrolment_picks_the_version_in_effect_and_refuses_duplicates(study):
    early = await participants.enroll_participant(study, S, "101", enrolled_on=date(2024, 2, 1), today=TODAY)
    july = date(2024, 7, 1)  # an enrolment is a fact: recorded on its day or later, never ahead
    late = await participants.enroll_participant(study, "101-002", "101", enrolled_on=july, today=july)
    assert (early.protocol_version, late.protocol_version) == ("1.0", "2.0")
    with pytest.raises(Conflict, match="study TST-1 already has participant 101-001"):
        await participants.enroll_participant(study, S, "101", today=TODAY)
    with pytest.raises(InvalidInput) as error:
        await participants.enroll_participant(study, "101-003", "999", today=TODAY)
    assert fields(error.value) == {"site"} and "sites: 101" in str(error.value)
    with pytest.raises(InvalidInput) as error:
        await participants.enroll_participant(study, "101-003", "101", arm="X", today=TODAY)
    assert fields(error.value) == {"arm"} and "arms: A, P" in str(error.value)
    assert [p.subject_id for p in await participants.list_participants(study)] == [S, "101-002"]


async def test_recorded_event_materialises_visits_and_a_changed_date_needs_a_reason(randomized):
    v2 = (await visits())["V2"]
    assert (v2.visit.earliest, v2.visit.latest, v2.visit.status) == (date(2024, 3, 15), date(2024, 3, 21), "due")
    assert v2.row_version is not None
    with pytest.raises(InvalidInput, match="'randomisation' is not an event .* valid events: consent, randomization"):
        await record_event("TST-1", S, "randomisation", RANDOMIZED, today=TODAY)
    with pytest.raises(InvalidInput) as error:
        await record_event("TST-1", S, "randomization", RANDOMIZED + timedelta(days=1), today=TODAY)
    assert fields(error.value) == {"reason"} and "already recorded on 2024-03-04" in str(error.value)
    moved = await record_event(
        "TST-1", S, "randomization", RANDOMIZED + timedelta(days=1), reason="date entry error", today=TODAY
    )
    assert moved.changed and (await visits())["V2"].visit.target == date(2024, 3, 19)


async def test_each_read_use_case_takes_one_connection(db, randomized, monkeypatch):
    reads = {
        "participant_schedule": lambda: worklists.participant_schedule("TST-1", S, TODAY),
        "get_participant": lambda: participants.get_participant("TST-1", S),
        "worklist": lambda: worklists.worklist("TST-1", TODAY, kind="week"),
        "study_visits": lambda: worklists.study_visits("TST-1", TODAY),
        "site_schedule": lambda: worklists.site_schedule("TST-1", "101", TODAY),
        "list_participants": lambda: participants.list_participants("TST-1"),
        "get_protocol": lambda: protocols.get_protocol("TST-1"),
    }
    for name, use_case in reads.items():
        taken = count_connections(db, monkeypatch)
        assert await use_case()
        assert len(taken) == 1, name
        monkeypatch.undo()


async def test_unknown_study_or_participant_is_not_found(randomized):
    with pytest.raises(NotFound, match="^study NOPE does not exist$"):
        await worklists.participant_schedule("NOPE", S, TODAY)
    with pytest.raises(NotFound, match="^study TST-1 has no participant 999$"):
        await participants.get_participant("TST-1", "999")
    with pytest.raises(NotFound, match="^study TST-1 has no participant 999$"):
        await record_event("TST-1", "999", "consent", TODAY, today=TODAY)
    participant = await participants.get_participant("TST-1", S)
    assert (participant.site, participant.protocol_version) == ("101", "1.0")
    assert participant.events == {"randomization": RANDOMIZED}


async def test_worklists_go_by_subject_then_date_then_code(randomized):
    await participants.enroll_participant("TST-1", "101-000", "101", enrolled_on=date(2024, 2, 26), today=TODAY)
    await record_event("TST-1", "101-000", "randomization", RANDOMIZED - timedelta(days=1), today=TODAY)
    rows = await worklists.worklist("TST-1", date(2024, 4, 30), kind="overdue")
    keys = [(row.subject_id, row.visit.target, row.visit.visit) for row in rows]
    assert keys == sorted(keys) and [subject for subject, *_ in keys] == ["101-000"] * 3 + [S] * 3


async def test_recording_visits_with_unknown_codes_and_corrections(randomized):
    done = await record_visit("TST-1", S, "V2", date(2024, 3, 22), reason="travelling", today=date(2024, 3, 22))
    assert (done.visit.status, done.visit.days_outside) == ("late", 1)
    extra = await record_visit("TST-1", S, "AE1", date(2024, 3, 23), today=date(2024, 3, 23))
    assert extra.visit.status == "unscheduled"
    with pytest.raises(InvalidInput, match="already recorded on 2024-03-22"):
        await record_visit("TST-1", S, "V2", date(2024, 3, 20), today=date(2024, 3, 23))
    fixed = await record_visit("TST-1", S, "V2", date(2024, 3, 20), reason="typo", today=date(2024, 3, 23))
    assert (fixed.visit.status, fixed.actual_reason) == ("on_time", "typo")
    assert (await visits(as_of=date(2024, 3, 23)))["V3"].visit.target == date(2024, 4, 3)  # counted from V2's actual


async def test_booking_outside_the_window_needs_a_reason(randomized):
    with pytest.raises(InvalidInput) as error:
        await book_appointment("TST-1", S, "V2", date(2024, 3, 25), today=TODAY)
    assert fields(error.value) == {"reason"} and "window 2024-03-15 to 2024-03-21" in str(error.value)
    booked = await book_appointment("TST-1", S, "V2", date(2024, 3, 25), reason="clinic closed", today=TODAY)
    assert (booked.appointment, booked.appointment_reason) == (date(2024, 3, 25), "clinic closed")
    inside = await book_appointment("TST-1", S, "V3", date(2024, 4, 1), today=TODAY)
    assert inside.appointment == date(2024, 4, 1) and inside.appointment_reason is None
    with pytest.raises(NotFound, match="visit V9 is not in the schedule"):
        await book_appointment("TST-1", S, "V9", date(2024, 4, 1), today=TODAY)


async def test_concurrent_updates_of_one_row_version_give_one_conflict(randomized):
    version = (await visits())["V2"].row_version
    outcomes = []

    async def update(day: date):
        try:
            await book_appointment("TST-1", S, "V2", day, expected_row_version=version, today=TODAY)
            outcomes.append("ok")
        except Conflict as exc:
            outcomes.append(str(exc))

    async with anyio.create_task_group() as group:
        group.start_soon(update, date(2024, 3, 18))
        group.start_soon(update, date(2024, 3, 19))
    assert len(outcomes) == 2 and outcomes.count("ok") == 1
    assert "visit V2 was changed by someone else" in next(o for o in outcomes if o != "ok")
    assert (await visits())["V2"].row_version == version + 1


async def test_mark_missed_needs_a_reason_and_leaves_the_overdue_list(randomized):
    with pytest.raises(InvalidInput) as error:
        await mark_missed("TST-1", S, "V2", "  ", today=TODAY)
    assert fields(error.value) == {"reason"}
    late = date(2024, 3, 23)
    assert [r.visit.visit for r in await worklists.worklist("TST-1", late, kind="overdue")] == ["SCR", "V2"]
    missed = await mark_missed("TST-1", S, "V2", "participant travelling", today=late)
    assert (missed.visit.status, missed.missed_reason) == ("missed", "participant travelling")
    assert [r.visit.visit for r in await worklists.worklist("TST-1", late, kind="overdue")] == ["SCR"]
    flagged = await worklists.worklist("TST-1", late, kind="missed_or_out_of_window")
    assert [r.visit.visit for r in flagged] == ["SCR", "V2"]


async def test_version_change_keeps_the_evaluation_of_done_visits(randomized):
    await record_visit("TST-1", S, "V2", date(2024, 3, 18), today=date(2024, 3, 18))
    await record_visit("TST-1", S, "V3", date(2024, 4, 8), reason="travelling", today=date(2024, 4, 8))  # 2 days late
    assert (await visits(as_of=date(2024, 4, 8)))["V3"].visit.status == "late"
    with pytest.raises(InvalidInput):
        await version_changes.change_protocol_version(
            "TST-1", S, "2.0", date(2024, 6, 1), reason="", today=date(2024, 6, 2)
        )
    moved = await version_changes.change_protocol_version(
        "TST-1", S, "2.0", date(2024, 6, 1), "re-consented", today=date(2024, 6, 2)
    )
    assert moved.protocol_version == "2.0"
    rows = await visits(as_of=date(2024, 6, 2))
    v3 = rows["V3"]
    assert (v3.visit.status, v3.visit.latest, v3.protocol_version) == ("late", date(2024, 4, 4), "1.0")
    # V4, added by 2.0, closed on 2024-05-11, before the change took effect: not expected, never missed.
    v4 = rows["V4"]
    assert (v4.protocol_version, v4.visit.target, v4.visit.status) == ("2.0", date(2024, 5, 6), "not_applicable")
    assert await ProtocolChange.count() == 1
    stored = {
        r.visit.visit: r for r in await worklists.worklist("TST-1", date(2024, 6, 2), kind="missed_or_out_of_window")
    }
    assert stored["V3"].visit.status == "late" and "V4" not in stored


@pytest.mark.parametrize(
    ("as_of", "today", "week", "overdue"),
    [
        (date(2024, 3, 8), [], [], []),  # the week [03-08, 03-14] ends the day before the window opens
        (date(2024, 3, 9), [], ["V2"], []),
        (date(2024, 3, 14), [], ["V2"], []),
        (date(2024, 3, 15), ["V2"], ["V2"], []),
        (date(2024, 3, 21), ["V2"], ["V2"], []),
        (date(2024, 3, 22), [], [], ["V2"]),
    ],
)
async def test_worklists_at_the_window_edges(randomized, as_of, today, week, overdue):
    async def codes(kind):
        return [r.visit.visit for r in await worklists.worklist("TST-1", as_of, kind=kind) if r.visit.visit == "V2"]

    assert (await codes("today"), await codes("week"), await codes("overdue")) == (today, week, overdue)


@pytest.mark.parametrize(
    ("as_of", "kind", "status"),
    [
        (date(2024, 3, 14), "week", "upcoming"),
        (date(2024, 3, 15), "today", "due"),
        (date(2024, 3, 22), "overdue", "missed"),
    ],
)
async def test_worklist_statuses_are_as_of_the_asked_date(randomized, as_of, kind, status):
    rows = {r.visit.visit: r.visit for r in await worklists.worklist("TST-1", as_of, kind=kind)}
    assert rows["V2"].status == status


async def test_today_lists_appointments_and_worklists_filter_by_site(randomized):
    await sites.create_site("TST-1", "102", "Lakeside")
    await book_appointment("TST-1", S, "V3", date(2024, 4, 2), today=TODAY)
    assert [r.visit.visit for r in await worklists.worklist("TST-1", date(2024, 4, 2), kind="today")] == ["V3"]
    assert await worklists.worklist("TST-1", date(2024, 4, 2), site="102", kind="today") == []
    with pytest.raises(NotFound, match="study TST-1 has no site 999"):
        await worklists.worklist("TST-1", date(2024, 4, 2), site="999", kind="today")
    with pytest.raises(NotFound, match="study TST-1 has no site 999"):
        await worklists.study_visits("TST-1", date(2024, 4, 2), site="999")
    with pytest.raises(InvalidInput, match="'soon' is not a worklist"):
        await worklists.worklist("TST-1", TODAY, kind="soon")


async def test_study_visits_equals_the_pure_engine(study):
    people = {
        "101-001": ("A", {"randomization": RANDOMIZED, "first_dose": RANDOMIZED}, {"V2": date(2024, 3, 16)}),
        "101-002": (
            "P",
            {"randomization": date(2024, 2, 1), "withdrawal": date(2024, 2, 20)},
            {"X1": date(2024, 2, 3)},
        ),
        "101-003": (None, {"randomization": date(2024, 3, 11)}, {}),
    }
    for subject, (arm, events, actuals) in people.items():
        await participants.enroll_participant(
            study, subject, "101", arm=arm, enrolled_on=date(2024, 1, 20), today=TODAY
        )
        for event, day in events.items():
            await record_event(study, subject, event, day, today=TODAY)
        for code, day in actuals.items():
            await record_visit(study, subject, code, day, today=TODAY)
    protocol = await protocols.get_protocol(study, "1.0")
    as_of = date(2024, 4, 1)
    expected = [
        (subject, row)
        for subject, (arm, events, actuals) in sorted(people.items())
        for row in evaluate(protocol, events, actuals, as_of, arm=arm)
    ]
    assert await worklists.study_visits(study, as_of) == expected
    due = await worklists.study_visits(study, as_of, statuses={"due"})
    assert due == [(s, row) for s, row in expected if row.status == "due"]


async def test_persist_schedules_stores_and_then_changes_nothing(randomized):
    rows = await worklists.study_visits("TST-1", date(2024, 3, 20))
    saved = await schedules.persist_schedules("TST-1", rows, date(2024, 3, 20))
    assert saved.inserted == 0 and saved.deleted == 0 and saved.updated > 0
    assert await schedules.persist_schedules("TST-1", rows, date(2024, 3, 20)) == type(saved)(0, 0, 0)
    with pytest.raises(NotFound, match="no participant 999"):
        await schedules.persist_schedules("TST-1", [("999", rows[0][1])], date(2024, 3, 20))


async def test_demo_loads_once_and_fills_every_worklist(db):
    today = date(2025, 11, 3)
    assert await demo.load_demo(today) is True
    assert await demo.load_demo(today) is False
    assert [s.code for s in await protocols.list_studies()] == ["DEMO-001", "ONC-201"]
    for kind in worklists.WORKLISTS:
        assert await worklists.worklist("DEMO-001", today, kind=kind), kind
    statuses = {row.status for _, row in await worklists.study_visits("DEMO-001", today)}
    assert statuses >= {"due", "missed", "late", "early", "on_time", "upcoming"}
    found, _ = await queue.listing("DEMO-001")  # detection ran: the monitors' queue has work in it
    assert {row.rule for row in found} >= {"visit_late", "visit_early", "visit_missed", None}
    assert {row.state for row in found} == {"detected", "site_response"}


async def test_events_and_visits_cannot_be_recorded_for_a_day_still_to_come(randomized):
    tomorrow = TODAY + timedelta(days=1)
    with pytest.raises(
        InvalidInput, match=r"participant 101-001.*: first_dose cannot be recorded on 2024-03-17"
    ) as error:
        await record_event("TST-1", S, "first_dose", tomorrow, today=TODAY)
    assert fields(error.value) == {"date"}
    with pytest.raises(InvalidInput, match="visit V2 cannot be recorded on 2024-03-17, after today") as error:
        await record_visit("TST-1", S, "V2", tomorrow, today=TODAY)
    assert fields(error.value) == {"date"}
    done = await record_visit("TST-1", S, "V2", TODAY, today=TODAY)  # today itself is fine
    assert done.visit.actual == TODAY


async def test_site_codes_and_subject_ids_hold_no_slash(study):
    """They name audit records (`STUDY/SITE/SUBJECT/...`), which incremental deviation detection reads."""
    from trialcoord.scheduling import importing

    with pytest.raises(InvalidInput, match="holds a '/'"):
        await sites.create_site(study, "1/2", "Slash Clinic")
    with pytest.raises(InvalidInput, match="holds a '/'"):
        await participants.enroll_participant(study, "1/7", "101", today=date(2024, 3, 4))
    with pytest.raises(InvalidInput) as bad:
        await importing.import_events(
            study, "participant,event,date\n1/7,randomization,2024-03-04\n", site="101", today=date(2024, 6, 1)
        )
    assert any(p.field == "participant" and "'/'" in p.message for p in bad.value.problems)
