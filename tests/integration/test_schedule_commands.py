"""Stored schedules staying current (`schedules refresh`), and the command line of amendments and site calendars
(`protocol apply`, `protocol impact`, `site calendar`, `site close`), run as separate processes on the test's
database, SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from pathlib import Path

import pikepdf
import pytest

from tests.integration.test_cli import run
from trialcoord.deviations import detection, queue
from trialcoord.kernel import audit_log
from trialcoord.scheduling import participants, protocols, sites, visits
from trialcoord.scheduling.protocol_files import parse_protocol

pytestmark = [pytest.mark.db, pytest.mark.anyio]
ROOT = Path(__file__).resolve().parents[2]
ONC = ROOT / "protocols" / "ONC-201" / "1.0.yaml"
DEMO = ROOT / "protocols" / "DEMO-001"
DOSED = date(2026, 1, 5)  # a Monday: cycles every 21 days, each a Monday


@pytest.fixture
def env(db, tmp_path) -> dict[str, str]:
    return {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path / "data")}


def ok(env: dict[str, str], *args: str) -> str:
    result = run(*args, env=env)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture
async def dosing(db):
    text = ONC.read_text(encoding="utf-8")
    await protocols.load_protocol_version(parse_protocol(text, "onc.yaml"), text, "onc.yaml")
    await sites.create_site("ONC-201", "201", "Harbor")
    for subject in ("201-001", "201-002"):
        await participants.enroll_participant("ONC-201", subject, "201", enrolled_on=DOSED, today=DOSED)
        await visits.record_event("ONC-201", subject, "first_dose", DOSED, today=DOSED)
        await visits.record_visit("ONC-201", subject, "C1D1", DOSED, today=DOSED)
    return "ONC-201"


async def test_found_open_repeats_past_the_stored_horizon_are_detected_once_refreshed(dosing, env):
    later = DOSED + timedelta(days=300)
    await detection.detect(dosing, later, today=later)
    before = {r.visit for r in (await queue.listing(dosing))[0] if r.rule == "visit_missed"}
    assert "C8D1" not in before  # stored up to 60 days after the participant last changed
    out = ok(env, "schedules", "refresh", dosing, "--as-of", later.isoformat())
    assert "ONC-201: 2 participants re-evaluated as of 2026-11-01, deviation detection run for them" in out
    # the refresh ran detection for those it re-evaluated: the missed occurrences are flagged at once
    after = {r.visit for r in (await queue.listing(dosing))[0] if r.rule == "visit_missed"}
    assert {"C2D1", "C8D1", "C14D1"} <= after and "C16D1" not in after  # C15D1 targets day 294, open to day 297
    assert "0 participants" in ok(env, "schedules", "refresh", dosing, "--as-of", later.isoformat())  # idempotent
    earlier = run("schedules", "refresh", "--as-of", (later - timedelta(days=1)).isoformat(), env=env)
    assert earlier.returncode == 2 and "detection already ran as of 2026-11-01" in earlier.stderr  # moves forward
    rerun = await detection.detect(dosing, later, today=later)  # an incremental run finds nothing more to do
    assert (rerun.created, rerun.resolved) == (0, 0)
    refused = run("schedules", "refresh", "--as-of", "2999-01-01", env=env)
    assert refused.returncode == 2 and "still to come" in refused.stderr


async def test_refresh_touches_only_participants_whose_horizon_ends_too_soon(dosing):
    later = DOSED + timedelta(days=30)
    await visits.record_visit(dosing, "201-001", "C2D1", DOSED + timedelta(days=21), today=later)
    assert await detection.refresh_schedules(dosing, later, today=later) == {"ONC-201": 1}  # 201-002 only
    assert await detection.refresh_schedules(dosing, later, today=later) == {"ONC-201": 0}


async def load_demo_study(env) -> None:
    for name in ("1.0.yaml", "2.0.yaml"):
        ok(env, "protocol", "load", str(DEMO / name))
    await sites.create_site("DEMO-001", "101", "Riverside")
    today = date(2026, 11, 2)
    for subject in ("101-001", "101-002"):
        await participants.enroll_participant(
            "DEMO-001", subject, "101", arm="A", version="1.0", enrolled_on=date(2026, 9, 1), today=today
        )
        await visits.record_event("DEMO-001", subject, "randomization", date(2026, 9, 15), today=today)


async def test_protocol_impact_and_apply_on_the_command_line(env, tmp_path):
    await load_demo_study(env)
    new = str(DEMO / "2.0.yaml")
    table = ok(env, "protocol", "impact", "DEMO-001", new, "--effective", "2026-11-01")
    assert "2 of 2 active participants affected" in table and "visit appears" in table
    assert "what 2.0 changes against 1.0:\n  V5 Week 8 – window -5d / +5d → -7d / +7d" in table
    data = json.loads(ok(env, "protocol", "impact", "DEMO-001", new, "--effective", "2026-11-01", "--format", "json"))
    assert [p["subject_id"] for p in data["affected"]] == ["101-001", "101-002"]
    assert {v["visit"] for v in data["affected"][0]["visits"]} >= {"V7"}
    rows = list(csv.DictReader(io.StringIO(ok(env, "protocol", "impact", "DEMO-001", new, "--format", "csv"))))
    assert rows and set(rows[0]) == {
        "subject_id",
        "site",
        "item",
        "visit",
        "old_target",
        "old_window",
        "new_target",
        "new_window",
        "detail",
    }
    pdf = tmp_path / "impact.pdf"
    ok(env, "protocol", "impact", "DEMO-001", new, "--format", "pdf", "--out", str(pdf))
    assert len(pikepdf.open(pdf).pages) == 1
    no_out = run("protocol", "impact", "DEMO-001", new, "--format", "pdf", env=env)
    assert no_out.returncode == 2 and "--out" in no_out.stderr
    wrong = run("protocol", "impact", "DEMO-001", str(ONC), env=env)
    assert wrong.returncode == 2 and "describes study ONC-201" in wrong.stderr
    nowhere = run(
        "protocol", "impact", "DEMO-001", new, "--format", "csv", "--out", str(tmp_path / "no" / "x.csv"), env=env
    )
    assert nowhere.returncode == 2 and "x.csv: cannot be written" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
    no_study = run("protocol", "impact", "NOPE-1", new, env=env)
    assert no_study.returncode != 0 and "NOPE-1" in no_study.stderr and "describes" not in no_study.stderr
    other_text = tmp_path / "2.0-edited.yaml"  # the label 2.0 is loaded with other content: it can never load
    other_text.write_text(
        (DEMO / "2.0.yaml").read_text(encoding="utf-8").replace("Week 16", "Week 17"), encoding="utf-8"
    )
    relabel = run("protocol", "impact", "DEMO-001", str(other_text), env=env)
    assert relabel.returncode == 2 and "already has a protocol version 2.0 with other content" in relabel.stderr
    assert [p.protocol_version for p in await participants.list_participants("DEMO-001")] == ["1.0", "1.0"]
    applied = ok(
        env,
        "protocol",
        "apply",
        "DEMO-001",
        "2.0",
        "--site",
        "101",
        "--effective",
        "2026-11-01",
        "--reason",
        "amendment 1 approved",
    )
    assert "2 participants moved to protocol version 2.0 from 2026-11-01 (0 left as they are)" in applied
    assert re.search(r"deviation detection run again for them: \d+ created, 0 resolved by the change", applied)
    assert [p.protocol_version for p in await participants.list_participants("DEMO-001")] == ["2.0", "2.0"]
    again = ok(env, "protocol", "apply", "DEMO-001", "2.0", "--effective", "2026-11-01", "--reason", "again")
    assert "101-001: already follows protocol version 2.0" in again
    left = ok(env, "protocol", "impact", "DEMO-001", new, "--effective", "2026-11-01")
    assert "0 of 0 active participants affected (2 left out, listed below)" in left
    assert re.search(r"101-001 .* not affected .* already follows protocol version 2.0", left)
    assert "what 2.0 changes against 2.0:" not in left
    early = run("protocol", "apply", "DEMO-001", "1.0", "--effective", "2026-10-01", "--reason", "back", env=env)
    assert early.returncode == 3 and "cannot take effect before that" in early.stdout  # nobody could move


async def test_site_calendar_and_closures_on_the_command_line(env, dosing):
    out = ok(env, "site", "calendar", dosing, "201", "holidays:GB-SCT")
    assert "business days follow holidays:GB-SCT" in out
    bad = run("site", "calendar", dosing, "201", "holidays:XX", env=env)
    assert bad.returncode == 2 and "calendar: 'XX' is not a country" in bad.stderr
    closed = ok(env, "site", "close", dosing, "201", "2026-12-24", "2026-12-31", "--reason", "Christmas closure")
    assert "closed from 2026-12-24 to 2026-12-31 (Christmas closure)" in closed
    days = await sites.site_calendar_days(dosing, "201", date(2026, 12, 23), date(2027, 1, 5))
    assert {d.date for d in days.closed} >= {date(2026, 12, 24), date(2027, 1, 1), date(2027, 1, 4)}
    unknown = run("site", "close", dosing, "999", "2026-12-24", "--reason", "x", env=env)
    assert unknown.returncode == 2 and "has no site 999" in unknown.stderr
    shown = ok(env, "site", "calendar", dosing, "201")  # without a calendar: shows it, changes nothing
    assert "business days follow holidays:GB-SCT" in shown and "closure 2026-12-24 to 2026-12-31" in shown
    assert (await sites.site_calendar_days(dosing, "201", date(2026, 12, 1), date(2026, 12, 2))).own
    overlap = run("site", "close", dosing, "201", "2026-12-30", "2027-01-02", "--reason", "again", env=env)
    assert overlap.returncode == 3 and "already closed from 2026-12-24 to 2026-12-31" in overlap.stderr
    typo = run("site", "close", dosing, "201", "1999-12-24", "--reason", "x", env=env)
    assert typo.returncode == 2 and "is the year right?" in typo.stderr
    reopened = ok(env, "site", "reopen", dosing, "201", "2026-12-24", "--reason", "entered for the wrong site")
    assert "closure from 2026-12-24 to 2026-12-31 withdrawn" in reopened
    days = await sites.site_calendar_days(dosing, "201", date(2026, 12, 23), date(2027, 1, 5))
    assert date(2026, 12, 29) not in {d.date for d in days.closed} and days.closures == []
    [entry] = await audit_log.browse(audit_log.AuditFilter(record_type="site", action="delete"), None, 5)
    assert (entry.record_id, entry.reason) == ("ONC-201/201/closure/2026-12-24", "entered for the wrong site")
    gone = run("site", "reopen", dosing, "201", "2026-12-24", "--reason", "x", env=env)
    assert gone.returncode != 0 and "no closure starting on 2026-12-24" in gone.stderr
    back = ok(env, "site", "calendar", dosing, "201", "--protocol")
    assert "business days follow the protocol calendar" in back


async def test_sites_from_the_command_line(env, dosing):
    added = ok(
        env,
        "site",
        "add",
        dosing,
        "305",
        "--name",
        "Klinikum Nord",
        "--time-zone",
        "Europe/Berlin",
        "--calendar",
        "holidays:de-by",
    )
    assert (
        "site 305 (Klinikum Nord) added to ONC-201: time zone Europe/Berlin, business days follow holidays:DE-BY"
        in added
    )
    again = run("site", "add", dosing, "305", env=env)
    assert again.returncode == 3 and "already has a site 305" in again.stderr
    bad = run("site", "add", dosing, "306", "--time-zone", "Mars/Olympus", env=env)
    assert bad.returncode == 2 and "time_zone" in bad.stderr
    table = ok(env, "site", "list", dosing)
    assert re.search(r"305 +Klinikum Nord +Europe/Berlin +holidays:DE-BY", table)
    listed = json.loads(ok(env, "site", "list", dosing, "--format", "json"))
    assert [s["code"] for s in listed] == ["201", "305"]
    [entry] = [
        e
        for e in await audit_log.browse(audit_log.AuditFilter(record_type="site", action="create"), None, 5)
        if e.record_id == "ONC-201/305"
    ]
    assert entry.new["time_zone"] == "Europe/Berlin"


async def test_import_events_creates_the_sites_a_file_names_when_asked(env, dosing, tmp_path):
    edc = tmp_path / "edc.csv"
    edc.write_text(
        "participant,event,date,site\n310-001,first_dose,2026-01-05,310\n311-001,first_dose,2026-01-06,311\n",
        encoding="utf-8",
    )
    refused = run("import", "events", dosing, str(edc), env=env)
    assert refused.returncode == 2 and f"{edc}:2: site: study ONC-201 has no site 310" in refused.stderr
    done = ok(env, "import", "events", dosing, str(edc), "--create-sites")
    assert "sites 310, 311 created, 2 participants created" in done
    assert {s.code for s in await sites.list_sites(dosing)} == {"201", "310", "311"}
