"""The administrators' list of accounts: keyset pages in any sort order without repeats or gaps, and filters by
text (user ID, name or e-mail), role and status that ride along on every link."""

from __future__ import annotations

import html
import re

import pytest

from tests.conftest import PERSONAS, add_user, signed_in
from trialcoord.accounts import users

pytestmark = pytest.mark.anyio


@pytest.fixture
async def admin(anonymous, personas, installation):
    await add_user("zed_100", ("coordinator", "TST-1", "101"), printed_name="Zed Hundred")
    await add_user("amy", printed_name="Amy Percent")  # '%' and '_' are LIKE's wildcards: searched for as typed
    await users.disable_user("outsider", "admin", "left the site", installation=installation)
    return await signed_in(anonymous, "admin")


def shown(page_html: str) -> list[str]:
    table = page_html.split('<table id="users">', 1)[1].split("</table>", 1)[0] if 'id="users"' in page_html else ""
    return [html.unescape(found) for found in re.findall(r"<tr>\s*<td>([^<]+)</td>", table)]


def next_link(page_html: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', page_html)
    return html.unescape(found.group(1)) if found else None


async def every_page(client, url: str) -> tuple[list[str], int]:
    seen, pages = [], 0
    while url:
        page = await client.get(url)
        assert page.status_code == 200, page.text
        seen += shown(page.text)
        pages += 1
        url = next_link(page.text)
    return seen, pages


async def test_accounts_come_a_page_at_a_time_in_each_order_without_repeats_or_gaps(admin):
    everyone = sorted([*PERSONAS, "zed_100", "amy"])
    assert await every_page(admin, "/admin?size=3") == (everyone, 4)
    backwards, _ = await every_page(admin, "/admin?size=4&sort=user_id&order=desc")
    assert backwards == everyone[::-1]
    by_name, _ = await every_page(admin, "/admin?size=2&sort=name")
    names = {u.user_id: u.printed_name for u in await users.list_users()}
    assert by_name == sorted(everyone, key=lambda user_id: (names[user_id], user_id))
    by_creation, _ = await every_page(admin, "/admin?size=5&sort=created&order=desc")
    assert sorted(by_creation) == everyone and by_creation[:2] == ["amy", "zed_100"]  # the last ones made


async def test_filters_by_text_role_and_status_ride_along_on_the_links(admin):
    found, pages = await every_page(admin, "/admin?text=MONITOR&size=1")
    assert found == ["monitor", "monitor-expired"] and pages == 2  # any case, across pages
    first = await admin.get("/admin?text=MONITOR&size=1")
    assert "text=MONITOR" in next_link(first.text) and 'value="MONITOR"' in first.text
    assert shown((await admin.get("/admin?text=percent")).text) == ["amy"]  # the name
    assert shown((await admin.get("/admin?text=_")).text) == ["zed_100"]  # an underscore, not any one character
    assert shown((await admin.get("/admin?text=%25")).text) == []  # a percent sign: nobody's
    assert "No account matches" in (await admin.get("/admin?text=%25")).text
    assert shown((await admin.get("/admin?role=coordinator")).text) == ["coord-a", "coord-b", "zed_100"]
    assert shown((await admin.get("/admin?status=disabled")).text) == ["outsider"]
    both = await admin.get("/admin?role=coordinator&status=active&text=zed")
    assert shown(both.text) == ["zed_100"] and '<option value="coordinator" selected>' in both.text


async def test_a_filter_or_cursor_that_is_not_offered_is_named(admin):
    bad = await admin.get("/admin?role=king&status=gone")
    assert bad.status_code == 400 and "There is a problem" in bad.text
    assert 'href="#users-role"' in bad.text and 'href="#users-status"' in bad.text
    assert "a role is one of administrator" in bad.text
    assert (await admin.get("/admin?after=nonsense")).status_code == 400
    assert (await admin.get("/admin?sort=password_hash")).status_code == 400
