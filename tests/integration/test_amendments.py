"""Protocol amendments in the database (issue 11, sections 1 and 2), on SQLite and PostgreSQL: a version change
takes effect from its date, deviation detection runs again for those moved, a version applied to a whole site,
and the impact of a version before it takes effect, which stores nothing."""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

import pikepdf
import pytest

from tests.conftest import PROTOCOL_V1, add_user, signed_in
from trialcoord.amendments import applying, impact, impact_outputs
from trialcoord.deviations import detection, queue
from trialcoord.kernel import audit_log
from trialcoord.kernel.database.engine import fetch
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import participants, protocols, sites, worklists
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.visits import record_event, record_visit

pytestmark = pytest.mark.anyio
DEMO = Path(__file__).resolve().parents[2] / "protocols" / "DEMO-001"
TODAY = date(2026, 11, 2)
EVENTS = {"consent": date(2026, 4, 10), "randomization": date(2026, 5, 1), "first_dose": date(2026, 5, 1)}
# Week 8 (V5) on 2026-07-02: a day after 1.0's window (to 07-01), inside 2.0's (to 07-03); V7, which 2.0 adds,
# closed on 2026-08-28.
VISITS = {
    "V1": date(2026, 4, 20),
    "V2": date(2026, 5, 1),
    "V3": date(2026, 5, 15),
    "V4": date(2026, 5, 29),
    "V5": date(2026, 7, 2),
    "V6": date(2026, 7, 24),
}
# 102-001 started in September: Week 4 not done (target 09-29), so Week 8 targets 10-27 (1.0: to 11-01, 2.0: to
# 11-03) and Week 16 (V7) 12-22.
LATER = (
    {"consent": date(2026, 8, 18), "randomization": date(2026, 9, 1), "first_dose": date(2026, 9, 1)},
    {"V1": date(2026, 8, 20), "V2": date(2026, 9, 1), "V3": date(2026, 9, 15)},
)


async def load_demo_protocols() -> None:
    for name in ("1.0.yaml", "2.0.yaml"):
        text = (DEMO / name).read_text(encoding="utf-8")
        await protocols.load_protocol_version(parse_protocol(text, name), text, name)


@pytest.fixture
async def demo(db):
    await load_demo_protocols()
    for site in ("101", "102"):
        await sites.create_site("DEMO-001", site, f"Site {site}")
    for subject, site, (events, visits) in (
        ("101-001", "101", (EVENTS, VISITS)),
        ("101-002", "101", (EVENTS, VISITS)),
        ("102-001", "102", LATER),
    ):
        await participants.enroll_participant(
            "DEMO-001", subject, site, arm="A", version="1.0", enrolled_on=events["consent"], today=TODAY
        )
        for event, day in events.items():
            await record_event("DEMO-001", subject, event, day, today=TODAY)
        for code, day in visits.items():
            late = "clinic closed that week" if code == "V5" else None  # a day late in 1.0 (see VISITS)
            await record_visit("DEMO-001", subject, code, day, reason=late, today=TODAY)
    await detection.detect("DEMO-001", TODAY, today=TODAY)
    return "DEMO-001"


def by_visit(rows):
    return {row.visit.visit: row for row in rows}


async def kept(study: str, subject: str) -> dict:
    rows, _ = await queue.listing(study, participant=subject)
    return {(row.visit, row.rule): row for row in rows}


async def test_found_a_version_change_is_not_applied_backwards(demo):
    await applying.change_version(demo, "101-001", "2.0", date(2026, 11, 1), "amendment 1", today=TODAY)
    rows = by_visit(await worklists.participant_schedule(demo, "101-001", TODAY))
    assert (rows["V7"].visit.status, rows["V7"].protocol_version) == ("not_applicable", "2.0")
    assert (rows["V5"].visit.status, rows["V5"].visit.days_outside, rows["V5"].protocol_version) == ("late", 1, "1.0")
    stored = {
        row.visit.visit: row
        for row in await worklists.worklist(demo, TODAY, kind="missed_or_out_of_window")
        if row.subject_id == "101-001"
    }
    assert "V7" not in stored and stored["V5"].visit.status == "late"
    found = await kept(demo, "101-001")
    assert ("V5", "visit_late") in found and ("V7", "visit_missed") not in found
    await detection.detect(demo, TODAY, today=TODAY, full=True)  # a later full run agrees
    again = await kept(demo, "101-001")
    assert ("V7", "visit_missed") not in again and again[("V5", "visit_late")].state == "detected"


async def test_records_a_change_makes_wrong_are_resolved_naming_it_and_new_ones_created(db):
    # 1.1 widens Week 4's window and adds V5, a day after Week 4's old window closes.
    v11 = (
        PROTOCOL_V1.replace('version: "1.0"', 'version: "1.1"').replace(
            "V2, offset: 2w, window: {early: 3d, late: 3d}}", "V2, offset: 2w, window: {early: 7d, late: 7d}}"
        )
        + "  - {code: V5, name: Week 5, from: randomization, offset: 30d, window: {early: 1d, late: 1d}}\n"
    )
    for text in (PROTOCOL_V1, v11):
        await protocols.load_protocol_version(parse_protocol(text, "t.yaml"), text, "t.yaml")
    await sites.create_site("TST-1", "101", "Site")
    today = date(2024, 4, 6)
    await participants.enroll_participant(
        "TST-1", "1001", "101", arm="P", version="1.0", enrolled_on=date(2024, 3, 1), today=today
    )
    await record_event("TST-1", "1001", "randomization", date(2024, 3, 4), today=today)
    await record_visit("TST-1", "1001", "V2", date(2024, 3, 18), today=today)
    await detection.detect("TST-1", today, today=today)  # Week 4 (V3), window 03-29 .. 04-04: missed
    assert (await kept("TST-1", "1001"))[("V3", "visit_missed")].state == "detected"
    await applying.change_version("TST-1", "1001", "1.1", date(2024, 4, 3), "amendment", today=today)
    found = await kept("TST-1", "1001")
    v3 = found[("V3", "visit_missed")]
    assert v3.state == "resolved_by_data_correction"  # 1.1's window is open to 04-08
    [entry] = await audit_log.browse(audit_log.AuditFilter(record_type="participant", action="update"), None, 10)
    assert v3.resolved_by_entry == entry.sequence
    assert found[("V5", "visit_missed")].state == "detected"  # 1.1's V5 closed 04-04, after the change


async def test_a_change_takes_effect_no_earlier_than_its_version_or_the_last_change(demo):
    with pytest.raises(InvalidInput, match="effective from 2025-09-15") as early:
        await applying.change_version(demo, "101-001", "2.0", date(2025, 9, 14), "amendment 1", today=TODAY)
    assert early.value.problems[0].field == "effective"
    with pytest.raises(InvalidInput, match="effective from 2025-09-15"):  # for a whole site too: bad input
        await applying.apply_version(demo, "2.0", date(2025, 9, 14), "amendment 1", site="101", today=TODAY)
    await applying.change_version(demo, "101-001", "2.0", date(2026, 10, 1), "amendment 1", today=TODAY)
    with pytest.raises(InvalidInput, match="cannot take effect before that") as before_last:
        await applying.change_version(demo, "101-001", "1.0", date(2026, 9, 30), "back", today=TODAY)
    assert before_last.value.problems[0].field == "effective"
    with pytest.raises(InvalidInput, match="already follows") as same:
        await applying.change_version(demo, "101-001", "2.0", date(2026, 10, 2), "again", today=TODAY)
    assert same.value.problems[0].field == "version"
    with pytest.raises(InvalidInput, match="reason"):
        await applying.change_version(demo, "101-002", "2.0", date(2026, 10, 2), " ", today=TODAY)


async def test_a_version_applies_to_every_active_participant_of_a_site(demo):
    await record_event(demo, "101-002", "early_termination", date(2026, 8, 1), today=TODAY)
    moved = await applying.apply_version(demo, "2.0", date(2026, 11, 1), "amendment 1", site="101", today=TODAY)
    assert moved.moved == ["101-001"]
    assert moved.skipped == {
        "101-002": "has ended the schedule (an ending event is recorded); move it on its own if it must"
    }
    people = {row.subject_id: row.protocol_version for row in await participants.list_participants(demo)}
    assert people == {"101-001": "2.0", "101-002": "1.0", "102-001": "1.0"}
    entries = await audit_log.browse(audit_log.AuditFilter(record_type="participant", action="update"), None, 10)
    assert [(e.record_id, e.reason) for e in entries] == [("DEMO-001/101/101-001", "amendment 1")]
    again = await applying.apply_version(demo, "2.0", date(2026, 11, 1), "amendment 1", today=TODAY)
    assert again.moved == ["102-001"] and "already follows" in again.skipped["101-001"]


async def counts() -> tuple:
    tables = ("visits", "protocol_changes", "deviations", "participants", "audit_entries")
    return tuple([(await fetch(f"SELECT COUNT(*) AS n FROM {t}"))[0]["n"] for t in tables])


async def test_the_impact_of_a_version_names_each_change_and_stores_nothing(demo):
    text = (DEMO / "2.0.yaml").read_text(encoding="utf-8")
    before = await counts()
    result = await impact.impact(demo, parse_protocol(text), text, date(2026, 11, 1), today=TODAY)
    assert await counts() == before
    assert [p.subject_id for p in result.participants] == ["101-001", "101-002", "102-001"]
    early, later = result.participants[0], result.participants[2]
    assert (early.changes, early.resolved, early.created) == ((), (), ())  # all done or closed before the change
    kinds = {c.visit: c for c in later.changes}
    assert kinds["V5"].kind == "moves" and kinds["V5"].old[2] == date(2026, 11, 1)
    assert kinds["V5"].new[2] == date(2026, 11, 3)
    assert (kinds["V7"].kind, kinds["V7"].new[0]) == ("appears", date(2026, 12, 22))
    assert [(f.visit, str(f.rule)) for f in later.resolved] == [("V5", "visit_missed")]  # open again under 2.0
    assert later.reconsent.status == "no_consent_version"
    assert result.differences["1.0"][0].startswith("V5 Week 8 – window -5d / +5d → -7d / +7d")
    assert {r.item for r in impact_outputs.impact_rows(result)} == {
        "visit moves",
        "visit appears",
        "deviation resolved",
    }
    pdf = impact_outputs.impact_pdf(result, created_at="2026-11-02T00:00:00Z")
    assert len(pikepdf.open(io.BytesIO(pdf)).pages) == 1
    # Taking effect in July instead: Week 8, done on 07-02, falls under 2.0 (on time), and Week 16 was due.
    july = await impact.impact(demo, parse_protocol(text), text, date(2026, 7, 1), today=TODAY)
    first = july.participants[0]
    assert [(f.visit, str(f.rule)) for f in first.resolved] == [("V5", "visit_late")]
    assert [(f.visit, str(f.rule)) for f in first.created] == [("V7", "visit_missed")]
    summary = impact_outputs.impact_summary(july)
    assert summary.totals.deviations_resolved >= 2 and [s.site for s in summary.sites] == ["101", "102"]


async def test_the_impact_page_shows_its_first_rows_and_sends_to_the_csv_for_the_rest(demo, anonymous, monkeypatch):
    from trialcoord.amendments import pages as amendment_pages

    monkeypatch.setattr(amendment_pages, "IMPACT_ROWS_SHOWN", 0)  # the demo's impact has one row: show none of it
    await add_user("mona", ("monitor", demo, None))
    mona = await signed_in(anonymous, "mona")
    asked = {"version": "2.0", "effective": "2026-11-01"}
    page = await mona.post(
        f"/studies/{demo}/amendments/impact", files={"file": ("", b"")}, data={**asked, "format": "html"}
    )
    assert page.status_code == 200, page.text
    csv = await mona.post(
        f"/studies/{demo}/amendments/impact", files={"file": ("", b"")}, data={**asked, "format": "csv"}
    )
    rows = len(csv.text.strip().splitlines()) - 1
    assert rows >= 1
    table = page.text.split('id="impact-rows"')[1].split("</table>")[0]
    assert table.split("<tbody>")[1].count("<tr>") == 0
    assert f"The first 0 of {rows} rows" in page.text  # the page says how many rows the CSV holds


async def test_impact_and_apply_over_the_api_and_the_page(demo, anonymous):
    await add_user("cora", ("coordinator", demo, "101"))
    await add_user("mona", ("monitor", demo, None))
    mona = await signed_in(anonymous, "mona")
    response = await mona.get(f"/api/studies/{demo}/protocol-versions/2.0/impact", params={"effective": "2026-11-01"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["participants"] == 3 and body["differences"]["1.0"]
    pdf = await mona.get(f"/api/studies/{demo}/protocol-versions/2.0/impact", params={"format": "pdf"})
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    csv = await mona.get(f"/api/studies/{demo}/protocol-versions/2.0/impact", params={"format": "csv"})
    assert csv.text.lstrip("\ufeff").startswith("subject_id,site,item")
    upload = await mona.post(
        f"/api/studies/{demo}/protocol-impact",
        content=(DEMO / "2.0.yaml").read_bytes(),
        headers={"content-type": "application/yaml"},
    )
    assert upload.status_code == 200 and upload.json()["version"] == "2.0"
    assert (
        await mona.post(
            f"/api/studies/{demo}/protocol-versions/2.0/apply", json={"effective": "2026-11-01", "reason": "x"}
        )
    ).status_code == 403
    page = await mona.post(
        f"/studies/{demo}/amendments/impact",
        files={"file": ("2.0.yaml", (DEMO / "2.0.yaml").read_bytes())},
        data={"format": "html"},
    )
    assert page.status_code == 200 and "Week 16" in page.text and "impact-rows" in page.text
    bad = (DEMO / "2.0.yaml").read_text(encoding="utf-8").replace("after_end: expected", "after_end: yes")
    refused = await mona.post(
        f"/studies/{demo}/amendments/impact", files={"file": ("bad.yaml", bad.encode())}, data={"format": "html"}
    )
    assert refused.status_code == 422
    assert re.search(r"<span class=\"error\">[^<]*after_end[^<]*</span>", refused.text), refused.text
    download = await mona.post(
        f"/studies/{demo}/amendments/impact",
        files={"file": ("", b"")},  # no file chosen
        data={"version": "2.0", "format": "csv", "site": "102", "effective": "2026-11-01"},
    )
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert "102-001,102,visit appears,V7" in download.text and "101-00" not in download.text
    reads = await audit_log.browse(audit_log.AuditFilter(record_type="protocol_impact"), None, 10)
    assert sorted((e.actor, e.record_id, e.new["format"]) for e in reads) == [
        ("mona", demo, "csv"),
        ("mona", demo, "html"),
        ("mona", demo, "json"),
        ("mona", demo, "json"),
        ("mona", demo, "pdf"),
        ("mona", f"{demo}/102", "csv"),
    ]
    cora = await signed_in(anonymous, "cora")
    whole = await cora.post(
        f"/api/studies/{demo}/protocol-versions/2.0/apply", json={"effective": "2026-11-01", "reason": "amendment 1"}
    )
    assert whole.status_code == 403  # a coordinator of one site names it
    applied = await cora.post(
        f"/api/studies/{demo}/protocol-versions/2.0/apply",
        json={"effective": "2026-11-01", "reason": "amendment 1", "site": "101"},
    )
    assert applied.status_code == 200 and applied.json()["moved"] == ["101-001", "101-002"]
    assert set(applied.json()["deviations"]) == {"created", "updated", "resolved", "reopened"}
    bad = await cora.post(
        f"/api/studies/{demo}/protocol-versions/2.0/apply",
        json={"effective": "2026-11-01", "reason": "amendment 1", "site": "102"},
    )
    assert bad.status_code == 403


async def test_found_a_version_giving_a_new_visit_a_removed_visits_number_is_refused(demo):
    """New-user finding: 2.1 dropped V7 and added V8 in its place, which took V7's number 7 by position."""
    text = (
        (DEMO / "2.0.yaml")
        .read_text(encoding="utf-8")
        .replace('version: "2.0"', 'version: "2.1"')
        .replace("  - code: V7\n", "  - code: V8\n")
    )
    protocol = parse_protocol(text, "2.1.yaml")
    with pytest.raises(InvalidInput, match="visit V8 takes number 7, which is V7's in version 2.0") as refused:
        await protocols.load_protocol_version(protocol, text, "2.1.yaml")
    assert refused.value.problems[0].field == "visits"
    with pytest.raises(InvalidInput, match="visit V8 takes number 7"):
        await impact.impact(demo, protocol, text, today=TODAY)
    assert [row.version for row in await protocols.list_protocol_versions(demo)] == ["1.0", "2.0"]
