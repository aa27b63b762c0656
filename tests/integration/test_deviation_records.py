"""Deviation records in the database: detection (idempotent, incremental, resolution by data correction),
window exceptions, manual records, the review with signed classification and closure, CAPA; on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.conftest import PASSWORD, RANDOMIZED, SITE_A, account_rules, add_user
from trialcoord.accounts.signing import signing_by_password
from trialcoord.deviations import detection, deviation_review, manual, queue, verification
from trialcoord.kernel import audit_log
from trialcoord.kernel.database.engine import fetch, transaction
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.scheduling import participants, protocols, sites, version_changes, visits

pytestmark = pytest.mark.anyio
TODAY = date(2024, 6, 1)  # V2 (window 03-15..03-21) and V3 (window 03-29..04-04) closed long ago


@pytest.fixture
async def enrolled(study):
    for subject in ("1001", "1002", "1003"):
        await participants.enroll_participant(study, subject, SITE_A, arm="P", enrolled_on=RANDOMIZED, today=TODAY)
        await visits.record_event(study, subject, "randomization", RANDOMIZED, today=TODAY)
    await visits.record_visit(study, "1001", "V2", date(2024, 3, 25), reason="travelling", today=TODAY)  # 4 days late
    # Early: V3 counts from V2's actual (window 04-05 .. 04-11)
    await visits.record_visit(study, "1001", "V3", date(2024, 4, 1), reason="moving away", today=TODAY)
    await visits.record_visit(study, "1002", "V2", date(2024, 3, 18), today=TODAY)
    await visits.record_visit(study, "1002", "V3", date(2024, 3, 27), reason="moving away", today=TODAY)  # 2 early
    return study


def keyed(rows):
    return {(r.participant, r.visit, r.rule): r for r in rows}


async def test_detection_creates_one_record_per_finding_with_the_issue_fields(enrolled):
    result = await detection.detect(enrolled, TODAY)
    assert result.scope == "full" and result.created > 0
    rows, total = await queue.listing(enrolled)
    found = keyed(rows)
    assert total == len(rows) == result.created
    late = found[("1001", "V2", "visit_late")]
    assert (late.days_outside, late.category, late.state, late.occurrence) == (
        4,
        "visit schedule",
        "detected",
        1,
    )
    assert found[("1002", "V3", "visit_early")].days_outside == -2
    assert ("1003", "V2", "visit_missed") in found and ("1003", "V3", "visit_missed") in found
    assert ("1001", "V3", "visit_late") not in found and ("1002", "V2", "visit_late") not in found
    assert all(r.detected_at and r.classification for r in rows)
    created = await audit_log.browse(audit_log.AuditFilter(record_type="deviation"), None, 100)
    assert len(created) == total and {e.action for e in created} == {"create"}


async def test_detection_is_idempotent(enrolled):
    await detection.detect(enrolled, TODAY)
    before, _ = await queue.listing(enrolled)
    for full in (False, True):
        again = await detection.detect(enrolled, TODAY, full=full)
        assert (again.created, again.updated, again.resolved, again.reopened) == (0, 0, 0, 0)
    after, _ = await queue.listing(enrolled)
    assert after == before


async def test_an_incremental_run_after_one_visit_looks_at_that_participant_only(enrolled):
    await detection.detect(enrolled, TODAY)
    await visits.record_visit(enrolled, "1003", "PK", date(2024, 3, 14), today=TODAY)  # optional, in window
    nothing = await detection.detect(enrolled, TODAY)
    assert nothing.scope == "1 participant" and nothing.created == 0
    quiet = await detection.detect(enrolled, TODAY)
    assert quiet.scope == "0 participants"


async def test_a_window_closing_since_the_last_run_brings_its_participant_in(study):
    await participants.enroll_participant(study, "1004", SITE_A, arm="P", enrolled_on=RANDOMIZED, today=RANDOMIZED)
    await visits.record_event(study, "1004", "randomization", RANDOMIZED, today=RANDOMIZED)
    first = await detection.detect(study, date(2024, 3, 21))  # V2's last day: not missed yet (screening is)
    assert first.created == 1
    second = await detection.detect(study, date(2024, 3, 22))
    assert second.scope == "1 participant" and second.created == 1
    rows, _ = await queue.listing(study)
    assert [(r.visit, r.rule) for r in rows] == [("SCR", "visit_missed"), ("V2", "visit_missed")]


async def test_a_corrected_visit_date_resolves_the_record_by_data_correction_never_deletes_it(enrolled):
    await detection.detect(enrolled, TODAY)
    await visits.record_visit(enrolled, "1001", "V2", date(2024, 3, 20), reason="transcription error", today=TODAY)
    result = await detection.detect(enrolled, TODAY)
    # V2 is back in its window, and so is V3, whose window follows V2's actual date.
    assert (result.resolved, result.scope) == (2, "1 participant")
    rows, _ = await queue.listing(enrolled, states=["resolved_by_data_correction"])
    assert {(r.participant, r.visit, r.rule) for r in rows} == {
        ("1001", "V2", "visit_late"),
        ("1001", "V3", "visit_early"),
    }
    entry = (await audit_log.browse(audit_log.AuditFilter(record_type="visit"), None, 1))[0]
    assert entry.reason == "transcription error"
    assert {r.resolved_by_entry for r in rows} == {entry.sequence}
    resolved = keyed(rows)[("1001", "V2", "visit_late")]
    # Found again once the date goes back out of the window: the same record, reopened.
    await visits.record_visit(enrolled, "1001", "V2", date(2024, 3, 26), reason="source says 26th", today=TODAY)
    again = await detection.detect(enrolled, TODAY)
    assert again.reopened == 2
    back = await queue.get(enrolled, resolved.id)
    assert (back.state, back.days_outside) == ("detected", 5)


def recorded_on(server_clock, day: date) -> None:
    """The server clock on that day (what an exception is recorded on)."""
    server_clock.to(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))


async def test_an_exception_approved_before_the_visit_prevents_the_deviation_and_is_audited(enrolled, server_clock):
    await participants.enroll_participant(enrolled, "1005", SITE_A, arm="P", enrolled_on=RANDOMIZED, today=TODAY)
    await visits.record_event(enrolled, "1005", "randomization", RANDOMIZED, today=TODAY)
    recorded_on(server_clock, date(2024, 3, 20))
    await manual.approve_exception(
        enrolled, "1005", "V2", 0, 5, date(2024, 3, 20), "patient travelling", "ivan", today=TODAY
    )
    late = "extension approved"  # still outside the protocol's window: a reason with the date
    await visits.record_visit(enrolled, "1005", "V2", date(2024, 3, 25), reason=late, today=TODAY)  # 4 late, within +5
    await manual.approve_exception(
        enrolled, "1001", "V2", 0, 10, date(2024, 3, 30), "late approval", "ivan", today=TODAY
    )  # after the visit: explains, does not prevent
    recorded_on(server_clock, TODAY)  # approved before the visit, but entered long after it: does not prevent
    await manual.approve_exception(enrolled, "1002", "V3", 5, 0, date(2024, 3, 20), "entered late", "ivan", today=TODAY)
    await detection.detect(enrolled, TODAY)
    found = keyed((await queue.listing(enrolled))[0])
    assert ("1005", "V2", "visit_late") not in found and ("1001", "V2", "visit_late") in found
    assert ("1002", "V3", "visit_early") in found
    entries = await audit_log.browse(audit_log.AuditFilter(record_type="window_exception"), None, 5)
    assert {e.record_id for e in entries} == {
        "TST-1/101/1005/V2/exception",
        "TST-1/101/1001/V2/exception",
        "TST-1/101/1002/V3/exception",
    }
    with pytest.raises(InvalidInput, match="reason"):
        await manual.approve_exception(enrolled, "1005", "V3", 0, 2, date(2024, 3, 20), " ", "ivan", today=TODAY)


async def test_a_visit_after_collection_stopped_is_a_deviation(enrolled):
    await visits.record_event(enrolled, "1002", "withdrawal", date(2024, 3, 20), today=TODAY)
    await visits.record_visit(enrolled, "1002", "DRUG-RETURN", date(2024, 3, 29), today=TODAY)
    await detection.detect(enrolled, TODAY)
    found = keyed((await queue.listing(enrolled))[0])
    assert ("1002", "V3", "visit_after_ending_event") in found
    assert ("1002", "DRUG-RETURN", "visit_after_ending_event") in found  # unscheduled ones too


async def test_found_unscheduled_visits_after_an_early_termination_raise_no_deviation(enrolled):
    await visits.record_event(enrolled, "1002", "early_termination", date(2024, 3, 20), today=TODAY)
    await visits.record_visit(enrolled, "1002", "AE-FOLLOW-UP", date(2024, 3, 29), today=TODAY)
    await visits.record_visit(enrolled, "1002", "DRUG-RETURN", date(2024, 4, 2), today=TODAY)
    await detection.detect(enrolled, TODAY)
    found = keyed((await queue.listing(enrolled))[0])
    assert [key for key in found if key[0] == "1002" and key[2] == "visit_after_ending_event"] == []
    assert ("1002", "V3", "visit_early") in found  # V3, done after the end, is judged as it happened


async def test_collection_stops_only_under_a_version_the_participant_followed(enrolled):
    """Review finding: a loaded version where early termination stops collection made it stop for everyone."""
    from tests.conftest import PROTOCOL_V1
    from trialcoord.scheduling.protocol_files import parse_protocol

    text = PROTOCOL_V1.replace('version: "1.0"', 'version: "3.0"').replace(
        "early_termination: {ends_schedule: true}", "early_termination: {ends_schedule: true, collection: stops}"
    )
    await protocols.load_protocol_version(parse_protocol(text, "tst-3.yaml"), text, "tst-3.yaml")
    for subject in ("1002", "1003"):
        await visits.record_event(enrolled, subject, "early_termination", date(2024, 3, 20), today=TODAY)
        await visits.record_visit(enrolled, subject, "DRUG-RETURN", date(2024, 3, 29), today=TODAY)
    await version_changes.change_protocol_version(enrolled, "1003", "3.0", date(2024, 3, 1), "amendment 3", today=TODAY)
    await detection.detect(enrolled, TODAY)
    found = keyed((await queue.listing(enrolled))[0])
    assert [k for k in found if k[2] == "visit_after_ending_event"] == [
        ("1003", "DRUG-RETURN", "visit_after_ending_event")
    ]


async def test_manual_deviations_are_recorded_with_any_category(enrolled):
    row = await manual.record_manual(
        enrolled,
        SITE_A,
        "study intervention",
        "Dose given from the wrong kit",
        date(2024, 4, 2),
        "cora",
        subject_id="1001",
        visit="V3",
        subcategory="WRONG TREATMENT",
        classification="important",
        today=TODAY,
    )
    assert (row.source, row.rule, row.dvcat, row.dvdecod) == (
        "manual",
        None,
        "STUDY INTERVENTION",
        "WRONG TREATMENT",
    )
    with pytest.raises(InvalidInput) as bad:
        await manual.record_manual(enrolled, SITE_A, "catering", " ", date(2030, 1, 1), "cora", today=TODAY)
    assert {p.field for p in bad.value.problems} == {"category", "description", "occurred_on"}
    with pytest.raises(NotFound, match="1999"):
        await manual.record_manual(enrolled, SITE_A, "other", "x", TODAY, "cora", subject_id="1999", today=TODAY)


@pytest.fixture
async def detected(enrolled):
    await add_user("mona", ("monitor", "TST-1", None), printed_name="Mona Monitor")
    await add_user("cora", ("coordinator", "TST-1", SITE_A))
    await detection.detect(enrolled, TODAY)
    return keyed((await queue.listing(enrolled))[0])[("1001", "V2", "visit_late")]


async def test_a_deviation_walks_from_detection_to_closure_with_signed_classification_and_closure(
    detected, installation
):
    study, did = "TST-1", detected.id
    row = await deviation_review.take_step(
        study, did, "respond", "cora", response="Patient had flu", corrective_action="Reminder call two days before"
    )
    assert (row.state, row.site_reason) == ("site_response", "Patient had flu")
    assert (await deviation_review.take_step(study, did, "acknowledge", "mona")).state == "under_review"
    signing = await signing_by_password("mona", "review", PASSWORD, rules=account_rules())
    row = await deviation_review.take_step(
        study,
        did,
        "classify",
        "mona",
        classification="non_important",
        category="visit schedule",
        subcategory="VISIT OUT OF WINDOW",
        signing=signing,
        installation=installation,
    )
    assert row.state == "classified"
    closing = await signing_by_password("mona", "approval", PASSWORD, rules=account_rules())
    row = await deviation_review.take_step(study, did, "close", "mona", signing=closing, installation=installation)
    assert row.state == "closed" and row.closed_at
    judged = await deviation_review.verify_signatures(study, did)
    assert [(s.meaning, s.verdict) for s in judged] == [("review", "valid"), ("approval", "valid")]
    shown = await queue.get(study, did)
    assert [s.step for s in shown.steps] == ["respond", "acknowledge", "classify", "close"]
    trail = await audit_log.browse(audit_log.AuditFilter(record_type="deviation"), None, 4)
    assert [e.action for e in trail] == ["close", "classify", "acknowledge", "respond"]
    reopened = await deviation_review.take_step(study, did, "reopen", "mona", reason="source data differs")
    assert (reopened.state, reopened.closed_at) == ("reopened", None)


@pytest.mark.parametrize(
    "state_steps, step",
    [
        ([], "classify"),
        ([], "close"),
        ([], "reopen"),
        (["respond"], "close"),
        (["respond"], "classify"),
        ([], "acknowledge"),
        (["respond", "acknowledge"], "respond"),
        (["respond", "acknowledge"], "close"),
        (["respond", "acknowledge"], "acknowledge"),
    ],
)
async def test_every_forbidden_transition_is_refused_and_changes_nothing(detected, state_steps, step, installation):
    study, did = "TST-1", detected.id
    for taken in state_steps:
        await deviation_review.take_step(study, did, taken, "mona", response="why")
    before = await queue.get(study, did)
    signing = None
    if step in ("classify", "close"):
        signing = await signing_by_password(
            "mona", "review" if step == "classify" else "approval", PASSWORD, rules=account_rules()
        )
    with pytest.raises(InvalidInput, match="cannot be"):
        await deviation_review.take_step(
            study,
            did,
            step,
            "mona",
            reason="r",
            response="r",
            classification="important",
            category="visit schedule",
            signing=signing,
            installation=installation,
        )
    assert await queue.get(study, did) == before


async def test_signed_steps_need_the_matching_signature_and_stale_versions_conflict(detected):
    study, did = "TST-1", detected.id
    with pytest.raises(Conflict, match="changed meanwhile"):
        await deviation_review.take_step(study, did, "respond", "cora", response="x", row_version=99)
    await deviation_review.take_step(study, did, "respond", "cora", response="flu", row_version=1)
    await deviation_review.take_step(study, did, "acknowledge", "mona", row_version=2)
    with pytest.raises(InvalidInput, match="signs it for review"):
        await deviation_review.take_step(
            study, did, "classify", "mona", classification="important", category="visit schedule"
        )
    with pytest.raises(InvalidInput, match="subcategory"):
        await deviation_review.take_step(
            study,
            did,
            "classify",
            "mona",
            classification="important",
            category="visit schedule",
            subcategory="WRONG DOSE",
        )


async def test_bulk_acknowledge_reports_each_refusal(detected):
    rows, _ = await queue.listing("TST-1")
    ids = [r.id for r in rows]
    for i in ids[:-1]:
        await deviation_review.take_step("TST-1", i, "respond", "cora", response="why")
    await deviation_review.take_step("TST-1", ids[0], "acknowledge", "mona")
    result = await deviation_review.acknowledge_many("TST-1", ids + [99999], "mona")
    assert sorted(result.acknowledged) == sorted(ids[1:-1])  # the last is not responded to yet
    assert "only one that is site_response" in result.refused[ids[-1]]
    assert set(result.refused) == {ids[0], ids[-1], 99999}


async def test_capa_groups_deviations_and_is_audited(detected):
    rows, _ = await queue.listing("TST-1")
    capa = await deviation_review.create_capa(
        "TST-1",
        "Visit reminders",
        "No reminder process",
        "Call patients",
        "Reminder SOP",
        "cora",
        date(2024, 7, 1),
        [r.id for r in rows[:2]],
        "cora",
    )
    assert capa.deviations == [r.id for r in rows[:2]] and capa.state == "open"
    closed = await deviation_review.close_capa("TST-1", capa.id, "mona", "no repeat in 3 months")
    assert closed.state == "closed"
    with pytest.raises(Conflict):
        await deviation_review.close_capa("TST-1", capa.id, "mona", "again")
    with pytest.raises(InvalidInput):
        await deviation_review.create_capa("TST-1", " ", "", "x", "x", "x", None, [], "cora")
    kinds = [e.action for e in await audit_log.browse(audit_log.AuditFilter(record_type="capa"), None, 5)]
    assert kinds == ["close", "create"]


async def tamper(db, sql: str) -> None:
    """As the database owner could: the guard triggers of deviation_signatures go first."""
    async with transaction():
        if db.kind == "sqlite":
            for name in ("deviation_signatures_no_update", "deviation_signatures_no_delete"):
                await fetch(f"DROP TRIGGER {name}")
        else:
            await fetch("ALTER TABLE deviation_signatures DISABLE TRIGGER USER")
        await fetch(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM deviations",
        "UPDATE deviation_steps SET actor = 'mallory'",
        "DELETE FROM deviation_steps",
        "UPDATE deviation_signatures SET signer_id = 'mallory'",
        "DELETE FROM window_exceptions",
    ],
)
async def test_the_database_refuses_to_delete_deviations_or_change_their_history(detected, sql, installation):
    await deviation_review.take_step("TST-1", detected.id, "respond", "cora", response="flu")
    await deviation_review.take_step("TST-1", detected.id, "acknowledge", "mona")
    await deviation_review.take_step(
        "TST-1",
        detected.id,
        "classify",
        "mona",
        classification="important",
        category="visit schedule",
        signing=await signing_by_password("mona", "review", PASSWORD, rules=account_rules()),
        installation=installation,
    )
    await manual.approve_exception("TST-1", "1003", "V2", 0, 1, TODAY, "travel", "ivan", today=TODAY)
    with pytest.raises(Exception, match="never"):
        async with transaction():
            await fetch(sql)


@pytest.mark.parametrize(
    "sql, says",
    [
        ("UPDATE deviation_signatures SET content_sha256 = '" + "0" * 64 + "'", "not the one signed"),
        (
            "UPDATE deviation_signatures SET decision = replace(decision, 'important', 'non_important')",
            "not the one signed",
        ),
        ("UPDATE deviation_signatures SET value = '00' || substr(value, 3)", "does not verify"),
        ("UPDATE deviation_signatures SET deviation = (SELECT MAX(id) FROM deviations)", "was made for"),
        (
            "UPDATE deviations SET classification = 'non_important' WHERE id = (SELECT MIN(deviation)"
            " FROM deviation_signatures)",
            "classification is not the one signed",
        ),
    ],
)
async def test_verify_checks_deviation_signatures_against_the_registry_and_the_trail(
    db, detected, sql, says, installation
):

    study, did = "TST-1", detected.id
    await deviation_review.take_step(study, did, "respond", "cora", response="flu")
    await deviation_review.take_step(study, did, "acknowledge", "mona")
    await deviation_review.take_step(
        study,
        did,
        "classify",
        "mona",
        classification="important",
        category="visit schedule",
        subcategory="VISIT OUT OF WINDOW",
        signing=await signing_by_password("mona", "review", PASSWORD, rules=account_rules()),
        installation=installation,
    )
    checked, problems = await verification.verify_all()
    assert checked >= 2 and problems == []
    assert [s.verdict for s in await deviation_review.verify_signatures(study, did)] == ["valid"]
    await tamper(db, sql)
    _, problems = await verification.verify_all()
    assert any("TST-1/101/1001/deviation/" in p and says in p for p in problems), problems


async def test_a_closed_capa_takes_no_more_deviations_and_a_deviation_belongs_to_one_capa(detected):
    rows, _ = await queue.listing("TST-1")
    first = await deviation_review.create_capa(
        "TST-1", "Reminders", "No process", "Call", "SOP", "cora", None, [rows[0].id], "cora"
    )
    with pytest.raises(Conflict, match="already belongs"):
        await deviation_review.create_capa("TST-1", "Other", "x", "x", "x", "cora", None, [rows[0].id], "cora")
    await deviation_review.close_capa("TST-1", first.id, "mona", "checked")
    with pytest.raises(Conflict, match="closed"):
        await deviation_review.link_capa("TST-1", first.id, [rows[1].id], "mona")
    assert (await deviation_review.get_capa("TST-1", first.id)).deviations == [rows[0].id]


async def test_a_site_limited_reader_sees_only_capas_they_made_or_that_group_their_deviations(detected):
    rows, _ = await queue.listing("TST-1")
    made = await deviation_review.create_capa(
        "TST-1", "Reminders", "No process", "Call", "SOP", "cora", None, [rows[0].id], "cora"
    )
    assert await deviation_review.list_capas("TST-1", sites={"102"}, user_id="colin") == []
    with pytest.raises(NotFound):
        await deviation_review.get_capa("TST-1", made.id, sites={"102"}, user_id="colin")
    with pytest.raises(NotFound):
        await deviation_review.close_capa("TST-1", made.id, "colin", "done", sites={"102"})
    mine = await deviation_review.list_capas("TST-1", sites={"102"}, user_id="cora")
    assert [(c.id, c.deviations) for c in mine] == [(made.id, [])]  # made by them; no member shown
    assert (await deviation_review.get_capa("TST-1", made.id, sites={SITE_A})).deviations == [rows[0].id]


async def walk_to(study: str, did: int, last: str, installation) -> None:
    """Take a deviation through the review up to `last` (classify or close)."""
    await deviation_review.take_step(study, did, "respond", "cora", response="flu")
    await deviation_review.take_step(study, did, "acknowledge", "mona")
    await deviation_review.take_step(
        study,
        did,
        "classify",
        "mona",
        classification="non_important",
        category="visit schedule",
        subcategory="VISIT OUT OF WINDOW",
        signing=await signing_by_password("mona", "review", PASSWORD, rules=account_rules()),
        installation=installation,
    )
    if last == "close":
        await deviation_review.take_step(
            study,
            did,
            "close",
            "mona",
            signing=await signing_by_password("mona", "approval", PASSWORD, rules=account_rules()),
            installation=installation,
        )


async def test_a_closed_record_keeps_its_signed_facts_and_a_classified_one_goes_back_to_review(detected, installation):
    await walk_to("TST-1", detected.id, "close", installation)
    await visits.record_visit("TST-1", "1001", "V2", date(2024, 3, 30), reason="source: 30th", today=TODAY)
    await detection.detect("TST-1", TODAY)
    closed = await queue.get("TST-1", detected.id)
    assert (closed.state, closed.days_outside) == ("closed", 4)  # as signed; the trail has the change
    early = keyed((await queue.listing("TST-1"))[0])[("1002", "V3", "visit_early")]
    await walk_to("TST-1", early.id, "classify", installation)
    await visits.record_visit("TST-1", "1002", "V3", date(2024, 3, 26), reason="source: 26th", today=TODAY)
    result = await detection.detect("TST-1", TODAY)
    again = await queue.get("TST-1", early.id)
    assert result.updated == 1 and (again.state, again.days_outside) == ("reopened", -3)
    entry = (await audit_log.browse(audit_log.AuditFilter(record_type="deviation", action="update"), None, 1))[0]
    assert entry.old["days_outside"] == -2 and entry.new == {
        **entry.new,
        "days_outside": -3,
        "state": "reopened",
    }


async def test_a_record_a_monitor_reopened_is_not_resolved_again_by_detection(detected):
    await visits.record_visit("TST-1", "1001", "V2", date(2024, 3, 20), reason="typo", today=TODAY)
    await detection.detect("TST-1", TODAY)
    assert (await queue.get("TST-1", detected.id)).state == "resolved_by_data_correction"
    await deviation_review.take_step("TST-1", detected.id, "reopen", "mona", reason="source says 25th")
    await detection.detect("TST-1", TODAY, full=True)
    assert (await queue.get("TST-1", detected.id)).state == "reopened"


async def test_detection_moves_forward_and_never_runs_for_a_day_to_come(enrolled):
    with pytest.raises(InvalidInput, match="still to come"):
        await detection.detect(enrolled, date(2024, 6, 2), today=TODAY)
    await detection.detect(enrolled, date(2024, 5, 1), today=TODAY)
    with pytest.raises(InvalidInput, match="last checked as of 2024-05-01"):
        await detection.detect(enrolled, date(2024, 4, 30), today=TODAY)


async def test_a_visit_done_after_the_run_date_is_not_known_to_that_run(enrolled):
    await detection.detect(enrolled, date(2024, 3, 22), today=TODAY)  # 1001's V2 was done on 03-25
    found = keyed((await queue.listing(enrolled))[0])
    assert ("1001", "V2", "visit_late") not in found and ("1001", "V3", "visit_early") not in found


async def test_an_incremental_run_sees_a_visit_done_between_the_two_run_dates(enrolled):
    """Recorded before a run for an earlier day, so no audit entry is newer than that run: the dates decide."""
    await detection.detect(enrolled, date(2024, 3, 24), today=TODAY)  # 1001's V2 (late, 03-25) not known yet
    assert ("1001", "V2", "visit_late") not in keyed((await queue.listing(enrolled))[0])
    result = await detection.detect(enrolled, date(2024, 3, 26), today=TODAY)
    assert result.scope != "full" and ("1001", "V2", "visit_late") in keyed((await queue.listing(enrolled))[0])


async def test_the_protocols_deviations_section_sets_the_starting_classification(db):
    from tests.conftest import PROTOCOL_V1
    from trialcoord.scheduling.protocol_files import parse_protocol

    text = PROTOCOL_V1.replace("study: TST-1", "study: TST-2") + (
        "deviations:\n  visit_late:\n    thresholds:\n      - {over_days: 7, classification: important}\n"
    )
    await protocols.load_protocol_version(parse_protocol(text, "tst2.yaml"), text, "tst2.yaml")
    await sites.create_site("TST-2", "201", "Hillside", "UTC")
    for subject, v2 in (("2001", date(2024, 3, 25)), ("2002", date(2024, 3, 29))):  # 4 and 8 days late
        await participants.enroll_participant("TST-2", subject, "201", arm="P", enrolled_on=RANDOMIZED, today=TODAY)
        await visits.record_event("TST-2", subject, "randomization", RANDOMIZED, today=TODAY)
        await visits.record_visit("TST-2", subject, "V2", v2, reason="travelling", today=TODAY)
    await detection.detect("TST-2", TODAY)
    found = keyed((await queue.listing("TST-2"))[0])
    assert found[("2001", "V2", "visit_late")].classification == "non_important"
    assert found[("2002", "V2", "visit_late")].classification == "important"
