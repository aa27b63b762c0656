"""Real Chromium: each persona signs in, lands on the home page of their tasks, sees its sections, follows one row
to the page where the work is done and comes back home through the navigation's "My tasks" link; at desktop
width and on a phone (390 x 844). The server and browser fixtures are test_browser.py's (a served demo study on
a temporary SQLite database); screenshots of each home page go to test-artifacts/."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_browser import ARTIFACTS, PASSWORD, browser, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
SCREENS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
# persona -> (section headings they land on, the row link they follow, the heading of the page it opens)
PERSONAS = {
    "cora": (
        [
            "Visits booked today",
            "Windows closing within 7 days, nothing booked",
            "Overdue visits",
            "Deviations awaiting the site's response",
            "Re-consent due",
            "Binder documents expiring or missing",
        ],
        ("#overdue", "101-002 V4"),
        "Participant 101-002",
    ),
    "ivan": (
        ["Deviations awaiting the site's response", "Signatures asked of you", "Window-extension requests"],
        ("#awaiting-site", "101-002"),
        re.compile(r"Deviation \d+"),
    ),
    "mona": (
        ["Deviations awaiting your review", "Changed since your", "Documents new or changed since then"],
        ("#awaiting-review", "101-002"),
        re.compile(r"Deviation \d+"),
    ),
    "sam": (
        ["Sponsor packages", "Study metrics as of"],
        ("#metrics", "Site 101"),
        re.compile("Reports of DEMO-001"),
    ),
    "admin": (
        ["Locked accounts", "Failed sign-ins", "Disabled accounts", "Jobs", "Sponsor package builds"],
        ("#jobs", "DEMO-001"),
        "Deviations of DEMO-001",
    ),
}


def _signed_in(browser, server: str, user_id: str, screen: str):  # noqa: F811 (fixtures)
    """A fresh context at the screen's size, signed in through the form: the sign-in lands on the home page."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport=SCREENS[screen], base_url=server)
    page = context.new_page()
    page.goto("/")
    page.get_by_label("User ID").fill(user_id)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My tasks", level=1)).to_be_visible()
    assert page.url == f"{server}/"
    return page


def _back_home(page, server: str) -> None:  # noqa: F811 (the fixture's value)
    from playwright.sync_api import expect

    page.get_by_role("navigation", name="Account").get_by_role("link", name=re.compile(r"^My tasks \(\d+\)$")).click()
    expect(page.get_by_role("heading", name="My tasks", level=1)).to_be_visible()
    assert page.url == f"{server}/"


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize("user_id", PERSONAS)
def test_a_persona_lands_on_its_tasks_and_gets_to_the_work(browser, server, user_id, screen):  # noqa: F811
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    headings, (list_id, row), opened = PERSONAS[user_id]
    page = _signed_in(browser, server, user_id, screen)
    for heading in headings:
        expect(page.get_by_role("heading", name=re.compile(re.escape(heading)), level=2)).to_be_visible()
    expect(page.get_by_role("heading", name="Studies", level=2)).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / f"home-{user_id}-{screen}.png"), full_page=True)
    page.locator(list_id).get_by_role("link", name=re.compile(re.escape(row))).first.click()
    expect(page.get_by_role("heading", name=opened, level=1)).to_be_visible()
    _back_home(page, server)
    page.context.close()


@pytest.mark.parametrize("screen", SCREENS)
def test_a_monitor_whose_grant_ended_is_told_when_and_whom_to_ask(browser, server, screen):  # noqa: F811
    from playwright.sync_api import expect

    page = _signed_in(browser, server, "max", screen)
    notice = page.get_by_role("alert")
    expect(notice).to_contain_text(re.compile(r"Your monitor grant at DEMO-001 ended on \d{4}-\d{2}-\d{2}\."))
    expect(notice).to_contain_text("Ask an administrator")
    expect(page.locator("main")).not_to_contain_text("protocol load")
    expect(page.get_by_role("link", name="DEMO-001")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / f"home-max-{screen}.png"), full_page=True)
    _back_home(page, server)
    page.context.close()


def test_windows_closing_within_other_days_and_a_wrong_number_named(browser, server):  # noqa: F811
    from playwright.sync_api import expect

    page = _signed_in(browser, server, "cora", "desktop")
    page.get_by_label("Closing within (days)").fill("30")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", name=re.compile("Windows closing within 30 days"))).to_be_visible()
    page.get_by_label("Closing within (days)").fill("400")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#within-note")).to_have_text("Enter a whole number of days from 1 to 90, such as 7.")
    expect(page.get_by_label("Closing within (days)")).to_have_value("400")
    page.context.close()
