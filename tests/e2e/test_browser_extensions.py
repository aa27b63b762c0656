"""Real Chromium: a window extension asked for and granted (issue 15). The coordinator of site 101 (cora) requests
two more days for an upcoming visit of a demo participant, the investigator (ivan) approves it, and the
participant's schedule shows the window widened and marked "extended". The server and browser fixtures are
test_browser.py's (a served demo study on a temporary SQLite database)."""

from __future__ import annotations

import pytest

from tests.e2e.test_browser import ARTIFACTS, browser, server, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
SUBJECT = "101-001"


def test_a_coordinator_asks_for_more_days_and_the_investigator_grants_them(browser, server):  # noqa: F811 (fixtures)
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    cora = sign_in(browser, server, "cora")
    cora.goto(f"/studies/DEMO-001/participants/{SUBJECT}")
    upcoming = cora.locator("tr[id^='visit-']").filter(has_text="upcoming").first
    visit = (upcoming.get_attribute("id") or "").removeprefix("visit-")
    assert visit, "the demo participant has an upcoming visit"
    expect(upcoming).not_to_contain_text("extended")

    cora.goto(f"/studies/DEMO-001/extensions?participant={SUBJECT}&visit={visit}")
    expect(cora.locator("#extension-participant")).to_have_value(SUBJECT)
    cora.locator("#extension-later_days").fill("2")
    cora.get_by_role("button", name="Request extension").click()
    expect(cora.locator("#extension-reason-note")).to_contain_text("reason")  # required, said at the field
    cora.locator("#extension-reason").fill("Participant travels that week")
    cora.get_by_role("button", name="Request extension").click()
    expect(cora.get_by_role("status")).to_have_text("Extension requested.")
    expect(cora.locator("#request-state")).to_have_text("requested")
    expect(cora.locator("#approve-form")).to_have_count(0)  # a coordinator asks; an investigator decides

    ivan = sign_in(browser, server, "ivan")
    ivan.goto("/studies/DEMO-001/extensions")
    ivan.get_by_role("row").filter(has_text=SUBJECT).filter(has_text=visit).get_by_role("link").first.click()
    expect(ivan.locator("#proposed")).to_be_visible()
    ivan.get_by_role("button", name="Approve extension").click()
    expect(ivan.get_by_role("status")).to_have_text("Extension approved.")
    expect(ivan.locator("#decision")).to_contain_text("approved by ivan")

    ivan.goto(f"/studies/DEMO-001/participants/{SUBJECT}")
    row = ivan.locator(f"#visit-{visit}")
    expect(row).to_contain_text("extended")
    expect(row).to_contain_text("protocol window")
    ivan.screenshot(path=str(ARTIFACTS / "window-extension.png"), full_page=True)
