"""Real Chromium: an amendment's impact before it takes effect, then applied to one site. The monitor (mona) opens
the study's Amendments page, previews a protocol file not loaded yet (DEMO-001 2.1) and downloads the one-page
PDF; once the administrator has loaded it, the coordinator of site 102 (colin) applies it to his site and the
participant page shows the new version.
The server and browser fixtures are test_browser.py's (a served demo study on a temporary SQLite database)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_browser import ARTIFACTS, PASSWORD, ROOT, TODAY, browser, server, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def amendment_2_1(directory: Path) -> Path:
    """Amendment 2 (version 2.1, in force from today): Week 12's window widened to 10 days."""
    text = (ROOT / "protocols" / "DEMO-001" / "2.0.yaml").read_text(encoding="utf-8")
    text = text.replace('version: "2.0"', 'version: "2.1"').replace("effective: 2025-09-15", f"effective: {TODAY}")
    week12 = "    offset: 8w\n    window: {early: 7d, late: 7d}"
    assert week12 in text
    path = directory / "DEMO-001-2.1.yaml"
    path.write_text(text.replace(week12, "    offset: 8w\n    window: {early: 10d, late: 10d}"), encoding="utf-8")
    return path


def load_version(base_url: str, path: Path) -> None:
    """The administrator loads the approved amendment over the API (as `trialcoord protocol load` would)."""
    with httpx.Client(base_url=base_url) as client:
        token = client.post("/api/sign-in", json={"user_id": "admin", "password": PASSWORD}).json()["token"]
        loaded = client.post(
            "/api/studies/DEMO-001/protocol-versions",
            content=path.read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
        )
        assert loaded.status_code == 201, loaded.text


def test_preview_an_amendment_then_apply_it_to_one_site(browser, server, tmp_path):  # noqa: F811 (fixtures)
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    amendment = amendment_2_1(tmp_path)
    mona = sign_in(browser, server, "mona")
    mona.goto("/studies/DEMO-001")
    mona.get_by_role("link", name="Amendments").click()
    expect(mona.get_by_role("heading", name="Protocol amendments")).to_be_visible()
    expect(mona.get_by_role("heading", name="Apply a version")).to_have_count(0)  # a monitor only looks
    mona.get_by_label("or a protocol file not loaded yet (YAML)").set_input_files(amendment)
    mona.get_by_role("button", name="Show the impact").click()
    result = mona.locator("#impact")
    expect(result.locator("#result-heading")).to_have_text(f"Protocol version 2.1 from {TODAY}")
    expect(result).to_contain_text(re.compile(r"[1-9]\d* of 4 active participants affected"))
    moving = mona.locator("#impact-rows tbody tr").filter(has_text="visit moves").filter(has_text="V6")
    expect(moving.filter(has_text="102-001")).to_have_count(1)
    expect(result.locator("li").filter(has_text="102-002")).to_contain_text("has ended the schedule")
    expect(result).to_contain_text("Week 12 (end of treatment)")  # what 2.1 changes against 2.0
    mona.screenshot(path=str(ARTIFACTS / "amendment-impact.png"), full_page=True)
    mona.get_by_label("or a protocol file not loaded yet (YAML)").set_input_files(amendment)
    with mona.expect_download() as download:
        mona.get_by_role("button", name="Download the one-page summary (PDF)").click()
    assert download.value.suggested_filename == "DEMO-001-2.1-impact.pdf"
    assert Path(download.value.path()).read_bytes()[:5] == b"%PDF-"

    load_version(server, amendment)
    colin = sign_in(browser, server, "colin")
    colin.goto("/studies/DEMO-001/amendments")
    colin.locator("#apply_version").select_option("2.1")
    expect(colin.locator("#apply_site option")).to_have_text(["—", re.compile("^102")])  # his own site only
    colin.locator("#apply_site").select_option("102")
    colin.locator("#apply_effective").fill(str(TODAY))
    colin.get_by_label("Reason").fill("Amendment 2 approved by the IRB")
    colin.get_by_role("button", name="Apply").click()
    expect(colin.get_by_role("status")).to_have_text("1 participant moved, 1 left as they are.")
    colin.goto("/studies/DEMO-001/participants/102-001")
    expect(colin.locator("main")).to_contain_text("DEMO-001 (protocol version 2.1)")
