"""Real Chromium: the page shell on a working day. A failed form names its problems at the top and takes the
focus there; buttons say they are busy and post once; every page fits a phone's 390 px; long renders have a page
of their own; typed text outlives the inactivity sign-out.

The servers are those of tests/e2e/test_browser.py (the demo study on a temporary SQLite database); the
inactivity test runs its own with a one-minute limit.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_browser import browser, server, sign_in  # noqa: F401 - fixtures used by name

pytestmark = pytest.mark.browser


def test_a_failed_enrolment_names_its_problems_at_the_top_and_takes_the_focus_there(browser, server):  # noqa: F811
    from playwright.sync_api import expect

    page = sign_in(browser, server, "cora")
    page.goto("/studies/DEMO-001")
    page.get_by_label("Subject ID").fill("")
    page.get_by_role("button", name="Enrol").click()  # neither a subject ID nor a site

    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_have_attribute("role", "alert")
    expect(summary.get_by_role("heading", name="There is a problem")).to_be_visible()
    assert page.title().startswith("Error: ")
    links = summary.get_by_role("link")
    hrefs = [links.nth(n).get_attribute("href") for n in range(links.count())]
    assert hrefs == ["#enrol-subject_id", "#enrol-site"]
    assert page.evaluate("document.querySelector('main').firstElementChild.classList.contains('error-summary')")

    links.nth(1).click()
    expect(page.locator("#enrol-site")).to_be_focused()
    links.nth(0).click()
    expect(page.locator("#enrol-subject_id")).to_be_focused()
    page.context.close()


def test_a_form_level_problem_is_in_the_summary_and_links_to_its_message(browser, server):  # noqa: F811
    from playwright.sync_api import expect

    page = sign_in(browser, server, "cora", password="not the password")
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("not correct")
    assert summary.get_by_role("link").get_attribute("href") == "#form-error"
    expect(page.locator("#form-error")).to_contain_text("not correct")
    assert page.title() == "Error: Sign in · trialcoord"
    page.context.close()


# --- typed text outlives the inactivity sign-out ---------------------------------------------------------------

SUBJECT_PAGE = "/studies/DEMO-001/participants/101-001"


@pytest.fixture(scope="module")
def short_server(tmp_path_factory):
    """The demo on a server whose sessions end after one minute without activity (the shortest setting)."""
    yield from _serve(tmp_path_factory, {"TRIALCOORD_SESSION_TIMEOUT_MINUTES": "1"})


def _serve(tmp_path_factory, settings: dict[str, str]):
    import asyncio
    import os
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from tests.e2e.test_browser import ROOT, _free_port, _load_demo, _require_chromium, _wait_until_up
    from trialcoord.kernel.pii import KEYS_VARIABLE, KeyRing

    _require_chromium()
    database = tmp_path_factory.mktemp("e2e-shell") / "e2e.sqlite3"
    ring = KeyRing.generate("e2e").to_json()
    os.environ[KEYS_VARIABLE], before = ring, os.environ.get(KEYS_VARIABLE)
    try:
        # In a thread of its own: playwright's browser, started by earlier tests, runs an event loop in this one.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, _load_demo(f"sqlite:///{database}")).result()
    finally:
        os.environ.pop(KEYS_VARIABLE) if before is None else os.environ.update({KEYS_VARIABLE: before})
    env = {
        **os.environ,
        "TRIALCOORD_DATABASE_URL": f"sqlite:///{database}",
        "TRIALCOORD_TIME_ZONE": "UTC",
        "TRIALCOORD_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "TRIALCOORD_SIGNATURES_DIR": str(tmp_path_factory.mktemp("signatures")),
        KEYS_VARIABLE: ring,
        **settings,
    }
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "trialcoord.web.app:create_app", "--port", str(port)]
    process = subprocess.Popen([*command, "--host", "127.0.0.1", "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}", database
    finally:
        process.terminate()
        process.wait(timeout=10)


def _clocked_page(chromium, base_url: str, user_id: str = "cora"):
    """Signed in, with the page's clock in the test's hands (paused: timers fire only when the test says)."""
    from datetime import UTC, datetime, timedelta

    from tests.e2e.test_browser import PASSWORD

    context = chromium.new_context(viewport={"width": 1280, "height": 900}, base_url=base_url)
    start = datetime.now(UTC)
    context.clock.install(time=start)
    page = context.new_page()
    page.clock.pause_at(start + timedelta(seconds=1))
    page.goto("/sign-in")
    page.get_by_label("User ID").fill(user_id)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base_url + "/")
    return page


def _sign_in_again(page, user_id: str = "cora") -> None:
    from tests.e2e.test_browser import PASSWORD

    page.get_by_label("User ID").fill(user_id)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _lapse_on_the_server(database, user_id: str) -> None:
    """What a minute and more without activity leaves behind: the session's last activity long ago."""
    with sqlite(database) as db:
        db.execute(
            "UPDATE sessions SET last_seen_at = '2000-01-01T00:00:00.000000Z' WHERE user_id = ? AND ended_at IS NULL",
            (user_id,),
        )
        db.commit()


def test_a_post_after_the_server_ended_the_session_keeps_what_was_typed(browser, short_server):  # noqa: F811
    """Found: the form was posted to an ended session, the sign-in page came, and the text was gone."""
    from playwright.sync_api import expect

    base_url, database = short_server
    page = _clocked_page(browser, base_url)
    page.goto(SUBJECT_PAGE)
    page.locator("#event-event").select_option(index=1)
    page.locator("#event-reason").fill("Typed before the session ended")
    chosen = page.locator("#event-event").input_value()
    _lapse_on_the_server(database, "cora")
    page.get_by_role("button", name="Record event").click()

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("main")).to_contain_text("signed out after a period of inactivity")
    assert (
        "Typed before" not in page.locator("form[action='/sign-in']").inner_html()
    )  # the draft is in the tab, not the page
    _sign_in_again(page)
    page.wait_for_url(base_url + SUBJECT_PAGE)
    expect(page.locator("#event-reason")).to_have_value("Typed before the session ended")
    expect(page.locator("#event-event")).to_have_value(chosen)
    expect(page.locator("#restored")).to_contain_text("What you typed")
    assert page.evaluate("Object.keys(sessionStorage).filter(k => k.startsWith('trialcoord:'))") == []
    page.reload()  # put back once: a later visit shows the page as the server has it
    expect(page.locator("#event-reason")).to_have_value("")
    page.context.close()


def test_someone_else_signing_in_on_that_tab_never_sees_what_was_typed(browser, short_server):  # noqa: F811
    from playwright.sync_api import expect

    base_url, database = short_server
    page = _clocked_page(browser, base_url)
    page.goto(SUBJECT_PAGE)
    page.locator("#event-reason").fill("Cora's words")
    _lapse_on_the_server(database, "cora")
    page.get_by_role("button", name="Record event").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    _sign_in_again(page, "admin")  # a shared computer: the next person signs in
    page.wait_for_url(base_url + SUBJECT_PAGE)
    expect(page.locator("#event-reason")).to_have_value("")
    expect(page.locator("#restored")).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('trialcoord:drafts')") is None
    page.context.close()


def test_the_page_warns_before_the_inactivity_sign_out_and_stay_signed_in_extends_it(browser, short_server):  # noqa: F811
    from playwright.sync_api import expect

    base_url, database = short_server
    page = _clocked_page(browser, base_url)
    page.goto(SUBJECT_PAGE)
    body = page.locator("body")
    expect(body).to_have_attribute("data-session-ends-in", "30")  # one minute, less the 30 s activity is late
    expect(body).to_have_attribute("data-session-warn", "15")
    dialog = page.get_by_role("dialog", name="Are you still there?")
    expect(dialog).to_be_hidden()
    page.clock.run_for(14_000)
    expect(dialog).to_be_hidden()
    page.clock.run_for(2_000)
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("14 seconds")
    with page.expect_response("**/session/extend") as answer:
        dialog.get_by_role("button", name="Stay signed in").click()
    assert answer.value.status == 200 and answer.value.json() == {"ends_in": 60, "warn": 15}
    expect(dialog).to_be_hidden()
    page.clock.run_for(40_000)  # past the first deadline: the session was extended, nothing happens
    expect(dialog).to_be_hidden()
    assert page.url == base_url + SUBJECT_PAGE
    page.clock.run_for(10_000)
    expect(dialog).to_be_visible()
    page.context.close()


def test_unanswered_the_page_signs_out_and_brings_the_typing_back_after_sign_in(browser, short_server):  # noqa: F811
    from playwright.sync_api import expect

    base_url, database = short_server
    page = _clocked_page(browser, base_url)
    page.goto(SUBJECT_PAGE)
    page.locator("#event-reason").fill("Typed, then the phone rang")
    page.clock.run_for(31_000)

    page.wait_for_url("**/sign-in?*")
    assert "next=%2Fstudies%2FDEMO-001%2Fparticipants%2F101-001" in page.url
    expect(page.locator("#why")).to_contain_text("signed out after a period of inactivity")
    with sqlite(database) as db:  # the page signed out: the server ended the session, and says why
        (why,) = db.execute("SELECT ended_why FROM sessions WHERE user_id = 'cora' ORDER BY id DESC LIMIT 1").fetchone()
    assert why == "inactivity"
    _sign_in_again(page)
    page.wait_for_url(base_url + SUBJECT_PAGE)
    expect(page.locator("#event-reason")).to_have_value("Typed, then the phone rang")
    page.context.close()


def test_passwords_and_signature_forms_are_never_kept(browser, short_server):  # noqa: F811
    base_url, _ = short_server
    page = _clocked_page(browser, base_url)
    page.goto(SUBJECT_PAGE)
    page.locator("#event-reason").fill("kept")
    page.evaluate(
        """() => {
        const form = document.createElement("form");
        form.method = "post";
        form.action = "/sign-here";
        form.innerHTML = '<input name="user_id"><input name="password" type="password"><input name="meaning">';
        document.getElementById("main").appendChild(form);
        form.user_id.value = "cora"; form.password.value = "secret words"; form.meaning.value = "approval";
        window.trialcoord.keepDrafts();
    }"""
    )
    kept = page.evaluate("sessionStorage.getItem('trialcoord:drafts')")
    assert "kept" in kept and "secret words" not in kept and "approval" not in kept and "/sign-here" not in kept
    page.context.close()


def sqlite(database):
    import sqlite3
    from contextlib import closing

    return closing(sqlite3.connect(database))


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example", "http:/x"]
)
def test_after_sign_in_only_a_path_of_this_site_is_followed(browser, server, target):  # noqa: F811
    from urllib.parse import quote

    from tests.e2e.test_browser import PASSWORD

    context = browser.new_context(base_url=server)
    page = context.new_page()
    page.goto(f"/sign-in?next={quote(target, safe='')}")
    page.get_by_label("User ID").fill("cora")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.url == server + "/"
    context.close()


# --- busy buttons -----------------------------------------------------------------------------------------------


def _held(page, pattern: str) -> list:
    """POSTs to `pattern` are held (not sent on) until the test lets them go: a slow server. Meanwhile playwright
    waits for the navigation before it looks at the page, so the page reports its own state (`_watch_submits`)."""
    held: list = []
    page.route(pattern, lambda route: held.append(route) if route.request.method == "POST" else route.continue_())
    return held


def _watch_submits(page) -> list[dict]:
    """What each submit did to its form and button, read by the page just after forms.js has run."""
    seen: list[dict] = []
    page.expose_function("reportSubmit", lambda state: seen.append(state))
    page.evaluate(
        """() => document.addEventListener("submit", (event) => {
        const form = event.target, button = event.submitter;
        setTimeout(() => window.reportSubmit({
            posted: !event.defaultPrevented, text: button.textContent.trim(), disabled: button.disabled,
            busy: form.getAttribute("aria-busy")}), 20);
    })"""
    )
    return seen


def test_a_form_on_its_way_is_busy_and_a_double_click_posts_once(browser, server):  # noqa: F811
    from playwright.sync_api import expect

    page = sign_in(browser, server, "cora")
    page.goto("/studies/DEMO-001")
    page.get_by_label("Subject ID").fill("101-960")
    page.locator("#enrol-site").select_option("101")
    held, seen = _held(page, "**/studies/DEMO-001/participants"), _watch_submits(page)
    page.get_by_role("button", name="Enrol").dblclick(no_wait_after=True)
    page.wait_for_timeout(500)

    assert len(held) == 1  # one post, however many clicks
    assert seen[0] == {"posted": True, "text": "Working…", "disabled": True, "busy": "true"}
    assert all(not later["posted"] for later in seen[1:])
    held[0].continue_()
    expect(page.get_by_role("heading", name="Participant 101-960")).to_be_visible()
    page.go_back()  # the page the browser kept is usable again
    expect(page.get_by_role("button", name="Enrol")).to_be_enabled()
    page.context.close()


def test_a_signature_on_its_way_says_signing(browser, server, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    from tests.e2e.test_browser import PASSWORD, _store

    page = sign_in(browser, server, "cora")
    cv = tmp_path / "cv.pdf"
    cv.write_bytes(b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    _store(page, "Busy CV", "087", "1", cv)
    page.goto("/studies/DEMO-001/documents/version?name=Busy%20CV&label=1&site=101")
    sign = page.locator("form[action$='/documents/sign']")
    sign.locator("#meaning").select_option(index=1)
    sign.get_by_label("User ID").fill("cora")
    sign.get_by_label("Password").fill(PASSWORD)
    held, seen = _held(page, "**/documents/sign"), _watch_submits(page)
    sign.get_by_role("button", name="Sign").dblclick(no_wait_after=True)
    page.wait_for_timeout(500)

    assert len(held) == 1
    assert seen[0] == {"posted": True, "text": "Signing…", "disabled": True, "busy": "true"}
    held[0].continue_()
    expect(page.locator("#signatures tbody tr")).to_have_count(1)
    page.context.close()


# --- a phone's width ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/sign-in",
        "/",
        "/studies/DEMO-001",
        "/studies/DEMO-001/participants/101-001",
        "/studies/DEMO-001/deviations",
        "/studies/DEMO-001/documents",
        "/studies/DEMO-001/reports",
        "/jobs",
    ],
)
def test_every_page_fits_a_phone(browser, server, path):  # noqa: F811
    from tests.e2e.test_browser import ARTIFACTS

    page = sign_in(browser, server, "cora")
    page.set_viewport_size({"width": 390, "height": 844})
    if path == "/sign-in":
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("User ID").fill("cora")
        page.get_by_role("button", name="Sign in").click()  # no password: the page with its error summary
    else:
        page.goto(path)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    wide = page.evaluate(
        """() => [...document.querySelectorAll("main *, header *")]
        .filter((e) => e.getBoundingClientRect().right > 391 && !e.closest("table, .scroll, figure"))
        .map((e) => e.tagName + "#" + e.id + "." + e.className).slice(0, 5)"""
    )
    assert wide == [], path
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"phone{path.replace('/', '-') or '-index'}.png"), full_page=True)
    page.context.close()
