"""The audit trail as stored: one entry per regulated write in the same transaction, append-only, and every
tampering with the rows detected, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from tests.conftest import RANDOMIZED, SITE_A, SUBJECT_A, add_user, signed_in
from trialcoord.kernel import audit_log, audit_store
from trialcoord.kernel.database.engine import fetch, transaction
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.rules.audit_entries import AuditEntry, canonical_bytes, canonical_json
from trialcoord.kernel.rules.merkle_tree import leaf_hash
from trialcoord.scheduling import participants, version_changes, visits

pytestmark = pytest.mark.anyio
TODAY = date(2024, 6, 1)


async def entries() -> list[audit_store.TrailEntry]:
    return await audit_log.export_rows(audit_store.AuditFilter(), 10_000)


async def test_each_regulated_write_is_one_entry_naming_who_what_and_why(study):
    before = len(await entries())
    await participants.enroll_participant(
        study, "1001", SITE_A, arm="A", enrolled_on=RANDOMIZED, today=TODAY, actor="cora"
    )
    await visits.record_event(study, "1001", "randomization", RANDOMIZED, today=TODAY, actor="cora")
    await visits.record_event(
        study, "1001", "randomization", date(2024, 3, 5), reason="typo in CRF", today=TODAY, actor="cora"
    )
    await visits.record_visit(study, "1001", "V2", date(2024, 3, 18), today=TODAY, actor="cora")
    await visits.book_appointment(study, "1001", "V3", date(2024, 4, 2), today=TODAY, actor="cora")
    await visits.mark_missed(study, "1001", "V3", "participant declined", today=TODAY, actor="cora")
    await version_changes.change_protocol_version(study, "1001", "2.0", TODAY, "amendment 2", today=TODAY, actor="ivan")
    new = (await entries())[before:]
    summary = [(e.actor, e.action, e.record_type, e.record_id) for e in new]
    assert summary == [
        ("cora", "create", "participant", "TST-1/101/1001"),
        ("cora", "create", "participant_event", "TST-1/101/1001/randomization"),
        ("cora", "update", "participant_event", "TST-1/101/1001/randomization"),
        ("cora", "update", "visit", "TST-1/101/1001/V2"),
        ("cora", "update", "visit", "TST-1/101/1001/V3"),
        ("cora", "update", "visit", "TST-1/101/1001/V3"),
        ("ivan", "update", "participant", "TST-1/101/1001"),
    ]
    changed = new[2]
    assert (changed.old, changed.new, changed.reason) == (
        {"date": "2024-03-04"},
        {"date": "2024-03-05"},
        "typo in CRF",
    )
    assert new[-1].old == {"protocol_version": "1.0"} and new[-1].reason == "amendment 2"
    assert [e.sequence for e in await entries()] == list(range(1, len(await entries()) + 1))
    for entry in new:
        assert entry.recorded_at.endswith("Z") and len(entry.recorded_at) == 27


async def test_changing_a_recorded_date_without_a_reason_is_refused_and_leaves_no_entry(study):
    await participants.enroll_participant(study, "1001", SITE_A, enrolled_on=RANDOMIZED, today=TODAY)
    await visits.record_event(study, "1001", "randomization", RANDOMIZED, today=TODAY)
    count = len(await entries())
    with pytest.raises(InvalidInput, match="give a reason"):
        await visits.record_event(study, "1001", "randomization", date(2024, 3, 5), today=TODAY)
    assert len(await entries()) == count


async def test_the_change_and_its_entry_commit_together_or_not_at_all(study, monkeypatch):
    await participants.enroll_participant(study, "1001", SITE_A, enrolled_on=RANDOMIZED, today=TODAY)
    count = len(await entries())

    async def broken(_entries):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit_store, "insert", broken)
    with pytest.raises(RuntimeError):
        await visits.record_event(study, "1001", "randomization", RANDOMIZED, today=TODAY)
    monkeypatch.undo()
    participant = await participants.get_participant(study, "1001")
    assert participant.events == {} and len(await entries()) == count
    assert (await fetch("SELECT size FROM audit_head"))[0]["size"] == count  # the reservation rolled back too


async def test_concurrent_writers_get_contiguous_sequence_numbers(study):
    async def enrol(i: int):
        await participants.enroll_participant(study, f"{i:04d}", SITE_A, enrolled_on=RANDOMIZED, today=TODAY)

    await asyncio.gather(*(enrol(i) for i in range(12)))
    sequences = [e.sequence for e in await entries()]
    assert sequences == list(range(1, len(sequences) + 1))
    assert (await audit_log.verify()).ok


async def test_the_database_refuses_to_change_or_delete_an_entry(study, db):
    for statement in (
        "UPDATE audit_entries SET actor = 'mallory' WHERE sequence = 1",
        "DELETE FROM audit_entries WHERE sequence = 1",
    ):
        with pytest.raises(Exception, match="append-only"):
            async with transaction():
                await fetch(statement)
    if db.kind == "postgres":
        with pytest.raises(Exception, match="append-only"):
            async with transaction():
                await fetch("TRUNCATE audit_entries")
    else:
        with pytest.raises(Exception, match="append-only"):
            async with transaction():
                await fetch("REPLACE INTO audit_entries SELECT * FROM audit_entries WHERE sequence = 1")
    assert (await audit_log.verify()).ok


async def test_a_live_trail_verifies_while_the_application_writes(study, monkeypatch):
    await _trail(study, people=2)
    original = audit_store.stream_batches

    async def with_a_write_meanwhile(up_to, batch=audit_store.BATCH):
        await audit_log.record_alone("cora", audit_log.Change("sign_in", "session", "99"))  # committed mid-check
        async for rows in original(up_to, batch):
            yield rows

    monkeypatch.setattr(audit_store, "stream_batches", with_a_write_meanwhile)
    report = await audit_log.verify()
    assert report.ok, report.result.first_bad
    monkeypatch.undo()
    assert (await audit_log.verify()).result.size == report.result.size + 1


# Tampering by someone with database access: triggers off, rows changed directly.


async def _tamper(db, *statements: str | tuple) -> None:
    """Statements, or (statement, *arguments) with `{}` placeholders."""
    off = (
        (
            "DROP TRIGGER audit_entries_no_update",
            "DROP TRIGGER audit_entries_no_delete",
            "DROP TRIGGER audit_entries_no_replace",
        )
        if db.kind == "sqlite"
        else ("ALTER TABLE audit_entries DISABLE TRIGGER USER",)
    )
    async with transaction():
        for statement in (*off, *statements):
            await fetch(*((statement,) if isinstance(statement, str) else statement))


async def _trail(study, people: int = 4) -> None:
    for i in range(people):
        await participants.enroll_participant(study, f"{i:04d}", SITE_A, enrolled_on=RANDOMIZED, today=TODAY)
    assert (await audit_log.verify()).ok


def _set(row: dict, sequence: int) -> tuple:
    """UPDATE of entry `sequence` to hold every other column of `row`."""
    columns = [k for k in row if k != "sequence"]
    return (
        f"UPDATE audit_entries SET {', '.join(f'{k} = {{}}' for k in columns)} WHERE sequence = {sequence}",
        *(row[k] for k in columns),
    )


async def _raw(sequence: int) -> dict:
    return (await fetch("SELECT * FROM audit_entries WHERE sequence = {}", sequence))[0]


async def _first_bad(checkpoint=None) -> int:
    report = await audit_log.verify(checkpoint)
    assert not report.ok
    return report.result.first_bad[0]


async def test_an_altered_entry_is_named(study, db):
    await _trail(study)
    await _tamper(db, "UPDATE audit_entries SET reason = 'backdated' WHERE sequence = 5")
    assert await _first_bad() == 5


async def test_a_deleted_entry_is_named(study, db):
    await _trail(study)
    await _tamper(db, "DELETE FROM audit_entries WHERE sequence = 4")
    report = await audit_log.verify()
    assert report.result.first_bad[0] == 4 and "missing" in report.result.first_bad[1]


async def test_reordered_entries_are_named(study, db):
    await _trail(study)
    fourth, fifth = await _raw(4), await _raw(5)
    await _tamper(db, _set(fifth, 4), _set(fourth, 5))
    assert await _first_bad() == 4


async def test_an_inserted_entry_is_named(study, db):
    await _trail(study)
    size = (await audit_log.verify()).result.size
    forged = AuditEntry(
        3,
        "2024-06-01T00:00:00.000000Z",
        "mallory",
        "update",
        "visit",
        "TST-1/101/0001/V2",
        None,
        {"actual": "2024-03-18"},
    )
    digest = leaf_hash(canonical_bytes(forged)).hex()  # even with a correct hash of its own
    shifted = [f"UPDATE audit_entries SET sequence = {s + 1} WHERE sequence = {s}" for s in range(size, 2, -1)]
    insert = (
        "INSERT INTO audit_entries (sequence, recorded_at, actor, action, record_type, record_id, old, new,"
        " reason, leaf_hash) VALUES (3, {}, 'mallory', 'update', 'visit', {}, NULL, {}, NULL, {})",
        forged.recorded_at,
        forged.record_id,
        canonical_json(forged.new).decode(),
        digest,
    )
    await _tamper(db, *shifted, insert)
    assert await _first_bad() == 4  # the first renumbered entry no longer matches its hash


async def test_the_newest_entries_deleted_or_appended_are_caught_by_the_head(study, db):
    await _trail(study)
    size = (await audit_log.verify()).result.size
    await _tamper(db, f"DELETE FROM audit_entries WHERE sequence = {size}")
    report = await audit_log.verify()
    assert not report.ok and report.result.first_bad == (
        size,
        f"missing: {size} entries were appended, {size - 1} remain",
    )


async def test_rewritten_history_is_caught_only_by_a_checkpoint(study, db, tmp_path):
    from trialcoord.kernel import signing_keys

    await _trail(study)
    key = signing_keys.generate_key()
    signed = await audit_log.checkpoint(key, tmp_path / "cp.json")
    checkpoint = signing_keys.verify_checkpoint(signing_keys.load_checkpoint(tmp_path / "cp.json"), key.public_key())
    assert checkpoint.size == signed.size
    # Rewrite entry 2 and recompute its hash, as an attacker who knows the scheme would.
    row = await _raw(2)
    entry = audit_store.stored_entry([row[c] for c in audit_store.COLUMNS.split(", ")]).entry
    forged = AuditEntry(
        2,
        entry.recorded_at,
        "mallory",
        entry.action,
        entry.record_type,
        entry.record_id,
        entry.old,
        entry.new,
        entry.reason,
    )
    await _tamper(
        db,
        f"UPDATE audit_entries SET actor = 'mallory', leaf_hash ="
        f" '{leaf_hash(canonical_bytes(forged)).hex()}' WHERE sequence = 2",
        "DELETE FROM audit_checkpoints",
    )
    assert (await audit_log.verify()).ok  # undetectable from inside the database...
    report = await audit_log.verify(checkpoint)  # ...but not against the exported checkpoint
    assert not report.ok and "history was rewritten" in report.result.first_bad[1]


async def test_an_exported_checkpoint_of_a_shorter_trail_is_extended_by_the_current_one(study, tmp_path):
    from trialcoord.kernel import signing_keys

    await _trail(study, people=2)
    key = signing_keys.generate_key()
    await audit_log.checkpoint(key, tmp_path / "march.json")
    await participants.enroll_participant(study, "9999", SITE_A, enrolled_on=RANDOMIZED, today=TODAY)
    march = signing_keys.verify_checkpoint(signing_keys.load_checkpoint(tmp_path / "march.json"), key.public_key())
    report = await audit_log.verify(march)
    assert report.ok and report.result.size > march.size


# Browsing and exports


async def test_the_trail_is_browsed_by_record_user_action_and_date_within_the_viewers_scope(anonymous, personas):
    await add_user("ivan", ("investigator", "TST-1", SITE_A))
    admin = await signed_in(anonymous, "admin")
    mine = (await admin.get("/api/studies/TST-1/audit", params={"record_id": f"TST-1/{SITE_A}/{SUBJECT_A}"})).json()
    assert [e["record_type"] for e in mine] == ["participant"]
    grants = (await admin.get("/api/audit", params={"action": "grant", "actor": "admin"})).json()
    assert {e["new"]["user_id"] for e in grants} >= {"coord-a", "coord-b", "ivan"}
    assert (await admin.get("/api/audit", params={"until": "2000-01-01"})).json() == []
    ivan = await signed_in(anonymous, "ivan")
    assert (await ivan.get("/api/audit")).status_code == 403
    assert (await ivan.get("/api/studies/TST-1/audit", params={"site": "102"})).status_code == 403
    seen = (await ivan.get("/api/studies/TST-1/audit")).json()
    assert seen and all(
        e["record_id"].startswith(f"TST-1/{SITE_A}/") or e["record_id"] == f"TST-1/{SITE_A}" for e in seen
    )
    assert "site" in {e["record_type"] for e in seen}  # the site's own record
    admin = await signed_in(anonymous, "admin")  # the same client, signed in again
    study_wide = (await admin.get("/api/studies/TST-1/audit", params={"record_type": "study"})).json()
    assert [e["record_id"] for e in study_wide] == ["TST-1"]
    page = await ivan.get("/studies/TST-1/audit")
    assert page.status_code == 200 and SUBJECT_A in page.text


async def test_copies_of_the_trail_are_csv_and_pdf_and_each_is_audited(client, study):
    csv = await client.get("/api/studies/TST-1/audit/export", params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("sequence,recorded_at,actor,action")
    pdf = await client.get("/api/audit/export", params={"format": "pdf", "action": "create"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    exports = (await client.get("/api/audit", params={"action": "export"})).json()
    assert [e["new"]["format"] for e in exports] == ["pdf", "csv"]
    assert (await client.get("/api/audit/export", params={"format": "xls"})).status_code == 400
    for url in ("/api/audit", "/audit", "/api/studies/TST-1/audit", "/api/audit/export"):
        far = await client.get(url, params={"until": "9999-12-31"})
        assert far.status_code == 400 and "until" in far.text, url


async def test_moving_a_booked_appointment_needs_a_reason_recorded_with_the_change(study):
    await participants.enroll_participant(study, "1001", SITE_A, enrolled_on=RANDOMIZED, today=TODAY)
    await visits.record_event(study, "1001", "randomization", RANDOMIZED, today=TODAY)
    await visits.book_appointment(study, "1001", "V2", date(2024, 3, 18), today=date(2024, 3, 5), actor="cora")
    with pytest.raises(InvalidInput, match="booked on 2024-03-18; give a reason"):
        await visits.book_appointment(study, "1001", "V2", date(2024, 3, 19), today=date(2024, 3, 5))
    await visits.book_appointment(
        study, "1001", "V2", date(2024, 3, 19), reason="participant asked", today=date(2024, 3, 5), actor="cora"
    )
    moved = (await entries())[-1]
    assert (moved.old, moved.new, moved.reason) == (
        {"appointment": "2024-03-18"},
        {"appointment": "2024-03-19"},
        "participant asked",
    )
