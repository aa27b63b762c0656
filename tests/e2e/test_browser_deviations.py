"""Real Chromium: a deviation from detection to closure, as the coordinator of site 101 (cora) and the monitor
(mona): a late visit, a detection run, the site's response, the monitor's acknowledgement, the signed
classification and the signed closure; then the report downloads (listing CSV and Excel, the site's deviation
log as PDF and DOCX) and filing the log into the binder. The server and browser fixtures are test_browser.py's (a
served demo study on a temporary SQLite database); a screenshot of the closed deviation goes to test-artifacts/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.e2e.test_browser import ARTIFACTS, PASSWORD, TODAY, browser, server, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
SUBJECT = "101-950"


def _late_visit(cora) -> None:
    """Participant 101-950, randomised 20 days ago, seen for Week 2 (window +-3 days around day 14) yesterday."""
    from playwright.sync_api import expect

    cora.goto("/studies/DEMO-001")
    cora.get_by_label("Subject ID").fill(SUBJECT)
    cora.locator("#enrol-site").select_option("101")
    expect(cora.locator("#enrol-arm")).to_have_count(0)  # DEMO-001 is double-blind: the coordinator enrols blind
    cora.get_by_label("Enrolment date").fill(str(TODAY - timedelta(days=30)))
    cora.get_by_role("button", name="Enrol").click()
    expect(cora.get_by_role("heading", name=f"Participant {SUBJECT}")).to_be_visible()
    cora.locator("#event-event").select_option("randomization")
    cora.locator("#event-date").fill(str(TODAY - timedelta(days=20)))
    cora.get_by_role("button", name="Record event").click()
    expect(cora.get_by_role("status")).to_have_text("Event recorded.")
    week2 = cora.locator("#visit-V3")
    week2.get_by_text("Record").first.click()
    week2.locator("#V3-actual-date").fill(str(TODAY - timedelta(days=1)))
    week2.locator("#V3-actual-reason").fill("Participant was travelling")
    week2.get_by_role("button", name="Save visit date").click()
    expect(cora.locator("#visit-V3 .badge")).to_have_text("Late")


def _sign_step(mona, step: str, button: str, user_id: str = "") -> None:
    form = mona.locator(f"#{step}-form")
    form.get_by_label("User ID").fill(user_id)
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_role("button", name=button).click()


def test_a_deviation_walks_from_detection_to_closure(browser, server):  # noqa: F811 (fixtures)
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    cora = sign_in(browser, server, "cora")
    _late_visit(cora)

    cora.goto("/studies/DEMO-001")
    cora.get_by_role("link", name="Deviations").first.click()
    expect(cora.get_by_role("heading", name="Deviations of DEMO-001")).to_be_visible()
    expect(cora.get_by_role("row").filter(has_text=SUBJECT)).to_have_count(0)
    cora.get_by_role("button", name="Run detection").click()
    expect(cora.get_by_role("status")).to_contain_text(re.compile(r"Detection ran: [1-9]\d* created"))
    row = cora.get_by_role("row").filter(has_text=SUBJECT).filter(has_text="visit late")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("V3")
    row.get_by_role("link").first.click()
    expect(cora.get_by_role("heading", name=re.compile(r"Deviation \d+"))).to_be_visible()
    expect(cora.locator("#deviation-state")).to_have_text("detected")
    expect(cora.locator("figure.timeline g.highlighted")).to_have_count(1)
    deviation_url = cora.url

    cora.locator("#respond-reason").fill("Participant was travelling abroad")
    cora.locator("#respond-corrective_action").fill("Book visits around travel plans")
    cora.get_by_role("button", name="Record response").click()
    expect(cora.get_by_role("status")).to_have_text("Response recorded.")
    expect(cora.locator("#deviation-state")).to_have_text("site response")
    expect(cora.locator("#classify-form")).to_have_count(0)  # a coordinator is offered no monitor step

    mona = sign_in(browser, server, "mona")
    mona.goto("/studies/DEMO-001/deviations?state=site_response")
    queue_row = mona.get_by_role("row").filter(has_text=SUBJECT).filter(has_text="visit late")
    queue_row.get_by_role("checkbox").check()
    mona.get_by_role("button", name="Acknowledge selected").click()
    expect(mona.get_by_role("status")).to_have_text("Acknowledged 1.")
    mona.screenshot(path=str(ARTIFACTS / "deviation-queue.png"), full_page=True)
    mona.goto(deviation_url)
    expect(mona.locator("#deviation-state")).to_have_text("under review")
    expect(mona.locator("#site-response")).to_contain_text("Participant was travelling abroad")

    form = mona.locator("#classify-form")
    form.get_by_label("Classification").select_option("important")
    form.get_by_label("Category (DVCAT)").select_option("visit schedule")
    form.get_by_label("Subcategory (DVDECOD)").select_option("VISIT OUT OF WINDOW")
    _sign_step(mona, "classify", "Classify and sign", user_id="mona")  # the first signing: user ID too
    expect(mona.get_by_role("status")).to_have_text("Classified and signed (review).")
    expect(mona.locator("#classification")).to_have_text("important")

    _sign_step(mona, "close", "Close and sign")  # within the signing period: the password alone
    expect(mona.get_by_role("status")).to_have_text("Closed and signed (approval).")
    expect(mona.locator("#deviation-state")).to_have_text("closed")
    signatures = mona.locator("#signatures tbody tr")
    expect(signatures).to_have_count(2)
    expect(signatures.nth(0)).to_contain_text("Mona Monitor")
    expect(signatures.nth(0)).to_contain_text("review")
    expect(signatures.nth(1)).to_contain_text("approval")
    expect(mona.locator("#signatures td.verdict")).to_have_text(["valid", "valid"])
    expect(mona.locator("#steps tbody tr")).to_have_count(4)  # respond, acknowledge, classify, close
    mona.screenshot(path=str(ARTIFACTS / "deviation-closed.png"), full_page=True)

    # The reports: the monitor downloads the listing and the site's deviation log; the coordinator files the log.
    mona.goto("/studies/DEMO-001")
    mona.get_by_role("link", name="Reports").first.click()
    expect(mona.get_by_role("heading", name=re.compile("Reports"))).to_be_visible()
    listing = _download(mona, mona.get_by_role("link", name="CSV"))
    assert listing.startswith(b"\xef\xbb\xbf") and SUBJECT.encode() in listing and b"VISIT SCHEDULE" in listing
    assert _download(mona, mona.get_by_role("link", name="Excel")).startswith(b"PK")
    site_row = mona.locator("#site-reports tr").filter(has_text="101")
    assert _download(mona, site_row.get_by_role("link", name="PDF").first).startswith(b"%PDF")
    assert _download(mona, site_row.get_by_role("link", name="DOCX").first).startswith(b"PK")
    cora.goto("/studies/DEMO-001/reports")
    cora.locator("#file-form").get_by_label("Site").select_option("101")
    cora.locator("#file-form").get_by_role("button").click()
    expect(cora.locator("#filed")).to_contain_text("Protocol deviation log version")


def _download(page, link) -> bytes:
    """Click a download link; the file's bytes."""
    with page.expect_download() as download:
        link.click()
    return download.value.path().read_bytes()
