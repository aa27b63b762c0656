"""The current records against the audit trail (`audit reconcile`, and `verify` running it), and the triggers
that refuse changing regulated rows outside the application, on SQLite and PostgreSQL.

Tampering is done as someone with the database file or a database login would: a connection of their own
(sqlite3, asyncpg), not the application's."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta

import asyncpg
import pytest

from tests.conftest import RANDOMIZED, SITE_A, add_user
from tests.integration.test_cli import run
from trialcoord.audit import reconciling
from trialcoord.documents import documents, participant_consents
from trialcoord.documents.rules.documents import DocumentKey
from trialcoord.kernel import audit_log
from trialcoord.kernel.database.engine import fetch
from trialcoord.scheduling import identities, participants, sites, visits

pytestmark = pytest.mark.anyio
TODAY = date(2024, 6, 3)
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PROTOCOL_DOC = DocumentKey("TST-1", SITE_A, "Site delegation log")


@pytest.fixture
async def flow(study):
    """What a site does: participants enrolled with their events and visits (one late, with its reason; one
    corrected, with its reason), a booking, a missed visit, a site calendar and a closure taken back, a participant
    moved to the amended protocol, deviations detected and one responded to, a grant given and one revoked, personal
    data, a paper consent and a document version in review."""
    from trialcoord.amendments import applying
    from trialcoord.deviations import detection, deviation_review, queue

    for i, subject in enumerate(("1001", "1002", "1003")):
        await participants.enroll_participant(
            study, subject, SITE_A, arm="A", enrolled_on=RANDOMIZED, today=RANDOMIZED, actor="cora"
        )
        await visits.record_event(study, subject, "randomization", RANDOMIZED, today=TODAY, actor="cora")
        await visits.record_event(study, subject, "first_dose", RANDOMIZED + timedelta(days=1 + i), today=TODAY)
    await visits.record_visit(study, "1001", "V2", date(2024, 3, 18), today=TODAY, actor="cora")
    await visits.record_visit(study, "1001", "V2", date(2024, 3, 19), reason="typo in the date", today=TODAY)
    await visits.record_visit(study, "1002", "V2", date(2024, 3, 26), reason="participant was ill", today=TODAY)
    await visits.record_event(study, "1003", "first_dose", date(2024, 3, 8), reason="source checked", today=TODAY)
    await visits.book_appointment(study, "1001", "V3", date(2024, 4, 2), today=date(2024, 3, 20))
    await visits.mark_missed(study, "1003", "V2", "participant travelling", today=TODAY)
    await sites.set_site_calendar(study, SITE_A, "weekdays", today=TODAY)
    await sites.add_site_closure(study, SITE_A, date(2024, 7, 1), date(2024, 7, 5), "renovation", today=TODAY)
    await sites.withdraw_site_closure(study, SITE_A, date(2024, 7, 1), "entered by mistake", today=TODAY)
    await applying.change_version(study, "1002", "2.0", date(2024, 6, 1), "re-consented to amendment 1", today=TODAY)
    await detection.detect(study, TODAY, today=TODAY)
    rows, _ = await queue.listing(study, participant="1002")
    late = next(row for row in rows if row.rule == "visit_late")
    await deviation_review.take_step(study, late.id, "respond", "cora", response="participant was ill")
    await deviation_review.create_capa(
        study, "Late visits", "no reminders", "remind", "reminders a week ahead", "cora", TODAY, [late.id], "mona"
    )
    await add_user("cora", ("coordinator", study, SITE_A))
    await add_user("mona", ("monitor", study, None))
    from trialcoord.accounts import users

    (kept,) = (await users.get_user("mona")).grants
    await users.revoke(kept.id, "admin", "left the study")
    await identities.set_identity(study, "1001", {"name": "Ann Example", "mrn": "MRN-1"}, actor="cora")
    await identities.set_identity(study, "1001", {"name": "Ann Example", "mrn": None}, actor="cora")
    await participant_consents.record_paper_consent(
        study, "1003", date(2024, 3, 1), "binder 1, tab 3", "cora", TODAY, actor="cora"
    )
    await documents.add_version(PROTOCOL_DOC, "085", "1", PDF, "log.pdf", "first", actor="cora")
    await documents.change_status(PROTOCOL_DOC, "1", "in_review", TODAY, actor="cora")
    return study


async def test_a_database_written_only_through_the_application_reconciles(flow):
    """The flow updated and deleted regulated rows through the use cases, migration 12's triggers in place: the
    application's own connections are the recorded path."""
    await visits.record_visit(flow, "1003", "V3", date(2024, 4, 2), reason="after the missed V2", today=TODAY)
    rows = await fetch("SELECT actual FROM visits WHERE code = 'V3' AND participant = 3")
    assert str(rows[0]["actual"]) == "2024-04-02"
    found = await reconciling.reconcile()
    assert found.differences == []
    for table in ("recorded_events", "visits", "participants", "sites", "grants", "participant_identities"):
        assert found.rows[table] > 0, table
    for table in ("participant_consents", "deviations", "capas", "document_versions", "documents", "protocol_versions"):
        assert found.rows[table] > 0, table
    assert found.entries >= 40


# Tampering from outside the application -------------------------------------------------------------------------


async def tamper(db, *statements: str) -> None:
    """Statements run on a connection of one's own, triggers out of the way as the database's owner can."""
    if db.kind == "sqlite":
        connection = sqlite3.connect(db.url.removeprefix("sqlite:///"))
        try:
            _as_owner_sqlite(connection)
            for statement in statements:
                connection.execute(statement)
            connection.commit()
        finally:
            connection.close()
        return
    connection = await asyncpg.connect(db.url)
    try:
        async with connection.transaction():
            await connection.execute("SET LOCAL session_replication_role = replica")  # user triggers off
            for statement in statements:
                await connection.execute(statement)
    finally:
        await connection.close()


def _as_owner_sqlite(connection: sqlite3.Connection) -> None:
    """SQLite's triggers are the file's: its owner drops the ones in the way."""
    names = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
    for name in names:
        if name.startswith("regulated_"):
            connection.execute(f"DROP TRIGGER {name}")


async def _entry(record_type: str, record_id: str) -> int:
    rows = await fetch(
        "SELECT max(sequence) AS sequence FROM audit_entries WHERE record_type = {} AND record_id = {}",
        record_type,
        record_id,
    )
    return rows[0]["sequence"]


async def test_an_event_date_changed_in_the_database_is_named_with_the_entry_that_set_it(flow, db):
    event = await _entry("participant_event", "TST-1/101/1003/first_dose")
    await tamper(db, "UPDATE recorded_events SET date = '2024-03-09' WHERE event = 'first_dose' AND participant = 3")
    assert (await audit_log.verify()).ok  # the trail itself is intact: only the record changed
    (difference,) = (await reconciling.reconcile()).differences
    assert (difference.table, difference.record_id, difference.field) == (
        "recorded_events",
        "TST-1/101/1003/first_dose",
        "date",
    )
    assert (difference.current, difference.expected, difference.sequence) == ("2024-03-09", "2024-03-08", event)
    assert str(difference) == (
        f'recorded_events TST-1/101/1003/first_dose: date is "2024-03-09", the trail says "2024-03-08" (entry {event})'
    )


async def test_reconcile_and_verify_pass_the_applications_writes_and_fail_a_visit_date_changed_outside(
    flow, db, tmp_path
):
    env = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_SIGNATURES_DIR": str(tmp_path)}
    reconciled = run("audit", "reconcile", env=env)
    assert reconciled.returncode == 0, reconciled.stderr
    assert "rows of 15 regulated tables match the" in reconciled.stdout
    verified = run("verify", env=env)
    assert verified.returncode == 0, verified.stderr
    assert "rows of 15 regulated tables match the" in verified.stdout

    entry = await _entry("visit", "TST-1/101/1001/V2")
    await tamper(db, "UPDATE visits SET actual = '2024-03-20' WHERE code = 'V2' AND participant = 1")
    verified = run("verify", env=env)
    assert verified.returncode == 1, verified.stdout + verified.stderr
    line = f'visits TST-1/101/1001/V2: actual is "2024-03-20", the trail says "2024-03-19" (entry {entry})'
    assert line in verified.stderr and "1 differences between" in verified.stderr
    reconciled = run("audit", "reconcile", "--format", "json", env=env)
    assert reconciled.returncode == 1, reconciled.stderr
    report = json.loads(reconciled.stdout)
    assert report["ok"] is False and report["differences"] == [
        {
            "table": "visits",
            "record_type": "visit",
            "record_id": "TST-1/101/1001/V2",
            "field": "actual",
            "current": "2024-03-20",
            "expected": "2024-03-19",
            "sequence": entry,
            "what": "differs from the trail",
        }
    ]


TAMPERING = {  # what was changed -> (statement, table, record ID, field, current, expected)
    "an arm": ("UPDATE participants SET arm = 'P' WHERE subject_id = '1002'", "participants", "TST-1/101/1002", "arm"),
    "a site's calendar": ("UPDATE sites SET calendar = NULL", "sites", "TST-1/101", "calendar"),
    "a grant's role": (
        "UPDATE grants SET role = 'administrator' WHERE user_id = 'cora'",
        "grants",
        None,
        "role",
    ),
    "a revocation undone": ("UPDATE grants SET revoked_by = NULL, revoked_at = NULL", "grants", None, "revoked_by"),
    "a consent's obtainer": (
        "UPDATE participant_consents SET obtained_by = 'ivan'",
        "participant_consents",
        "TST-1/101/1003/consent/paper/2024-03-01",
        "obtained_by",
    ),
    "a deviation's state": (
        "UPDATE deviations SET state = 'closed' WHERE site_reason IS NOT NULL",
        "deviations",
        None,
        "state",
    ),
    "a document's status": (
        "UPDATE document_versions SET status = 'effective'",
        "document_versions",
        "TST-1/101/documents/Site delegation log/1",
        "status",
    ),
    "a cleared identifier put back": (
        "UPDATE participant_identities SET mrn = name",
        "participant_identities",
        "TST-1/101/1001",
        "mrn",
    ),
    "an appointment": ("UPDATE visits SET appointment = NULL", "visits", "TST-1/101/1001/V3", "appointment"),
    "a CAPA's owner": ("UPDATE capas SET owner = 'nobody'", "capas", "TST-1/capa/1", "owner"),
    "why a visit was missed": (
        "UPDATE visits SET missed_reason = 'forgot' WHERE missed_reason IS NOT NULL",
        "visits",
        "TST-1/101/1003/V2",
        "missed_reason",
    ),
}


async def test_each_regulated_table_changed_in_the_database_is_reported(flow, db):
    await tamper(db, *(statement for statement, *_ in TAMPERING.values()))
    found = (await reconciling.reconcile()).differences
    assert sorted((d.table, d.field) for d in found) == sorted(
        (table, field) for _, table, _, field in TAMPERING.values()
    )
    for statement, table, record_id, field in TAMPERING.values():
        (difference,) = (d for d in found if (d.table, d.field) == (table, field))
        assert record_id in (None, difference.record_id), statement
        assert difference.sequence is not None, statement  # the entry that set the value the trail says


async def test_rows_created_or_deleted_outside_the_application_are_reported(flow, db):
    await tamper(
        db,
        "DELETE FROM participant_consents",
        "INSERT INTO recorded_events (participant, event, date) VALUES (2, 'withdrawal', '2024-05-01')",
    )
    found = {(d.table, d.record_id, d.what) for d in (await reconciling.reconcile()).differences}
    assert found == {
        ("participant_consents", "TST-1/101/1003/consent/paper/2024-03-01", "deleted outside the recorded paths"),
        ("recorded_events", "TST-1/101/1002/withdrawal", "created outside the recorded paths"),
    }


# The database's own refusal ------------------------------------------------------------------------------------

OTHER_CLIENT = [  # (table, statement) run by a client that is not the application (a sqlite3 shell, psql)
    ("recorded_events", "UPDATE recorded_events SET date = '2024-03-09'"),
    ("visits", "UPDATE visits SET actual = '2024-03-20' WHERE actual IS NOT NULL"),
    ("visits", "DELETE FROM visits"),
    ("participants", "UPDATE participants SET arm = 'P'"),
    ("sites", "UPDATE sites SET name = 'elsewhere'"),
    ("grants", "UPDATE grants SET revoked_by = NULL"),
    ("participant_consents", "DELETE FROM participant_consents"),
    ("participant_identities", "UPDATE participant_identities SET mrn = name"),
    ("deviations", "UPDATE deviations SET state = 'closed'"),
    ("document_versions", "UPDATE document_versions SET status = 'effective'"),
]
REFUSED = r"rows change only through trialcoord, which audits each change: (UPDATE|DELETE) refused"


async def test_another_client_is_refused_changing_regulated_rows(flow, db):
    if db.kind == "sqlite":
        connection = sqlite3.connect(db.url.removeprefix("sqlite:///"))
        try:
            for _, statement in OTHER_CLIENT:
                # A sqlite3 shell has no such function: the statement does not even compile.
                with pytest.raises(sqlite3.OperationalError, match="no such function: trialcoord_recorded_path"):
                    connection.execute(statement)
            connection.create_function("trialcoord_recorded_path", 0, lambda: 0)  # one saying it is not the app
            for table, statement in OTHER_CLIENT:
                with pytest.raises(sqlite3.IntegrityError, match=f"{table} {REFUSED}"):
                    connection.execute(statement)
        finally:
            connection.close()
    else:
        connection = await asyncpg.connect(db.url)
        try:
            for table, statement in OTHER_CLIENT:
                with pytest.raises(asyncpg.RaiseError, match=f"{table} {REFUSED}"):
                    await connection.execute(statement)
                with pytest.raises(asyncpg.RaiseError, match="TRUNCATE refused"):
                    await connection.execute(f"TRUNCATE {table} CASCADE")
        finally:
            await connection.close()
    assert (await reconciling.reconcile()).differences == []  # nothing changed
