"""Real Chromium: a coordinator's day (enrol, randomise, read the schedule, record a late visit), and what
each persona sees after signing in through the form.

The app runs under uvicorn in a child process on a free loopback port, on a temporary SQLite database
holding the demo study. Screenshots go to test-artifacts/ (and docs/screenshot.png when
TRIALCOORD_UPDATE_SCREENSHOT=1).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import account_rules

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TODAY = datetime.now(UTC).date()  # the server runs in UTC (TRIALCOORD_TIME_ZONE below)

pytestmark = pytest.mark.browser


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if os.environ.get("TRIALCOORD_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


PASSWORD = "browser test passphrase"  # throwaway accounts of a temporary database


async def _load_demo(url: str) -> None:
    from trialcoord.accounts import users
    from trialcoord.demo.demo import add_demo_users, load_demo
    from trialcoord.kernel.database.engine import bind_engine, build_engine
    from trialcoord.kernel.database.migrations import migrate

    engine = bind_engine(build_engine(url))
    await migrate(engine)
    await load_demo(TODAY)
    await add_demo_users(TODAY, PASSWORD, "system", account_rules())
    for user_id, role in (("admin", "administrator"), ("olive", None)):
        await users.create_user(
            user_id, user_id.title(), f"{user_id}@example.org", PASSWORD, "system", rules=account_rules()
        )
        if role:
            await users.grant(user_id, role, None, None, TODAY, None, "system")


def _wait_until_up(base_url: str, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server stopped with status {server.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"the server did not answer at {base_url} within {timeout} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_chromium()
    url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'e2e.sqlite3'}"
    from trialcoord.kernel.pii import KEYS_VARIABLE, KeyRing

    ring = KeyRing.generate("e2e").to_json()  # the demo's personal data is encrypted with the server's key
    before = os.environ.get(KEYS_VARIABLE)
    os.environ[KEYS_VARIABLE] = ring
    try:
        asyncio.run(_load_demo(url))
    finally:
        if before is None:
            os.environ.pop(KEYS_VARIABLE, None)
        else:
            os.environ[KEYS_VARIABLE] = before
    port = _free_port()
    env = {
        **os.environ,
        "TRIALCOORD_DATABASE_URL": url,
        "TRIALCOORD_TIME_ZONE": "UTC",
        "TRIALCOORD_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "TRIALCOORD_SIGNATURES_DIR": str(tmp_path_factory.mktemp("signatures")),
        KEYS_VARIABLE: ring,
    }
    # The system's keys (audit/manifest key, PAdES certificate), as `trialcoord setup` makes them.
    made = subprocess.run(
        [sys.executable, "-m", "trialcoord.cli.main", "setup", "--no-demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "trialcoord.web.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base_url, process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def sign_in(browser, server: str, user_id: str, password: str = PASSWORD):
    """A fresh browser context (its own cookies), signed in through the form."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
    page = context.new_page()
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("User ID").fill(user_id)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    """The study coordinator of site 101."""
    return sign_in(browser, server, "cora")


def test_enrol_randomise_and_record_a_late_visit(page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto("/")
    page.get_by_role("link", name="DEMO-001").click()
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()

    page.get_by_label("Subject ID").fill("101-900")
    page.locator("#enrol-site").select_option("101")
    expect(page.locator("#enrol-arm")).to_have_count(0)  # DEMO-001 is double-blind: the coordinator enrols blind
    page.get_by_label("Enrolment date").fill(str(TODAY - timedelta(days=30)))
    page.get_by_role("button", name="Enrol").click()
    expect(page.get_by_role("heading", name="Participant 101-900")).to_be_visible()

    page.locator("#identity-name").fill("Alex Example")  # made up
    page.locator("#identity-date_of_birth").fill("1970-05-17")
    page.get_by_role("button", name="Save personal data").click()
    expect(page.get_by_role("status")).to_have_text("Personal data saved.")
    expect(page.locator("#identity-name")).to_have_value("Alex Example")

    randomised = TODAY - timedelta(days=20)
    page.locator("#event-event").select_option("randomization")
    page.locator("#event-date").fill(str(randomised))
    page.get_by_role("button", name="Record event").click()
    expect(page.get_by_role("status")).to_have_text("Event recorded.")

    week2 = page.locator("#visit-V3")  # target: randomisation + 14 days, window -3/+3 days
    expect(week2).to_contain_text(str(randomised + timedelta(days=14)))
    expect(page.locator("figure.timeline > svg")).to_be_visible()

    week2.get_by_text("Record").first.click()
    week2.locator("#V3-actual-date").fill(str(TODAY - timedelta(days=1)))
    week2.locator("#V3-actual-reason").fill("Participant was travelling")
    week2.get_by_role("button", name="Save visit date").click()
    expect(page.get_by_role("status")).to_have_text("Visit date recorded.")
    expect(page.locator("#visit-V3 .badge")).to_have_text("Late")

    page.screenshot(path=str(ARTIFACTS / "participant.png"), full_page=True)
    if os.environ.get("TRIALCOORD_UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=str(ROOT / "docs" / "screenshot.png"), full_page=True)


def test_field_error_is_shown_next_to_the_field(page):
    from playwright.sync_api import expect

    page.goto("/studies/DEMO-001")
    page.get_by_label("Subject ID").fill("101-901")
    page.get_by_role("button", name="Enrol").click()  # no site chosen
    expect(page.locator("#enrol-site-note")).to_contain_text("site")
    page.screenshot(path=str(ARTIFACTS / "enrol-error.png"), full_page=True)


def test_each_persona_sees_what_their_grant_allows(browser, server):
    from playwright.sync_api import expect

    colin = sign_in(browser, server, "colin")  # coordinator at site 102
    colin.goto("/studies/DEMO-001?tab=participants")
    expect(colin.get_by_role("link", name="102-001")).to_be_visible()
    expect(colin.get_by_role("link", name="101-001")).to_have_count(0)
    assert colin.goto("/studies/DEMO-001/participants/101-001").status == 403
    expect(colin.get_by_role("alert")).to_contain_text("your grants: coordinator of DEMO-001 at site 102")

    from trialcoord.demo.demo import PERSONAL_DATA

    name = PERSONAL_DATA[("DEMO-001", "101-001")].name or ""  # made up, encrypted at rest
    cora = sign_in(browser, server, "cora")  # coordinator at site 101: personal data of its participants
    cora.goto("/studies/DEMO-001/participants/101-001")
    expect(cora.locator("#identity-name")).to_have_value(name)

    mona = sign_in(browser, server, "mona")  # monitor of every site: reads, never records
    mona.goto("/studies/DEMO-001/participants/101-001")
    expect(mona.get_by_role("heading", name="Participant 101-001")).to_be_visible()
    expect(mona.get_by_role("button", name="Record event")).to_have_count(0)
    assert name not in mona.content()  # no personal-data grant
    mona.goto("/studies/DEMO-001")
    mona.get_by_role("link", name="Audit trail").click()
    expect(mona.get_by_role("heading", name="Audit trail of DEMO-001")).to_be_visible()

    sam = sign_in(browser, server, "sam")  # sponsor: coded data only
    sam.goto("/studies/DEMO-001/participants/101-001")
    expect(sam.get_by_role("heading", name="Participant 101-001")).to_be_visible()
    expect(sam.get_by_role("heading", name="Personal data")).to_have_count(0)
    assert name not in sam.content()
    assert sam.goto("/studies/DEMO-001/audit").status == 403

    max_ = sign_in(browser, server, "max")  # monitor whose grant ended
    assert max_.goto("/studies/DEMO-001").status == 403
    expect(max_.get_by_role("alert")).to_contain_text("ended")

    olive = sign_in(browser, server, "olive")  # an account without any grant
    expect(olive.get_by_role("heading", name="Studies")).to_be_visible()
    expect(olive.get_by_role("link", name="DEMO-001")).to_have_count(0)
    olive.get_by_role("button", name="Sign out").click()
    expect(olive.get_by_role("heading", name="Sign in")).to_be_visible()
    assert olive.goto("/").status == 401


def test_a_failed_sign_in_is_shown_to_administrators(browser, server):
    from playwright.sync_api import expect

    wrong = sign_in(browser, server, "ivan", password="not the password")
    expect(wrong.get_by_role("alert")).to_contain_text("not correct")
    admin = sign_in(browser, server, "admin")
    admin.get_by_role("link", name="Users and sign-ins").click()
    expect(admin.get_by_role("row").filter(has_text="ivan").filter(has_text="failed")).to_have_count(1)
    admin.get_by_role("link", name="Audit trail").click()
    expect(admin.get_by_role("heading", name="Audit trail")).to_be_visible()
    expect(admin.locator("table.audit")).to_contain_text("sign_in_failed")
    admin.screenshot(path=str(ARTIFACTS / "audit-trail.png"), full_page=True)


def test_a_coordinator_stores_a_document_version_and_sends_it_for_review(browser, server, tmp_path):
    from playwright.sync_api import expect

    cora = sign_in(browser, server, "cora")
    cora.goto("/studies/DEMO-001")
    cora.get_by_role("link", name="Documents").click()
    expect(cora.get_by_role("heading", name="Documents of DEMO-001")).to_be_visible()
    cv = tmp_path / "pi-cv.pdf"
    cv.write_bytes(b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    cora.get_by_label("Document name").fill("PI CV")
    cora.locator("#add-artifact").select_option("087")
    cora.locator("#add-site").select_option("101")
    cora.get_by_label("Version label").fill("1")
    cora.get_by_label("File (PDF, DOCX, PNG or JPEG)").set_input_files(str(cv))
    cora.get_by_role("button", name="Store version").click()
    expect(cora.get_by_role("status")).to_have_text("Version stored as a draft.")
    row = cora.get_by_role("row").filter(has_text="PI CV")
    expect(row).to_contain_text("draft")
    row.locator("select[name=status]").select_option("in_review")
    row.get_by_role("button", name="Save").click()
    expect(cora.get_by_role("status")).to_have_text("Status changed.")
    expect(cora.get_by_role("row").filter(has_text="PI CV")).to_contain_text("in review")
    cora.screenshot(path=str(ARTIFACTS / "documents.png"), full_page=True)


def _store(page, name: str, artifact: str, label: str, file) -> None:
    from playwright.sync_api import expect

    page.goto("/studies/DEMO-001/documents")
    page.get_by_label("Document name").fill(name)
    page.locator("#add-artifact").select_option(artifact)
    page.locator("#add-site").select_option("101")
    page.get_by_label("Version label").fill(label)
    page.get_by_label("File (PDF, DOCX, PNG or JPEG)").set_input_files(str(file))
    page.get_by_role("button", name="Store version").click()
    expect(page.get_by_role("status")).to_have_text("Version stored as a draft.")


def _step(page, document: str, label: str, status: str, **fields: str) -> None:
    from playwright.sync_api import expect

    page.goto("/studies/DEMO-001/documents")
    row = page.get_by_role("row").filter(has_text=document).filter(has=page.get_by_role("link", name=label, exact=True))
    row.locator("select[name=status]").select_option(status)
    for name, value in fields.items():
        if name == "approval_letter":  # picked from a list, not typed
            row.locator(f"select[name={name}]").select_option(value)
        else:
            row.locator(f"input[name={name}]").fill(value)
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Status changed.")


def _open_version(page, document: str, label: str) -> None:
    page.goto("/studies/DEMO-001/documents")
    row = page.get_by_role("row").filter(has_text=document)
    row.get_by_role("link", name=label, exact=True).click()


def _sign(page, password: str, user_id: str = "") -> None:
    page.get_by_label("Meaning").select_option("approval")
    page.get_by_label("User ID").fill(user_id)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign", exact=True).click()


def test_a_consent_version_is_signed_made_effective_and_sends_a_participant_to_re_consent(browser, server, tmp_path):
    """Consent form 3.0 is signed, approved and made effective, registered as the site's consent version and
    signed by participant 101-001; then 4.0 goes the same way and 101-001 enters the re-consent queue."""
    from playwright.sync_api import expect

    from trialcoord.kernel.render.pdf_documents import render_pdf

    ivan = sign_in(browser, server, "ivan")
    cover = {
        "study_code": "DEMO-001",
        "study_title": "Demo",
        "site_code": "101",
        "site_name": "Riverside",
        "investigator": "Ivan Investigator",
        "sponsor": "Demo",
    }
    files = {}
    for name in ("letter", "3.0", "4.0"):
        files[name] = tmp_path / f"{name}.pdf"
        files[name].write_bytes(
            render_pdf(
                "binder_cover",
                {**cover, "sponsor": name},
                created_at="2026-11-27T09:00:00.000000Z",
                title=name,
                version_label="1",
            )
        )
    _store(ivan, "IRB approval of ICF 3.0 and 4.0", "066", "1", files["letter"])
    letter_link = ivan.get_by_role("link", name="IRB approval of ICF 3.0 and 4.0")  # rows offering it name it too
    letter_sha = ivan.get_by_role("row").filter(has=letter_link).locator("code").get_attribute("title")
    approval = {
        "approval_reference": "IRB-2026-42",
        "approval_date": TODAY.isoformat(),
        "approval_letter": letter_sha,  # picked from the study's stored approval letters
    }
    for label in ("3.0", "4.0"):
        _store(ivan, "ICF English", "040", label, files[label])
        _step(ivan, "ICF English", label, "in_review")
        _open_version(ivan, "ICF English", label)
        expect(ivan.get_by_role("heading", name="Signatures")).to_be_visible()
        if label == "3.0":  # the first signing since signing in needs the user ID too; a wrong password signs nothing
            _sign(ivan, "not my password", "ivan")
            expect(ivan.locator("body")).to_contain_text("the password is not correct")
            ivan.wait_for_timeout(1100)  # a wrong password delays the next attempt by a second
            _sign(ivan, PASSWORD, "ivan")
        else:
            _sign(ivan, PASSWORD, "ivan")
        expect(ivan.get_by_role("status")).to_have_text("Signed.")
        expect(ivan.locator("#signatures")).to_contain_text("Ivan Investigator")
        expect(ivan.locator("#signatures")).to_contain_text("(America/New_York)")  # the site's zone, named
        expect(ivan.locator("#signatures td.verdict")).to_have_text(["valid"])  # exactly: not "invalid"
        _step(ivan, "ICF English", label, "approved", **approval)
        _step(ivan, "ICF English", label, "effective")
        _open_version(ivan, "ICF English", label)
        expect(ivan.locator("#version-status")).to_contain_text("effective")
        expect(ivan.locator("#history")).to_contain_text("approved on")
        ivan.get_by_role("button", name="Register consent version").click()
        expect(ivan.get_by_role("status")).to_have_text("Registered as the site's consent version.")
        if label == "3.0":
            ivan.screenshot(path=str(ARTIFACTS / "signed-version.png"), full_page=True)
            cora = sign_in(browser, server, "cora")
            cora.goto("/studies/DEMO-001/participants/101-001")
            cora.locator("#consent-version").select_option("en:3.0")
            cora.get_by_label("the participant", exact=True).check()
            cora.get_by_label("the person obtaining consent").check()
            cora.get_by_role("button", name="Record consent").click()
            expect(cora.get_by_role("status")).to_have_text("Consent recorded.")
            cora.goto("/studies/DEMO-001")
            expect(cora.locator("#consent-heading").locator("..")).to_contain_text("No participant needs to re-consent")
    cora.goto("/studies/DEMO-001")
    queue = cora.locator("#reconsent-queue").get_by_role("row").filter(has_text="101-001")
    expect(queue).to_contain_text("3.0")
    expect(queue).to_contain_text("4.0")
    expect(queue).to_contain_text(TODAY.isoformat())
    ivan.goto("/studies/DEMO-001/binder")
    expect(ivan.locator("#checklist")).to_contain_text("IRB/IEC approval decision")
    expect(ivan.locator("#checklist-summary")).to_contain_text("missing")


CSP_WATCH = """window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(
  `${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`));"""
MAIN_PAGES = [
    "/",
    "/studies/DEMO-001",
    "/studies/DEMO-001?tab=participants",
    "/studies/DEMO-001/participants/101-001",  # the SVG timeline and its legend
    "/studies/DEMO-001/deviations",
    "/studies/DEMO-001/deviations/trends",  # the SVG charts
    "/studies/DEMO-001/reports",
    "/studies/DEMO-001/documents",
    "/studies/DEMO-001/binder",
    "/studies/DEMO-001/audit",
    "/admin",
    "/calendar-feeds",
    "/jobs",
]


def test_the_main_pages_break_no_content_security_policy(browser, server, tmp_path):
    """The policy (docs/security.md) forbids inline script and style: nothing a page does is refused, and a PDF
    version's preview frame (framed by the app itself) loads."""
    admin = sign_in(browser, server, "admin")
    admin.add_init_script(CSP_WATCH)  # the browser's own injection: not subject to the page's policy
    refused: list[str] = []
    admin.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    pdf = tmp_path / "policy.pdf"
    pdf.write_bytes(b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    _store(admin, "Policy check", "087", "1", pdf)  # a form post, and a PDF whose version page frames it
    pages = [*MAIN_PAGES, "/studies/DEMO-001/documents/version?name=Policy%20check&label=1&site=101"]
    for path in pages:
        answer = admin.goto(path)
        assert answer is not None and answer.status == 200, path
        admin.wait_for_load_state("load")
        if "/version?" in path:
            refused += _preview_refusal(admin)
        refused += [f"{path}: {v}" for v in admin.evaluate("window.__violations")]
    assert refused == []
    admin.context.close()


def _preview_refusal(page) -> list[str]:
    """The version page's preview (loading="lazy": it loads once near the viewport) loads in its frame."""
    page.locator("#preview").scroll_into_view_if_needed()
    for _ in range(100):  # until the frame has navigated (not a time limit on the app: the loop ends either way)
        frame = page.frame(name="preview")
        if frame is not None and frame.url not in ("", "about:blank"):
            break
        page.wait_for_timeout(100)
    url = frame.url if frame is not None else "no frame"
    return [] if "/documents/content" in url else [f"the preview frame did not load: {url}"]
