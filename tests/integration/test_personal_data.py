"""Participants' personal data (HIPAA 164.312(a)(2)(iv), (e)(2)(ii)), on both engines.

Name, date of birth, contact details and medical record number are stored encrypted (AES-GCM, key ring from
the environment); the study subject ID is the only identifier in schedules, worklists, calendars and audit
exports. Known, made-up identities are written through the API and through the page form, then searched
for in the raw database (file and WAL on SQLite, every table's rows on PostgreSQL), in every log record and
in the audit trail: none may be found. Reading needs `view_personal_data`; sponsors see coded data only.
"""

from __future__ import annotations

import base64
import logging
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import SUBJECT_A, SUBJECT_B, add_user, signed_in
from trialcoord.kernel import pii
from trialcoord.kernel.database.engine import fetch, transaction
from trialcoord.kernel.problems import NotConfigured
from trialcoord.scheduling import identities

pytestmark = pytest.mark.anyio

STUDY = "TST-1"
API = f"/api/studies/{STUDY}/participants"
PAGES = f"/studies/{STUDY}/participants"
# Made-up people, distinctive enough that any occurrence anywhere is a leak.
PERSON_A = {
    "name": "Zebulon Quixotic-Marchbanks",
    "date_of_birth": "1953-07-19",
    "contact": "zebulon@example.org",
    "mrn": "MRN-7731-QX",
}
PERSON_B = {
    "name": "Philippa Wrenfeather-Oyelaran",
    "date_of_birth": "1961-02-27",
    "contact": "philippa.wrenfeather@example.net",
    "mrn": "MRN-4410-PW",
}
FIELDS = ("name", "date_of_birth", "contact", "mrn")


def needles(*people: dict[str, str]) -> dict[str, list[bytes]]:
    """Each value as its UTF-8 bytes and as base64 of them (what a careless 'encoding' would store)."""
    found: dict[str, list[bytes]] = {}
    for person in people:
        for value in person.values():
            raw = value.encode("utf-8")
            found[value] = [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
    return found


def leaks(haystack: bytes | str, *people: dict[str, str]) -> list[str]:
    """The values of `people` that occur in `haystack`, in any of the forms of `needles` (case-insensitive)."""
    data = (haystack.encode("utf-8") if isinstance(haystack, str) else haystack).lower()
    return [value for value, forms in needles(*people).items() if any(form.lower() in data for form in forms)]


@pytest.fixture
def all_logs(caplog):
    """Every log record at DEBUG from every logger, including those that do not propagate (litestar's)."""
    caplog.set_level(logging.DEBUG)
    patched = []
    for logger in [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]:
        if isinstance(logger, logging.Logger) and not logger.propagate:
            patched.append((logger, logger.level))
            logger.addHandler(caplog.handler)
            logger.setLevel(logging.DEBUG)
    logging.getLogger("litestar").debug("log capture check")
    assert "log capture check" in caplog.text, "the log capture does not see litestar's logger"
    yield caplog
    for logger, level in patched:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def log_text(caplog) -> str:
    """What a log file could hold: formatted messages, tracebacks and every attribute of every record."""
    return caplog.text + "\n".join(repr(vars(record)) for record in caplog.records)


async def put_identity(client, subject: str, values: dict[str, str]):
    return await client.put(f"{API}/{subject}/identity", json=values)


async def post_identity_form(client, subject: str, values: dict[str, str]):
    return await client.post(f"{PAGES}/{subject}/identity", data=values)


async def participant_row_id(subject: str) -> int:
    rows = await fetch(
        "SELECT p.id FROM participants p JOIN studies s ON s.id = p.study WHERE s.code = {} AND p.subject_id = {}",
        STUDY,
        subject,
    )
    return rows[0]["id"]


async def stored_ciphertexts(subject: str) -> dict[str, str | None]:
    rows = await fetch(
        "SELECT name, date_of_birth, contact, mrn FROM participant_identities WHERE participant = {}",
        await participant_row_id(subject),
    )
    return rows[0] if rows else {}


async def identity_audit(client) -> list[dict]:
    response = await client.get("/api/audit", params={"record_type": "participant_identity"})
    assert response.status_code == 200, response.text
    return response.json()


async def raw_database(db) -> bytes:
    """Everything the database holds, as an attacker with the files or a dump would see it."""
    if db.kind == "sqlite":
        path = Path(db.url.removeprefix("sqlite:///"))
        files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")) if p.exists()]
        assert path in files
        return b"".join(p.read_bytes() for p in files)
    connection = await asyncpg.connect(db.url)
    try:
        tables = [
            row["table_name"]
            for row in await connection.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        ]
        assert "participant_identities" in tables and "audit_entries" in tables
        dump = []
        for table in tables:
            rows = await connection.fetch(f'SELECT t::text AS row FROM "{table}" t')
            dump.extend(f"{table}: {row['row']}" for row in rows)
        return "\n".join(dump).encode("utf-8")
    finally:
        await connection.close()


# --- 1. nothing in the database, the logs or the audit trail ---


async def test_known_names_are_nowhere_in_the_database_the_logs_or_the_audit_trail(db, anonymous, personas, all_logs):
    coord_a = await signed_in(anonymous, "coord-a")
    response = await put_identity(coord_a, SUBJECT_A, PERSON_A)
    assert response.status_code == 200, response.text
    assert response.json() == PERSON_A
    assert (await coord_a.get(f"{API}/{SUBJECT_A}/identity")).json() == PERSON_A
    page = await coord_a.get(f"{PAGES}/{SUBJECT_A}")
    assert page.status_code == 200 and PERSON_A["name"] in page.text

    coord_b = await signed_in(anonymous, "coord-b")
    response = await post_identity_form(coord_b, SUBJECT_B, PERSON_B)
    assert response.status_code == 303, response.text
    assert "saved=identity" in response.headers["location"]
    page = await coord_b.get(response.headers["location"])
    assert page.status_code == 200 and PERSON_B["name"] in page.text and "Personal data saved." in page.text
    assert (await coord_b.get(f"{API}/{SUBJECT_B}/identity")).json() == PERSON_B

    # The raw database: the ciphertexts are there (so this reads the right data), the plaintexts are not.
    stored = {subject: await stored_ciphertexts(subject) for subject in (SUBJECT_A, SUBJECT_B)}
    raw = await raw_database(db)
    for subject, values in stored.items():
        assert all(values[field] for field in FIELDS), subject
        assert all(values[field].encode() in raw for field in FIELDS), f"{subject}'s ciphertexts not found in the dump"
        assert {pii.key_id_of(base64.b64decode(values[field])) for field in FIELDS} == {"test-1"}
    assert leaks(raw, PERSON_A, PERSON_B) == []
    identity_rows = await fetch("SELECT * FROM participant_identities")
    assert len(identity_rows) == 2 and leaks(repr(identity_rows), PERSON_A, PERSON_B) == []

    # The audit trail records which fields were set, never their values.
    admin = await signed_in(anonymous, "admin")
    entries = await identity_audit(admin)
    assert sorted((e["actor"], e["record_id"], e["action"]) for e in entries) == [
        ("coord-a", f"{STUDY}/101/{SUBJECT_A}", "create"),
        ("coord-b", f"{STUDY}/102/{SUBJECT_B}", "create"),
    ]
    assert all(e["new"] == {field: "set" for field in FIELDS} for e in entries)
    everything = await admin.get("/api/audit")
    assert everything.status_code == 200 and leaks(everything.text, PERSON_A, PERSON_B) == []
    audit_rows = await fetch("SELECT * FROM audit_entries")
    assert any("participant_identity" in repr(row) for row in audit_rows)
    assert leaks(repr(audit_rows), PERSON_A, PERSON_B) == []

    # Changing a value is audited as "changed", again without either value.
    changed = {"name": "Zebulon Q. Marchbanks-Quixotic"}
    coord_a = await signed_in(anonymous, "coord-a")
    assert (await put_identity(coord_a, SUBJECT_A, changed)).status_code == 200
    admin = await signed_in(anonymous, "admin")
    latest = (await identity_audit(admin))[0]
    assert (latest["actor"], latest["action"], latest["new"]) == ("coord-a", "update", {"name": "changed"})
    assert leaks((await admin.get("/api/audit")).text, PERSON_A, PERSON_B, changed) == []
    assert leaks(await raw_database(db), PERSON_A, PERSON_B, changed) == []

    # The capture was live during the writes (httpx logs each request), and nothing logged holds the data.
    assert any("/identity" in record.getMessage() for record in all_logs.records)
    assert leaks(log_text(all_logs), PERSON_A, PERSON_B, changed) == []


# --- 2. exact round trip, clearing, no audit entry for an unchanged value ---


async def test_values_read_back_exactly_clear_with_an_empty_string_and_unchanged_writes_are_not_audited(
    anonymous, personas
):
    # One HTTP client: each signed_in() switches its session, so every step signs in as whom it needs.
    coord_a = await signed_in(anonymous, "coord-a")
    empty = await coord_a.get(f"{API}/{SUBJECT_A}/identity")
    assert empty.status_code == 200 and empty.json() == {field: None for field in FIELDS}

    unusual = {
        "name": "Zoë Ångström-Nakamura 中村 «test»",
        "date_of_birth": "1980-12-31",
        "contact": "+44 20 7946 0958; flat 3, 221b Baker St",
        "mrn": "MRN-0001-ÅZ",
    }
    response = await put_identity(coord_a, SUBJECT_A, unusual)
    assert response.status_code == 200 and response.json() == unusual
    assert (await coord_a.get(f"{API}/{SUBJECT_A}/identity")).json() == unusual
    assert await identities.get_identity(STUDY, SUBJECT_A) == identities.PersonalData(**unusual)

    # Surrounding white space is not part of the value.
    response = await put_identity(coord_a, SUBJECT_A, {"mrn": "  MRN-0002-ÅZ \t"})
    assert response.json()["mrn"] == "MRN-0002-ÅZ"

    admin = await signed_in(anonymous, "admin")
    before = await identity_audit(admin)
    coord_a = await signed_in(anonymous, "coord-a")
    same = {**unusual, "mrn": "MRN-0002-ÅZ"}
    response = await put_identity(coord_a, SUBJECT_A, same)
    assert response.status_code == 200 and response.json() == same
    form = await post_identity_form(coord_a, SUBJECT_A, same)
    assert form.status_code == 303
    admin = await signed_in(anonymous, "admin")
    assert await identity_audit(admin) == before, "an unchanged value wrote an audit entry"

    # An absent field stays; "" clears one; the audit trail says "cleared".
    coord_a = await signed_in(anonymous, "coord-a")
    response = await put_identity(coord_a, SUBJECT_A, {"contact": ""})
    assert response.status_code == 200
    assert response.json() == {**same, "contact": None}
    assert (await coord_a.get(f"{API}/{SUBJECT_A}/identity")).json() == {**same, "contact": None}
    assert (await stored_ciphertexts(SUBJECT_A))["contact"] is None
    admin = await signed_in(anonymous, "admin")
    latest = (await identity_audit(admin))[0]
    assert (latest["actor"], latest["action"], latest["new"]) == ("coord-a", "update", {"contact": "cleared"})
    assert len(await identity_audit(admin)) == len(before) + 1

    # The form sends every field: an empty one clears it too.
    coord_a = await signed_in(anonymous, "coord-a")
    form = await post_identity_form(coord_a, SUBJECT_A, {**same, "contact": "", "mrn": ""})
    assert form.status_code == 303
    assert await identities.get_identity(STUDY, SUBJECT_A) == identities.PersonalData(
        **{**same, "contact": None, "mrn": None}
    )


# --- 3. who may read and write ---


async def test_only_grants_with_personal_data_read_it_and_only_site_staff_write_it(anonymous, personas):
    await identities.set_identity(STUDY, SUBJECT_A, PERSON_A, actor="admin")
    await identities.set_identity(STUDY, SUBJECT_B, PERSON_B, actor="admin")
    await add_user("monitor-coded", ("monitor", STUDY, None, None, False))
    a, b = f"{API}/{SUBJECT_A}/identity", f"{API}/{SUBJECT_B}/identity"

    async def status(persona: str, method: str, url: str) -> int:
        client = await signed_in(anonymous, persona)
        if method == "PUT":
            return (await client.put(url, json={"name": "Nobody Overwrote-This"})).status_code
        return (await client.get(url)).status_code

    observed = {
        ("coord-a", "GET", a): await status("coord-a", "GET", a),
        ("coord-a", "GET", b): await status("coord-a", "GET", b),
        ("coord-a", "PUT", b): await status("coord-a", "PUT", b),
        ("coord-b", "GET", a): await status("coord-b", "GET", a),
        ("sponsor", "GET", a): await status("sponsor", "GET", a),
        ("sponsor", "PUT", a): await status("sponsor", "PUT", a),
        ("monitor", "GET", a): await status("monitor", "GET", a),
        ("monitor", "GET", b): await status("monitor", "GET", b),
        ("monitor", "PUT", a): await status("monitor", "PUT", a),
        ("monitor-coded", "GET", a): await status("monitor-coded", "GET", a),
        ("monitor-expired", "GET", a): await status("monitor-expired", "GET", a),
        ("outsider", "GET", a): await status("outsider", "GET", a),
    }
    assert observed == {
        ("coord-a", "GET", a): 200,
        ("coord-a", "GET", b): 403,
        ("coord-a", "PUT", b): 403,
        ("coord-b", "GET", a): 403,
        ("sponsor", "GET", a): 403,
        ("sponsor", "PUT", a): 403,
        ("monitor", "GET", a): 200,
        ("monitor", "GET", b): 200,
        ("monitor", "PUT", a): 403,
        ("monitor-coded", "GET", a): 403,
        ("monitor-expired", "GET", a): 403,
        ("outsider", "GET", a): 403,
    }
    anonymous.cookies.clear()
    for header in ("Authorization", "X-CSRF-Token"):
        anonymous.headers.pop(header, None)
    assert (await anonymous.get(a)).status_code == 401
    # No refused write got through.
    assert await identities.get_identity(STUDY, SUBJECT_A) == identities.PersonalData(**PERSON_A)
    assert await identities.get_identity(STUDY, SUBJECT_B) == identities.PersonalData(**PERSON_B)
    monitor = await signed_in(anonymous, "monitor")
    assert (await monitor.get(a)).json() == PERSON_A
    denied = await (await signed_in(anonymous, "sponsor")).get(a)
    assert leaks(denied.text, PERSON_A) == []

    # The participant page: the name for those who may see it, coded data for the others.
    page = await (await signed_in(anonymous, "coord-a")).get(f"{PAGES}/{SUBJECT_A}")
    assert page.status_code == 200 and PERSON_A["name"] in page.text and PERSON_A["mrn"] in page.text
    assert 'action="/studies/TST-1/participants/1001/identity"' in page.text
    page = await (await signed_in(anonymous, "monitor")).get(f"{PAGES}/{SUBJECT_A}")
    assert page.status_code == 200 and PERSON_A["name"] in page.text
    assert "/identity" not in page.text, "a monitor is shown the form to change personal data"
    for persona in ("sponsor", "monitor-coded"):
        page = await (await signed_in(anonymous, persona)).get(f"{PAGES}/{SUBJECT_A}")
        assert page.status_code == 200, persona
        assert SUBJECT_A in page.text, persona
        assert leaks(page.text, PERSON_A) == [], persona
        assert "Personal data" not in page.text, persona
    # The page form refuses the same people the API refuses.
    sponsor = await signed_in(anonymous, "sponsor")
    assert (await post_identity_form(sponsor, SUBJECT_A, {"name": "Nobody"})).status_code == 403
    monitor = await signed_in(anonymous, "monitor")
    assert (await post_identity_form(monitor, SUBJECT_A, {"name": "Nobody"})).status_code == 403
    assert await identities.get_identity(STUDY, SUBJECT_A) == identities.PersonalData(**PERSON_A)


async def test_a_sponsor_grant_cannot_carry_personal_data(personas):
    from trialcoord.accounts import users
    from trialcoord.kernel.problems import InvalidInput

    with pytest.raises(InvalidInput):
        await users.grant("sponsor", "sponsor", STUDY, None, date(2000, 1, 1), None, "admin", personal_data=True)
    with pytest.raises(InvalidInput):
        await users.grant("coord-a", "coordinator", STUDY, "101", date(2000, 1, 1), None, "admin", personal_data=True)


# --- 4. a value copied to another participant does not decrypt ---


async def copy_name_from_a_to_b() -> None:
    await identities.set_identity(STUDY, SUBJECT_A, PERSON_A, actor="admin")
    await identities.set_identity(STUDY, SUBJECT_B, PERSON_B, actor="admin")
    a, b = await participant_row_id(SUBJECT_A), await participant_row_id(SUBJECT_B)
    async with transaction():
        await fetch(
            "UPDATE participant_identities SET name = (SELECT name FROM participant_identities"
            " WHERE participant = {}) WHERE participant = {}",
            a,
            b,
        )
    assert (await stored_ciphertexts(SUBJECT_B))["name"] == (await stored_ciphertexts(SUBJECT_A))["name"]


async def test_a_ciphertext_copied_to_another_participant_does_not_decrypt(anonymous, personas, all_logs):
    client = await signed_in(anonymous, "admin")
    await copy_name_from_a_to_b()
    with pytest.raises(NotConfigured, match="does not decrypt") as raised:
        await identities.get_identity(STUDY, SUBJECT_B)
    assert leaks(str(raised.value), PERSON_A, PERSON_B) == []

    response = await client.get(f"{API}/{SUBJECT_B}/identity")
    assert leaks(response.text, PERSON_A) == [], "the other participant's name was returned"
    assert response.status_code != 200
    assert response.status_code != 500, (
        f"a value that does not decrypt answers a bare 500 instead of a clear error: {response.text}"
    )
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "decrypt" in response.json()["detail"]
    assert leaks(log_text(all_logs), PERSON_A, PERSON_B) == []


async def test_the_participant_page_survives_a_ciphertext_that_does_not_decrypt(anonymous, personas, all_logs):
    client = await signed_in(anonymous, "admin")
    await copy_name_from_a_to_b()
    page = await client.get(f"{PAGES}/{SUBJECT_B}")
    assert leaks(page.text, PERSON_A) == []
    assert page.status_code == 200, f"the participant page fails with {page.status_code} instead of showing a message"
    assert "decrypt" in page.text
    assert leaks(log_text(all_logs), PERSON_A, PERSON_B) == []


async def test_a_key_ring_without_the_values_key_answers_a_clear_error(anonymous, personas, monkeypatch, all_logs):
    """An operator who removes a key before rotating: the values are unreadable, and the answer says why."""
    await identities.set_identity(STUDY, SUBJECT_A, PERSON_A, actor="admin")
    monkeypatch.setenv(pii.KEYS_VARIABLE, pii.KeyRing.generate("test-2").to_json())
    client = await signed_in(anonymous, "admin")
    response = await client.get(f"{API}/{SUBJECT_A}/identity")
    assert leaks(response.text, PERSON_A) == []
    assert response.status_code != 500, f"a missing key answers a bare 500 instead of a clear error: {response.text}"
    assert response.status_code != 200
    assert "test-1" in response.json()["detail"], "the answer does not name the missing key"
    assert leaks(log_text(all_logs), PERSON_A) == []


# --- 5. key rotation ---


async def test_key_rotation_reencrypts_everything_under_the_new_key_and_is_audited(
    anonymous, personas, pii_keys, monkeypatch, all_logs
):
    client = await signed_in(anonymous, "admin")
    ring = pii_keys
    assert ring.current == "test-1"
    await identities.set_identity(STUDY, SUBJECT_A, PERSON_A, actor="admin")
    await identities.set_identity(STUDY, SUBJECT_B, {"name": PERSON_B["name"], "mrn": PERSON_B["mrn"]}, actor="admin")
    assert await identities.key_ids_in_use() == {"test-1"}
    before = {subject: await stored_ciphertexts(subject) for subject in (SUBJECT_A, SUBJECT_B)}

    # Without the old key nothing reads: the rotation is what makes removing it safe.
    monkeypatch.setenv(pii.KEYS_VARIABLE, pii.KeyRing.generate("unrelated").to_json())
    with pytest.raises(NotConfigured, match="key ring does not hold"):
        await identities.get_identity(STUDY, SUBJECT_A)

    new_ring = ring.with_new_current_key("test-2")
    monkeypatch.setenv(pii.KEYS_VARIABLE, new_ring.to_json())
    assert await identities.get_identity(STUDY, SUBJECT_A) == identities.PersonalData(
        **PERSON_A
    )  # old values read before the rotation
    assert await identities.rotate_stored(new_ring) == 6
    assert await identities.key_ids_in_use() == {"test-2"}
    after = {subject: await stored_ciphertexts(subject) for subject in (SUBJECT_A, SUBJECT_B)}
    for subject in after:
        for field in FIELDS:
            assert (after[subject][field] is None) == (before[subject][field] is None)
            if after[subject][field]:
                assert after[subject][field] != before[subject][field]
    assert await identities.rotate_stored(new_ring) == 0, "re-running the rotation re-encrypted again"

    expected_b = {"name": PERSON_B["name"], "date_of_birth": None, "contact": None, "mrn": PERSON_B["mrn"]}
    monkeypatch.setenv(pii.KEYS_VARIABLE, new_ring.without_key("test-1").to_json())
    assert await identities.get_identity(STUDY, SUBJECT_A) == identities.PersonalData(**PERSON_A)
    assert await identities.get_identity(STUDY, SUBJECT_B) == identities.PersonalData(**expected_b)
    assert (await client.get(f"{API}/{SUBJECT_A}/identity")).json() == PERSON_A
    assert (await client.get(f"{API}/{SUBJECT_B}/identity")).json() == expected_b
    # New writes use the current key.
    assert (await client.put(f"{API}/{SUBJECT_B}/identity", json={"contact": PERSON_B["contact"]})).status_code == 200
    assert await identities.key_ids_in_use() == {"test-2"}

    rotations = (await client.get("/api/audit", params={"record_type": "key_ring"})).json()
    assert [(e["actor"], e["action"], e["record_id"]) for e in rotations] == [("system", "update", "personal_data")] * 2
    assert rotations[-1]["new"] == {"current_key": "test-2", "values_reencrypted": 6}
    assert rotations[0]["new"] == {"current_key": "test-2", "values_reencrypted": 0}
    assert leaks(repr(rotations), PERSON_A, PERSON_B) == []
    assert new_ring.keys["test-2"] not in repr(rotations).encode()
    assert base64.b64encode(new_ring.keys["test-2"]).decode() not in repr(rotations)
    assert leaks(log_text(all_logs), PERSON_A, PERSON_B) == []


# --- 6. schedules, worklists, calendars and exports carry the subject ID only ---


async def test_schedules_worklists_calendars_and_exports_carry_the_subject_id_only(anonymous, personas, all_logs):
    client = await signed_in(anonymous, "admin")
    coord_a = await signed_in(client, "coord-a")
    assert (await put_identity(coord_a, SUBJECT_A, PERSON_A)).status_code == 200
    admin = await signed_in(client, "admin")
    for event, day in (("randomization", "2024-03-04"), ("first_dose", "2024-03-05")):
        response = await admin.post(f"{API}/{SUBJECT_A}/events", json={"event": event, "date": day})
        assert response.status_code == 201, response.text

    outputs = {
        "schedule": await admin.get(f"{API}/{SUBJECT_A}/schedule", params={"as_of": "2024-03-18"}),
        "worklist": await admin.get(f"/api/studies/{STUDY}/worklist", params={"as_of": "2024-03-18"}),
        "worklist week": await admin.get(
            f"/api/studies/{STUDY}/worklist", params={"as_of": "2024-03-18", "kind": "week"}
        ),
        "participant ics": await admin.get(f"{API}/{SUBJECT_A}/schedule.ics", params={"as_of": "2024-03-18"}),
        "site ics": await admin.get(f"/api/studies/{STUDY}/sites/101/schedule.ics", params={"as_of": "2024-03-18"}),
        "participant": await admin.get(f"{API}/{SUBJECT_A}"),
        "participants": await admin.get(f"{API}"),
        "study audit csv": await admin.get(f"/api/studies/{STUDY}/audit/export", params={"format": "csv"}),
        "audit csv": await admin.get("/api/audit/export", params={"format": "csv"}),
        "study page (worklist)": await admin.get(f"/studies/{STUDY}", params={"as_of": "2024-03-18"}),
        "audit page": await admin.get(f"/studies/{STUDY}/audit"),
    }
    for what, response in outputs.items():
        assert response.status_code == 200, (what, response.status_code, response.text[:300])
        assert SUBJECT_A in response.text, f"{what} does not identify the participant by subject ID"
        assert leaks(response.text, PERSON_A) == [], what
    schedule = outputs["schedule"].json()
    assert schedule and {row["subject_id"] for row in schedule} == {SUBJECT_A}
    assert any(row["subject_id"] == SUBJECT_A for row in outputs["worklist"].json())
    assert "BEGIN:VEVENT" in outputs["participant ics"].text
    csv = outputs["study audit csv"].text
    assert "participant_identity" in csv and f"{STUDY}/101/{SUBJECT_A}" in csv
    # The coordinator's own copies, under a site-scoped grant.
    coord_a = await signed_in(client, "coord-a")
    for url in (f"{API}/{SUBJECT_A}/schedule.ics", f"{API}/{SUBJECT_A}/schedule"):
        response = await coord_a.get(url, params={"as_of": "2024-03-18"})
        assert response.status_code == 200 and leaks(response.text, PERSON_A) == [], url
    assert leaks(log_text(all_logs), PERSON_A) == []


# --- 7. invalid values: 4xx naming the field, nothing stored ---


async def test_an_over_long_value_or_a_bad_date_of_birth_names_the_field_and_stores_nothing(anonymous, personas):
    await identities.set_identity(STUDY, SUBJECT_A, PERSON_A, actor="admin")
    admin = await signed_in(anonymous, "admin")
    audit_before = await identity_audit(admin)
    stored_before = await stored_ciphertexts(SUBJECT_A)
    coord_a = await signed_in(anonymous, "coord-a")
    too_long = ("Zebulon Quixotic-Marchbanks " * 20)[:501]
    assert len(too_long) == 501

    # Over-long values break the request schema (max_length=500), which the API answers 400 like every other
    # malformed body (see test_api.py); values that pass the schema but not the rules are 422.
    cases = [
        ({"name": too_long}, "name", 400),
        ({"contact": "x" * 501}, "contact", 400),
        ({"mrn": "MRN\n7731"}, "mrn", 422),
        ({"date_of_birth": "31/12/1980"}, "date_of_birth", 422),
        ({"date_of_birth": "1800-01-01"}, "date_of_birth", 422),
        ({"name": "Someone Else Entirely", "date_of_birth": "31/12/1980"}, "date_of_birth", 422),
    ]
    for body, field, status in cases:
        response = await put_identity(coord_a, SUBJECT_A, body)
        assert response.status_code == status, (body, response.status_code, response.text)
        problem = response.json()
        assert problem["errors"][0]["field"] == field, (body, problem)
        assert "Zebulon" not in response.text and "31/12/1980" not in response.text, "the error echoes the value"
    # A value of exactly 500 characters is accepted, and goes.
    assert (await put_identity(coord_a, SUBJECT_A, {"contact": "c" * 500})).status_code == 200
    assert (await put_identity(coord_a, SUBJECT_A, {"contact": PERSON_A["contact"]})).status_code == 200

    # The page form: the same checks, the message by the field, a 422 page.
    for values, field in (
        ({**PERSON_A, "name": too_long}, "name"),
        ({**PERSON_A, "date_of_birth": "31/12/1980"}, "date_of_birth"),
    ):
        page = await post_identity_form(coord_a, SUBJECT_A, values)
        assert page.status_code == 422, (field, page.status_code)
        assert (
            "date of birth is written YYYY-MM-DD" in page.text
            if field == "date_of_birth"
            else "at most 500 characters" in page.text
        )

    assert await identities.get_identity(STUDY, SUBJECT_A) == identities.PersonalData(**PERSON_A)
    admin = await signed_in(anonymous, "admin")
    assert len(await identity_audit(admin)) == len(audit_before) + 2  # the two contact changes only
    assert (await stored_ciphertexts(SUBJECT_A))["name"] == stored_before["name"]


# --- 8. no key configured ---


@pytest.fixture
def no_pii_key(monkeypatch, tmp_path):
    """No key in the environment and no key file where the settings look by default."""
    from trialcoord.kernel.config import get_settings, reset_settings

    monkeypatch.delenv(pii.KEYS_VARIABLE, raising=False)
    monkeypatch.delenv(pii.KEY_FILE_VARIABLE, raising=False)
    monkeypatch.setenv("TRIALCOORD_DATA_DIR", str(tmp_path / "no-keys-here"))
    reset_settings()
    assert not get_settings().pii_key_file.exists()
    yield
    reset_settings()


async def test_without_a_key_personal_data_is_unavailable_and_the_page_still_renders(
    anonymous, personas, pii_keys, no_pii_key, monkeypatch, all_logs
):
    client = await signed_in(anonymous, "admin")
    monkeypatch.setenv(pii.KEYS_VARIABLE, pii_keys.to_json())  # written while a key was configured
    await identities.set_identity(STUDY, SUBJECT_A, PERSON_A, actor="admin")
    stored = await stored_ciphertexts(SUBJECT_A)
    monkeypatch.delenv(pii.KEYS_VARIABLE)

    response = await client.get(f"{API}/{SUBJECT_A}/identity")
    assert response.status_code == 503, response.text
    assert pii.KEY_FILE_VARIABLE in response.json()["detail"]
    assert leaks(response.text, PERSON_A) == []
    written = await client.put(f"{API}/{SUBJECT_A}/identity", json={"name": "Nobody Stored-This"})
    assert written.status_code == 503 and pii.KEY_FILE_VARIABLE in written.json()["detail"]
    assert await stored_ciphertexts(SUBJECT_A) == stored

    page = await client.get(f"{PAGES}/{SUBJECT_A}")
    assert page.status_code == 200, page.text[:500]
    assert pii.KEY_FILE_VARIABLE in page.text and "personal data is unavailable" in page.text
    assert leaks(page.text, PERSON_A) == []
    assert 'action="/studies/TST-1/participants/1001/identity"' not in page.text
    assert "Week 2" in page.text  # the rest of the page (the schedule) is there
    form = await post_identity_form(client, SUBJECT_A, {"name": "Nobody Stored-This"})
    assert form.status_code == 503 and pii.KEY_FILE_VARIABLE in form.text
    assert await stored_ciphertexts(SUBJECT_A) == stored
    assert leaks(log_text(all_logs), PERSON_A) == []


async def test_redacting_personal_data_leaves_the_audit_trail_intact(personas):
    from trialcoord.kernel import audit_log

    await identities.set_identity(STUDY, SUBJECT_A, {"name": "Zebulon Redactable", "mrn": "MRN-1"}, actor="coord-a")
    before = await audit_log.verify()
    await identities.set_identity(STUDY, SUBJECT_A, {"name": "", "mrn": ""}, actor="admin")  # a justified redaction
    report = await audit_log.verify()
    assert before.ok and report.ok and report.result.size == before.result.size + 1
    assert await identities.get_identity(STUDY, SUBJECT_A) == identities.PersonalData(
        **{name: None for name in identities.FIELDS}
    )
