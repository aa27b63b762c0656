"""`trialcoord deviations detect` and `list` run as a user runs them: separate processes on the test's database
(SQLite and PostgreSQL), checked by exit status and output against what the services hold."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest

from tests.conftest import RANDOMIZED, SITE_A, SITE_B
from tests.integration.test_cli import run
from trialcoord.deviations import manual, queue
from trialcoord.kernel import audit_log
from trialcoord.scheduling import participants, sites, visits

pytestmark = [pytest.mark.db, pytest.mark.anyio]
TODAY = date(2024, 6, 1)  # every window of V2 and V3 closed long ago
REQUIRED = {
    "participant",
    "visit",
    "occurrence",
    "rule",
    "category",
    "classification",
    "state",
    "days_outside",
    "detected_at",
    "id",
    "site",
    "subcategory",
    "description",
    "occurred_on",
    "source",
}
STATES = "detected, site_response, under_review, classified, closed, reopened, resolved_by_data_correction"


@pytest.fixture
def env(db, tmp_path) -> dict[str, str]:
    return {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path / "data")}


def ok(env: dict[str, str], *args: str) -> str:
    result = run("deviations", *args, env=env)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def listed(env: dict[str, str], *args: str) -> list[dict]:
    return json.loads(ok(env, "list", "TST-1", "--format", "json", *args))


async def enrol(study: str, subject: str, site: str = SITE_A, today: date = TODAY) -> None:
    await participants.enroll_participant(study, subject, site, arm="P", enrolled_on=RANDOMIZED, today=today)
    await visits.record_event(study, subject, "randomization", RANDOMIZED, today=today)


@pytest.fixture
async def enrolled(study):
    """1001 late for V2 (4 days, so V3 early), 1002 early for V3 (2 days), 2001 at site 102 with no visit at all."""
    await sites.create_site(study, SITE_B, "Lakeside", "America/Chicago")
    for subject, site in (("1001", SITE_A), ("1002", SITE_A), ("2001", SITE_B)):
        await enrol(study, subject, site)
    await visits.record_visit(study, "1001", "V2", date(2024, 3, 25), reason="travelling", today=TODAY)
    await visits.record_visit(study, "1001", "V3", date(2024, 4, 1), reason="moving away", today=TODAY)
    await visits.record_visit(study, "1002", "V2", date(2024, 3, 18), today=TODAY)
    await visits.record_visit(study, "1002", "V3", date(2024, 3, 27), reason="moving away", today=TODAY)
    return study


async def test_detect_prints_the_counts_and_a_second_run_creates_nothing(enrolled, env):
    first = ok(env, "detect", "TST-1", "--as-of", "2024-06-01")
    rows, total = await queue.listing(enrolled)
    assert total > 0
    assert first == f"TST-1 as of 2024-06-01 (full): {total} created, 0 updated, 0 resolved, 0 reopened\n"
    created = await audit_log.browse(audit_log.AuditFilter(record_type="deviation"), None, 100)
    assert len(created) == total and all(e.actor.startswith("cli:") for e in created)
    again = ok(env, "detect", "TST-1", "--as-of", "2024-06-01")
    assert again == "TST-1 as of 2024-06-01 (0 participants): 0 created, 0 updated, 0 resolved, 0 reopened\n"
    full = ok(env, "detect", "TST-1", "--as-of", "2024-06-01", "--full")
    assert full == "TST-1 as of 2024-06-01 (full): 0 created, 0 updated, 0 resolved, 0 reopened\n"
    assert (await queue.listing(enrolled))[0] == rows


async def test_detect_honours_as_of_a_window_closing_between_two_dates(study, env):
    await enrol(study, "1004", today=RANDOMIZED)
    # 2024-03-21 is V2's last day: only screening is missed yet; the day after, V2 is missed too.
    assert "(full): 1 created," in ok(env, "detect", "TST-1", "--as-of", "2024-03-21")
    assert [(r["visit"], r["rule"]) for r in listed(env)] == [("SCR", "visit_missed")]
    assert "(1 participant): 1 created," in ok(env, "detect", "TST-1", "--as-of", "2024-03-22")
    assert [(r["visit"], r["rule"]) for r in listed(env)] == [("SCR", "visit_missed"), ("V2", "visit_missed")]


@pytest.fixture
async def detected(enrolled, env):
    ok(env, "detect", "TST-1", "--as-of", "2024-06-01")
    await manual.record_manual(
        enrolled,
        SITE_A,
        "other",
        '=HYPERLINK("http://evil.example","x")',
        date(2024, 5, 2),
        "cora",
        subject_id="1001",
        today=TODAY,
    )
    return enrolled


async def test_list_as_json_carries_the_required_keys_of_every_record(detected, env):
    rows = listed(env)
    stored, total = await queue.listing(detected)
    assert len(rows) == total and all(set(row) == REQUIRED for row in rows)
    assert [row["id"] for row in rows] == [row.id for row in stored]
    late = next(r for r in rows if (r["participant"], r["visit"], r["rule"]) == ("1001", "V2", "visit_late"))
    assert late == {
        **late,
        "occurrence": 1,
        "site": SITE_A,
        "category": "visit schedule",
        "source": "automatic",
        "state": "detected",
        "days_outside": 4,
        "classification": "non_important",
    }
    manual = next(r for r in rows if r["source"] == "manual")
    assert (manual["rule"], manual["description"]) == (None, '=HYPERLINK("http://evil.example","x")')
    exports = await audit_log.browse(audit_log.AuditFilter(action="export"), None, 5)
    assert exports[0].record_type == "deviation_listing" and exports[0].actor.startswith("cli:")
    assert exports[0].new == {"format": "json", "states": [], "rows": total}


async def test_list_as_csv_has_the_same_columns_and_guards_formulas(detected, env):
    rows = listed(env)
    text = ok(env, "list", "TST-1", "--format", "csv")
    records = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].split(",") == list(rows[0])
    assert [int(r["id"]) for r in records] == [r["id"] for r in rows]
    manual = next(r for r in records if r["source"] == "manual")
    assert manual["description"] == '\'=HYPERLINK("http://evil.example","x")' and manual["rule"] == ""
    early = next(r for r in records if (r["participant"], r["visit"]) == ("1002", "V3"))
    assert early["days_outside"] == "-2"  # a number stays a number; only text is guarded


async def test_list_as_a_table_has_aligned_columns(detected, env):
    rows = listed(env)
    header, *lines = ok(env, "list", "TST-1").splitlines()
    assert header.split() == [
        "id",
        "site",
        "participant",
        "visit",
        "occurrence",
        "rule",
        "classification",
        "state",
        "days_outside",
        "occurred_on",
        "description",
    ]
    assert len(lines) == len(rows)
    state, days = header.index("state"), header.index("days_outside")
    assert [line[state:].split()[0] for line in lines] == [r["state"] for r in rows]
    assert [line[days:].split()[0] for line in lines] == [str(r["days_outside"]) for r in rows]
    manual = next(line for line in lines if "HYPERLINK" in line)
    assert manual[header.index("rule") :].split()[0] == "manual"


async def test_list_filters_by_state_and_site(enrolled, env):
    ok(env, "detect", "TST-1", "--as-of", "2024-06-01")
    await visits.record_visit(enrolled, "1001", "V2", date(2024, 3, 20), reason="transcription error", today=TODAY)
    # V2 is back in its window, and so is V3, whose window follows V2's actual date.
    assert ok(env, "detect", "TST-1", "--as-of", "2024-06-01") == (
        "TST-1 as of 2024-06-01 (1 participant): 0 created, 0 updated, 2 resolved, 0 reopened\n"
    )
    resolved = listed(env, "--state", "resolved_by_data_correction")
    assert {(r["participant"], r["visit"], r["rule"]) for r in resolved} == {
        ("1001", "V2", "visit_late"),
        ("1001", "V3", "visit_early"),
    }
    detected = listed(env, "--state", "detected")
    assert detected and {r["state"] for r in detected} == {"detected"}
    both = listed(env, "--state", "detected, resolved_by_data_correction")
    assert len(both) == len(detected) + len(resolved) == len(listed(env))
    at_b = listed(env, "--site", SITE_B)
    assert at_b and {r["participant"] for r in at_b} == {"2001"}
    at_a = listed(env, "--site", SITE_A, "--state", "detected")
    assert {(r["site"], r["state"]) for r in at_a} == {(SITE_A, "detected")}
    assert len(at_a) == len(detected) - len([r for r in at_b if r["state"] == "detected"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("detect", "NOPE"), "error: study NOPE does not exist"),
        (("list", "NOPE"), "error: study NOPE does not exist"),
        (
            ("list", "TST-1", "--state", "lost,detected,gone"),
            f"error: --state: unknown state lost, gone; states are: {STATES}",
        ),
        (("list", "TST-1", "--site", "999"), "error: study TST-1 has no site 999"),
        (("detect", "TST-1", "--as-of", "2024-02-30"), "'2024-02-30' is not a date; write it as YYYY-MM-DD"),
        (("list", "TST-1", "--format", "xml"), "argument --format: invalid choice: 'xml'"),
    ],
)
async def test_bad_input_is_exit_2_naming_it(study, env, args, message):
    result = run("deviations", *args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_detect_defaults_to_today_in_the_configured_time_zone_even_ahead_of_the_server(enrolled, env):
    """The server's clock a day behind the sites' zone: today there is the default, and is not 'to come'."""
    ahead = {**env, "TZ": "Etc/GMT+12", "TRIALCOORD_TIME_ZONE": "Pacific/Kiritimati"}  # UTC-12 and UTC+14
    printed = ok(ahead, "detect", "TST-1")
    assert printed.startswith("TST-1 as of ") and "(full)" in printed
