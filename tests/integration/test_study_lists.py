"""The study page's lists are keyset pages (50 rows, Next to the rest, no row twice), sorted by their columns and
filtered by site, status and subject ID, each tab in SQL: 120 participants, 360 overdue visits."""

from __future__ import annotations

import html as markup
import re
from datetime import date, timedelta

import pytest

from tests.conftest import RANDOMIZED, add_user, signed_in
from trialcoord.kernel.web.paging import encode_cursor
from trialcoord.scheduling import importing, sites, worklists

pytestmark = [pytest.mark.anyio, pytest.mark.db]

STUDY = "/studies/TST-1"
AS_OF = "2024-06-30"  # SCR, V2 and V3 of everyone have closed, not done: overdue (PK is optional, cycles undosed)
PEOPLE = [f"{site}-{n:03d}" for site in ("101", "102") for n in range(1, 61)]


@pytest.fixture
async def crowded(study):
    await sites.create_site(study, "102", "Lakeside", "America/Chicago")
    lines = [
        f"{subject},randomization,{RANDOMIZED + timedelta(days=n % 20)},{subject[:3]}"
        for n, subject in enumerate(PEOPLE)
    ]
    await importing.import_events(
        study, "participant,event,date,site\n" + "\n".join(lines) + "\n", today=date(2024, 6, 30)
    )
    return study


def table(text: str, table_id: str) -> list[list[str]]:
    """The cells' text of each body row of the table `table_id` ([] when the page has no such table)."""
    found = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', text, re.S)
    if not found:
        return []
    rows = re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]
    return [[markup.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in row] for row in cells]


def next_link(text: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', text)
    return markup.unescape(found.group(1)) if found else None


async def walk(client, url: str, params: dict, table_id: str) -> list[list[list[str]]]:
    """Every page of a list from `url`, following Next: the rows of each page."""
    pages, response = [], await client.get(url, params=params)
    for _ in range(50):
        assert response.status_code == 200, response.text
        pages.append(table(response.text, table_id))
        link = next_link(response.text)
        if link is None:
            return pages
        response = await client.get(link)
    raise AssertionError("the pages never ended")


async def test_the_overdue_tab_shows_50_and_next_leads_to_the_rest_once_each(client, crowded):
    pages = await walk(client, STUDY, {"tab": "overdue", "as_of": AS_OF}, "worklist")
    assert [len(rows) for rows in pages] == [50] * 7 + [10]
    shown = [(row[0], row[2].split()[0]) for rows in pages for row in rows]
    assert len(shown) == len(set(shown)) == 360
    expected = await worklists.worklist("TST-1", date.fromisoformat(AS_OF), kind="overdue")
    assert set(shown) == {(row.subject_id, row.visit.visit) for row in expected}
    assert shown == sorted(shown, key=lambda pair: pair[0])  # by participant, the default
    first = (await client.get(STUDY, params={"tab": "overdue", "as_of": AS_OF})).text
    assert 'aria-sort="ascending"' in first and "First page" not in first


async def test_sorting_by_a_column_either_way_keeps_every_row_once(client, crowded):
    for sort, column in (("target", 4), ("site", 1), ("visit", 2)):
        for order in ("asc", "desc"):
            pages = await walk(
                client, STUDY, {"tab": "overdue", "as_of": AS_OF, "sort": sort, "order": order}, "worklist"
            )
            rows = [row for page in pages for row in page]
            assert len({(row[0], row[2]) for row in rows}) == len(rows) == 360
            values = [row[column] for row in rows]
            assert values == sorted(values, reverse=order == "desc"), (sort, order)
    second = next_link((await client.get(STUDY, params={"tab": "overdue", "as_of": AS_OF, "sort": "target"})).text)
    assert second and "sort=target" in second and "tab=overdue" in second and f"as_of={AS_OF}" in second


async def test_the_participants_tab_pages_sorts_and_filters(client, crowded):
    pages = await walk(client, STUDY, {"tab": "participants"}, "participants")
    assert [len(rows) for rows in pages] == [50, 50, 20]
    assert [row[0] for page in pages for row in page] == sorted(PEOPLE)
    newest = await walk(client, STUDY, {"tab": "participants", "sort": "enrolled", "order": "desc"}, "participants")
    enrolled = [row[-1] for page in newest for row in page]
    assert len(enrolled) == 120 and enrolled == sorted(enrolled, reverse=True)
    at_b = await walk(client, STUDY, {"tab": "participants", "site": "102", "q": "-00"}, "participants")
    assert [row[0] for page in at_b for row in page] == [f"102-00{n}" for n in range(1, 10)]
    ended = await walk(client, STUDY, {"tab": "participants", "status": "ended"}, "participants")
    assert ended == [[]]
    assert "No participant matches." in (await client.get(STUDY, params={"tab": "participants", "q": "zz"})).text


async def test_the_subject_id_filter_ignores_case_and_wildcards(client, crowded):
    rows = table((await client.get(STUDY, params={"tab": "overdue", "as_of": AS_OF, "q": "101-06"})).text, "worklist")
    assert {row[0] for row in rows} == {"101-060"} and len(rows) == 3
    assert table((await client.get(STUDY, params={"tab": "overdue", "as_of": AS_OF, "q": "%"})).text, "worklist") == []
    assert table((await client.get(STUDY, params={"tab": "participants", "q": "1_1"})).text, "participants") == []


async def test_the_out_of_window_tab_narrows_by_status(client, crowded):
    from trialcoord.scheduling.visits import record_visit

    await record_visit("TST-1", "101-001", "V2", date(2024, 3, 25), reason="travelling", today=date(2024, 6, 30))
    params = {"tab": "missed_or_out_of_window", "as_of": AS_OF}
    late = table((await client.get(STUDY, params={**params, "status": "late"})).text, "worklist")
    assert [(row[0], row[2].split()[0], row[-1]) for row in late] == [("101-001", "V2", "Late")]
    missed = await walk(client, STUDY, {**params, "status": "missed"}, "worklist")
    assert sum(len(page) for page in missed) == 359 and all(row[-1] == "Missed" for p in missed for row in p)
    refused = await client.get(STUDY, params={"tab": "today", "status": "late"})
    assert refused.status_code == 400 and "narrows only the missed or out of window list" in refused.text


async def test_a_coordinator_pages_through_their_own_site_only(anonymous, crowded):
    await add_user("coord-b", ("coordinator", "TST-1", "102"))
    client = await signed_in(anonymous, "coord-b")
    pages = await walk(client, STUDY, {"tab": "overdue", "as_of": AS_OF}, "worklist")
    rows = [row for page in pages for row in page]
    assert len(rows) == 180 and {row[1] for row in rows} == {"102"}
    assert (await client.get(STUDY, params={"tab": "overdue", "site": "101"})).status_code == 403


async def test_a_bad_cursor_or_sort_is_named(client, crowded):
    cursor = await client.get(STUDY, params={"tab": "overdue", "after": "not-a-cursor"})
    assert cursor.status_code == 400 and "after: not a cursor of this list" in cursor.text
    sort = await client.get(STUDY, params={"tab": "participants", "sort": "arm"})
    assert sort.status_code == 400 and "sort: &#39;arm&#39; is not a column of this list" in sort.text
    wrong_kind = encode_cursor(("101-001", "not a day", "V2", 1))  # the right width, a date that is not one
    typed = await client.get(STUDY, params={"tab": "overdue", "after": wrong_kind})
    assert typed.status_code == 400 and "not a cursor of this list" in typed.text
