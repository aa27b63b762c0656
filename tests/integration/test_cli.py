"""The `trialcoord` command line, run as a user runs it: a separate process, exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROTOCOL_V1

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "protocols/DEMO-001/1.0.yaml")
ONC = str(ROOT / "protocols/ONC-201/1.0.yaml")
KEYS = {"visit", "occurrence", "name", "target", "earliest", "latest", "actual", "status", "days_outside", "study_day"}


def run(*args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TRIALCOORD_TIME_ZONE": "UTC", **(env or {})}
    stdin = {} if input is None else {"input": input}  # test_cli_admin supplies its own stdin
    return subprocess.run(
        [sys.executable, "-m", "trialcoord.cli.main", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        **stdin,
    )


@pytest.fixture
def tst_protocol(tmp_path) -> str:
    path = tmp_path / "tst.yaml"
    path.write_text(PROTOCOL_V1)
    return str(path)


def write(tmp_path, text: str | bytes, name="events.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


# protocol validate ---------------------------------------------------------------------------------


def test_validate_accepts_every_shipped_protocol():
    files = sorted(str(p) for p in (ROOT / "protocols").glob("*/*.yaml"))
    result = run("protocol", "validate", *files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": valid") == len(files) >= 2


BAD_PROTOCOL = """\
study: BAD-1
title: Two mistakes
version: "1.0"
effective: 2024-01-01
day_one: randomization
events:
  randomization: {}
visits:
  - code: V1
    name: Week 1
    from: randomization
    offset: 7x
  - code: V2
    name: Week 2
    from: randomization
    ofset: 2w
"""


def test_validate_reports_every_problem_with_its_position(tmp_path):
    bad = write(tmp_path, BAD_PROTOCOL, "bad.yaml")
    result = run("protocol", "validate", DEMO, bad)
    assert result.returncode == 1
    assert f"{DEMO}: valid" in result.stdout
    assert f"{bad}:12:13: visits[0].offset: visit V1 offset: '7x' is not a duration" in result.stderr
    assert f"{bad}:16:5: visits[1].ofset: visit V2: unknown key 'ofset'; did you mean 'offset'?" in result.stderr
    assert f"{bad}:13:5: visits[1].offset: visit V2: missing required key 'offset'" in result.stderr
    assert "3 problems" in result.stderr


def test_validate_names_a_missing_file(tmp_path):
    result = run("protocol", "validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1 and "nope.yaml" in result.stderr and "Traceback" not in result.stderr


# schedule ------------------------------------------------------------------------------------------


def test_schedule_json_follows_the_contract():
    result = run(
        "schedule",
        DEMO,
        "--event",
        "randomization=2025-03-03",
        "--arm",
        "A",
        "--as-of",
        "2025-03-20",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert all(KEYS <= set(row) for row in rows)
    v3 = next(row for row in rows if row["visit"] == "V3")
    assert v3 == {
        **v3,
        "target": "2025-03-17",
        "earliest": "2025-03-14",
        "latest": "2025-03-20",
        "status": "due",
        "study_day": 15,
        "actual": None,
        "days_outside": 0,
    }
    targets = [row["target"] for row in rows if row["target"]]
    assert targets == sorted(targets)


def test_schedule_table_csv_and_ics():
    args = ("schedule", ONC, "--event", "first_dose=2026-06-01", "--as-of", "2026-06-10")
    table = run(*args)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["visit", "name", "target"]
    csv_out = run(*args, "--format", "csv").stdout.splitlines()
    assert csv_out[0] == "visit,occurrence,name,target,earliest,latest,actual,status,days_outside,study_day"
    assert any(line.startswith("C1D1,1,Cycle 1 Day 1,2026-06-01,2026-06-01,2026-06-04,,missed") for line in csv_out)
    ics = run(*args, "--format", "ics", "--subject", "S-1").stdout
    assert ics.startswith("BEGIN:VCALENDAR") and "DTSTART;VALUE=DATE:20260601" in ics


def test_schedule_ics_needs_the_subject_and_two_participants_uids_never_collide(tmp_path):
    """Checked by icalendar's own parser: every VEVENT has UID, DTSTAMP, SEQUENCE and LAST-MODIFIED; the UIDs of
    two participants' calendars (repeated cycles included) are all distinct, and so within `check`'s one calendar."""
    from icalendar import Calendar

    args = ("schedule", ONC, "--event", "first_dose=2026-06-01", "--as-of", "2026-09-10", "--format", "ics")
    missing = run(*args)
    assert missing.returncode == 2 and "--subject" in missing.stderr
    uids: list[str] = []
    for subject in ("S-1", "S-2"):
        out = run(*args, "--subject", subject)
        assert out.returncode == 0, out.stderr
        found = Calendar.from_ical(out.stdout).walk("VEVENT")
        assert len(found) > 5
        for event in found:
            assert all(name in event for name in ("UID", "DTSTAMP", "SEQUENCE", "LAST-MODIFIED")), event
        uids += [str(event["uid"]) for event in found]
    assert len(uids) == len(set(uids))
    assert any("/S-1/C2D1@" in uid for uid in uids) and any("/S-2/C2D1@" in uid for uid in uids)


def test_check_ics_gives_every_participant_and_unscheduled_visit_its_own_uid(tmp_path):
    from icalendar import Calendar

    events = tmp_path / "events.csv"
    rows = ["participant,event,date"]
    for subject in ("P-1", "P-2"):
        rows += [f"{subject},first_dose,2026-06-01", f"{subject},UNS,2026-06-05", f"{subject},UNS,2026-06-09"]
    events.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = run("check", ONC, "--events", str(events), "--as-of", "2026-09-10", "--format", "ics")
    assert out.returncode == 0, out.stderr
    found = Calendar.from_ical(out.stdout).walk("VEVENT")
    uids = [str(event["uid"]) for event in found]
    assert len(uids) == len(set(uids)) and all("SEQUENCE" in event and "LAST-MODIFIED" in event for event in found)
    unscheduled = sorted(uid for uid in uids if "/UNS" in uid)
    assert len(unscheduled) == 4 and {uid.split("/")[1] for uid in unscheduled} == {"P-1", "P-2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--event", "randomisation=2025-03-03"), "'randomisation' is not an event"),
        (("--event", "randomization=2025-02-30"), "'2025-02-30' is not a date"),
        (("--event", "randomization"), "should be NAME=YYYY-MM-DD"),
        (("--arm", "Z"), "'Z' is not an arm"),
    ],
)
def test_schedule_bad_input_exits_2_with_a_message(args, message):
    result = run("schedule", DEMO, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


# check ---------------------------------------------------------------------------------------------

EVENTS_CSV = """participant,event,date,arm
101-002,randomization,2024-03-04,P
101-001,randomization,2024-03-04,A
101-001,first_dose,2024-03-04,A
101-001,V2,2024-03-23,A
101-001,C1D1,2024-03-04,A
101-001,UNS1,2024-03-10,A
"""


def test_check_orders_by_participant_then_target(tmp_path, tst_protocol):
    result = run(
        "check", tst_protocol, "--events", write(tmp_path, EVENTS_CSV), "--as-of", "2024-03-25", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert all(KEYS | {"participant"} <= set(row) for row in rows)
    assert [row["participant"] for row in rows] == sorted(row["participant"] for row in rows)
    mine = {row["visit"]: row for row in rows if row["participant"] == "101-001"}
    assert (mine["V2"]["status"], mine["V2"]["days_outside"]) == ("late", 2)
    assert mine["UNS1"]["status"] == "unscheduled"
    assert mine["C1D1"]["status"] == "on_time"
    theirs = {row["visit"]: row["status"] for row in rows if row["participant"] == "101-002"}
    assert theirs["C1D1"] == "not_applicable"  # arm P


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("participant,date\n101-001,2024-03-04\n", ":1: event: the header lacks the column 'event'"),
        (
            "participant,event,date\n101-001,randomization,2024-03-04\n101-001,V2,04/03/2024\n",
            ":3: date: '04/03/2024' is not a date",
        ),
        ("participant,event,date,arm\n101-001,randomization,2024-03-04,A\n101-001,V2,2024-03-18,P\n", ":3:"),
        ("", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a UTF-8 text file"),
    ],
    ids=["missing-column", "bad-date", "two-arms", "empty", "not-csv"],
)
def test_check_bad_csv_exits_2_naming_the_line(tmp_path, tst_protocol, text, message):
    result = run("check", tst_protocol, "--events", write(tmp_path, text))
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr


# database commands ---------------------------------------------------------------------------------


@pytest.mark.db
async def test_visits_gives_exactly_the_rows_check_gives(db, tmp_path, tst_protocol):
    env = {"TRIALCOORD_DATABASE_URL": db.url}
    assert run("protocol", "load", tst_protocol, env=env).returncode == 0
    again = run("protocol", "load", tst_protocol, env=env)
    assert again.returncode == 0 and "already" in again.stdout
    from trialcoord.scheduling import sites

    await sites.create_site("TST-1", "101", "Riverside Clinic")
    events = write(tmp_path, EVENTS_CSV)
    first = run("import", "events", "TST-1", events, "--site", "101", env=env)
    assert first.returncode == 0, first.stderr
    assert "2 participants created" in first.stdout
    second = run("import", "events", "TST-1", events, "--site", "101", env=env)
    assert "0 participants created, 0 events and 0 visits recorded, 6 lines already present" in second.stdout
    for fmt in ("json", "csv", "table"):
        stored = run("visits", "TST-1", "--as-of", "2024-03-25", "--format", fmt, env=env)
        fresh = run("check", tst_protocol, "--events", events, "--as-of", "2024-03-25", "--format", fmt)
        assert stored.returncode == 0, stored.stderr
        assert stored.stdout == fresh.stdout
    late = json.loads(
        run("visits", "TST-1", "--as-of", "2024-03-25", "--status", "late", "--format", "json", env=env).stdout
    )
    assert [(row["participant"], row["visit"]) for row in late] == [("101-001", "V2")]
    from trialcoord.kernel import audit_log

    exports = await audit_log.browse(audit_log.AuditFilter(action="export"), None, 10)
    assert len(exports) == 4 and exports[0].actor.startswith("cli:")
    assert exports[0].new == {"format": "json", "as_of": "2024-03-25", "statuses": ["late"], "rows": 1}
    imported = await audit_log.browse(audit_log.AuditFilter(record_type="participant_event"), None, 50)
    assert imported and all(e.reason == f"imported from {events}" for e in imported)
    loaded = await audit_log.browse(audit_log.AuditFilter(record_type="protocol_version"), None, 5)
    assert all(e.actor.startswith("cli:") for e in loaded + imported)  # never an anonymous "system"


@pytest.mark.db
async def test_database_commands_report_bad_input_without_traceback(db, tmp_path, tst_protocol):
    env = {"TRIALCOORD_DATABASE_URL": db.url}
    assert run("protocol", "load", tst_protocol, env=env).returncode == 0
    bad = run("import", "events", "TST-1", write(tmp_path, "participant,event,date\nx,randomization,soon\n"), env=env)
    assert bad.returncode == 2 and ":2: date: 'soon' is not a date" in bad.stderr
    assert run("visits", "NOPE", env=env).returncode == 2
    status = run("visits", "TST-1", "--status", "lost", env=env)
    assert status.returncode == 2 and "unknown status lost" in status.stderr
    invalid = write(tmp_path, PROTOCOL_V1.replace("offset: 2w", "ofset: 2w", 1), "bad.yaml")
    refused = run("protocol", "load", invalid, env=env)
    assert refused.returncode == 2 and "did you mean 'offset'" in refused.stderr


def test_a_bad_database_url_is_named():
    result = run("visits", "TST-1", env={"TRIALCOORD_DATABASE_URL": "mysql://x"})
    assert result.returncode == 2 and "TRIALCOORD_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.db
async def test_migrate_and_demo_are_idempotent(db):
    env = {"TRIALCOORD_DATABASE_URL": db.url}
    assert run("db", "migrate", env=env).stdout == "database is up to date\n"
    assert run("db", "migrate", env=env).returncode == 0
    assert run("demo", env=env).stdout == "demo study loaded\n"
    assert run("demo", env=env).stdout == "demo study already present; nothing changed\n"
    overdue = run("visits", "DEMO-001", "--status", "missed,late", "--format", "json", env=env)
    assert overdue.returncode == 0 and json.loads(overdue.stdout)


def test_the_default_database_is_a_file_under_the_data_directory(tmp_path):
    env = {"TRIALCOORD_DATA_DIR": str(tmp_path / "site-data"), "TRIALCOORD_DATABASE_URL": ""}
    assert run("db", "migrate", env=env).returncode == 0
    assert (tmp_path / "site-data" / "trialcoord.sqlite3").is_file()
