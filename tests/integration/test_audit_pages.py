"""The audit trail's pages as the filter form submits them (issue 15): empty fields mean no bound, a bad date is
named next to its field, and the trail is read a keyset page at a time, newest first or oldest first."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SITE_A, add_user, signed_in
from tests.integration.test_pages import error_next_to
from trialcoord.kernel import audit_log
from trialcoord.kernel.web.paging import encode_cursor

pytestmark = [pytest.mark.anyio, pytest.mark.db]

EMPTY_FORM = {"record_type": "", "record_id": "", "actor": "", "action": "", "since": "", "until": ""}


def sequences(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td class="num">(\d+)</td>\s*<td class="num">\d{4}-', html)]


def next_link(html: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


async def test_found_the_filter_form_as_submitted_with_empty_fields_shows_every_entry(client, study):
    everything = await client.get("/audit")
    submitted = await client.get("/audit", params=EMPTY_FORM)
    assert submitted.status_code == 200, submitted.text[:300]
    assert sequences(submitted.text) == sequences(everything.text) != []
    in_study = await client.get("/studies/TST-1/audit", params={**EMPTY_FORM, "site": ""})
    assert in_study.status_code == 200 and "TST-1" in in_study.text


async def test_one_bound_left_empty_keeps_the_other(client, study):
    page = await client.get("/audit", params={**EMPTY_FORM, "until": "2000-01-01"})
    assert page.status_code == 200 and sequences(page.text) == [] and "No entry matches." in page.text
    assert 'value="2000-01-01"' in page.text  # the filter stays in the form
    since = await client.get("/audit", params={**EMPTY_FORM, "since": "2000-01-01", "action": "create"})
    assert since.status_code == 200 and sequences(since.text)


async def test_a_bad_date_is_named_next_to_its_field(client, study):
    bad = await client.get("/audit", params={**EMPTY_FORM, "since": "last week"})
    assert bad.status_code == 400
    assert "date" in error_next_to(bad.text, "audit-since")
    far = await client.get("/studies/TST-1/audit", params={**EMPTY_FORM, "until": "9999-12-31"})
    assert far.status_code == 400 and "must fall between" in error_next_to(far.text, "audit-until")
    assert sequences(far.text) == []  # nothing listed under a refused filter


async def test_the_trail_pages_newest_first_by_keyset_and_can_be_turned_around(client, study):
    for n in range(7):
        await audit_log.record_alone("cora", audit_log.Change("sign_in", "session", str(n)))
    first = await client.get("/audit", params={**EMPTY_FORM, "size": "3"})
    shown = sequences(first.text)
    assert len(shown) == 3 and shown == sorted(shown, reverse=True)
    assert 'aria-sort="descending"' in first.text
    link = next_link(first.text)
    assert link and "after=" in link and "size=3" in link
    second = await client.get(link)
    assert sequences(second.text) == [shown[-1] - 1, shown[-1] - 2, shown[-1] - 3]
    assert "First page" in second.text
    oldest = await client.get("/audit", params={"order": "asc", "size": "2"})
    assert sequences(oldest.text) == [1, 2]
    assert (await client.get("/audit", params={"after": "not-a-cursor"})).status_code == 400
    assert (await client.get("/audit", params={"after": encode_cursor(("7",))})).status_code == 400
    assert (await client.get("/audit", params={"sort": "actor"})).status_code == 400


async def test_the_filters_ride_along_on_the_next_page(client, study):
    for n in range(4):
        await audit_log.record_alone("cora", audit_log.Change("sign_in", "session", str(n)))
    first = await client.get("/audit", params={**EMPTY_FORM, "actor": "cora", "size": "2"})
    link = next_link(first.text)
    assert link and "actor=cora" in link and "since" not in link  # empty filters are left out
    second = await client.get(link)
    assert len(sequences(second.text)) == 2 and "cora" in second.text and next_link(second.text) is None


async def test_a_site_reader_pages_their_site_of_the_study(anonymous, personas):
    await add_user("ivan", ("investigator", "TST-1", SITE_A))
    ivan = await signed_in(anonymous, "ivan")
    page = await ivan.get("/studies/TST-1/audit", params={**EMPTY_FORM, "site": "", "size": "1"})
    assert page.status_code == 200 and len(sequences(page.text)) == 1
    assert f"TST-1/{SITE_A}" in page.text
    assert next_link(page.text) is not None
