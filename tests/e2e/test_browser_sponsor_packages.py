"""Real Chromium: the sponsor (sam) signs in through the form, makes a sponsor package of the double-blind demo
study from its page, watches it build (the page reloads itself while a row shows a progress bar), downloads it and
checks it offline: the verifier passes and its SHA-256 is the one the page shows. The server and browser fixtures
are test_browser.py's (a served demo study on a temporary SQLite database); a screenshot goes to test-artifacts/."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.e2e.test_browser import ARTIFACTS, TODAY, browser, server, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
BUILD_TIMEOUT_MS = 45_000  # the demo builds in a few seconds; the page reloads every 3


def test_a_sponsor_makes_watches_and_downloads_a_package(browser, server, tmp_path):  # noqa: F811 (fixtures)
    from playwright.sync_api import expect

    from trialcoord.demo.demo import DEMO_PERSONAL_VALUES
    from trialcoord.exports.verification import verify_package

    ARTIFACTS.mkdir(exist_ok=True)
    sam = sign_in(browser, server, "sam")
    sam.get_by_role("link", name="DEMO-001").click()
    sam.get_by_role("link", name="Sponsor packages").click()
    expect(sam.get_by_role("heading", name="Sponsor packages of DEMO-001")).to_be_visible()
    expect(sam.locator("#packages")).to_have_count(0)  # nothing made yet
    expect(sam.locator(".lede")).to_contain_text("this study is blinded")
    expect(sam.get_by_text("Unblinded")).to_have_count(0)  # a sponsor of a double-blind study may not unblind
    expect(sam.locator("input[name=unblinded]")).to_have_count(0)
    expect(sam.get_by_label("As of")).to_have_value(TODAY.isoformat())

    loads: list[str] = []
    sam.on("load", lambda loaded: loads.append(loaded.url))
    sam.get_by_role("button", name="Make the package").click()
    row = sam.locator("#packages tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").first).to_have_text("1")  # the study's first transfer
    expect(row).to_contain_text("coded")
    expect(row).not_to_contain_text("unblinded")
    # Right after the press the build has only started (rendering the report alone takes seconds): a progress bar,
    # and the page reloads itself every 3 s; the Download link can only appear through such a reload.
    progress = row.get_by_role("progressbar", name="Progress of transfer 1")
    expect(progress).to_be_visible()
    assert 0 <= int(progress.get_attribute("value") or "-1") <= 100
    expect(sam.locator("meta[http-equiv=refresh]")).to_have_attribute("content", "3")
    download = row.get_by_role("link", name="Download")
    expect(download).to_be_visible(timeout=BUILD_TIMEOUT_MS)  # across the page's reloads
    expect(row.locator("td").nth(4)).to_have_text("done")
    expect(sam.locator("progress")).to_have_count(0)
    expect(sam.locator("meta[http-equiv=refresh]")).to_have_count(0)  # done: no more reloading
    expect(row).to_contain_text("sam")
    assert len(loads) >= 2, loads  # the page after the press, then at least one reload of its own
    assert set(loads) == {f"{server}/studies/DEMO-001/sponsor-packages"}

    shown_sha = row.locator("code.hash").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", shown_sha)
    content = sam.content()
    leaked = [value for value in DEMO_PERSONAL_VALUES if value in content]
    assert not leaked, f"personal values on the sponsor packages page: {leaked}"
    sam.screenshot(path=str(ARTIFACTS / "sponsor-packages.png"), full_page=True)
    box = download.bounding_box()  # in sight without scrolling the table sideways (the hash wraps)
    assert box is not None and box["x"] + box["width"] <= (sam.viewport_size or {"width": 0})["width"], box

    with sam.expect_download() as downloading:  # a real download through Chromium, as the sponsor's click makes it
        download.click()
    assert downloading.value.suggested_filename == "DEMO-001-sponsor-transfer-001.zip"
    package = tmp_path / downloading.value.suggested_filename
    downloading.value.save_as(package)
    assert hashlib.sha256(package.read_bytes()).hexdigest() == shown_sha
    check = verify_package(package)
    assert check.ok, check.problems
    assert check.datasets_checked > 0
