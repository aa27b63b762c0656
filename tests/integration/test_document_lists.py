"""The documents list and the binder checklist a keyset page at a time: sorted, filtered, every row once across the
pages; and what each role reads there (monitors and sponsors: released versions only, however they filter, sort or
page); on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import add_user, sign_version, signed_in
from trialcoord.documents import documents
from trialcoord.documents.rules.documents import DocumentKey, Reader
from trialcoord.kernel.web.paging import page_request

pytestmark = pytest.mark.anyio
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PAGE = "/studies/TST-1/documents"
BINDER = "/studies/TST-1/binder"
DAY = date(2026, 3, 2)
READERS = ("monitor", "sponsor")
STAFF = ("admin", "coord-a")


async def _file(name: str, site: str | None, artifact: str, label: str, status: str, installation, person=None):
    key = DocumentKey("TST-1", site, name)
    await documents.add_version(key, artifact, label, PDF + f"{name}{label}".encode(), "f.pdf", person=person)
    if status != "draft":
        await documents.change_status(key, label, "in_review", DAY)
    if status == "approved":
        await sign_version(key, label, {"101": "ivan", "102": "sara"}[site], installation=installation)
        await documents.change_status(key, label, "approved", DAY)


@pytest.fixture
async def filed(personas, installation):
    """Released and unreleased versions at site 101, site 102 and study level, stored in this order."""
    await add_user("ivan", ("investigator", "TST-1", "101"), printed_name="Dr. Ivan Investigator")
    await add_user("sara", ("investigator", "TST-1", "102"), printed_name="Dr. Sara Investigator")
    for row in STORED:
        await _file(*row, installation=installation, person="ivan" if row[:2] == ("CV Ivan", "101") else None)
    return personas


# (name, site, artifact, label, status), in the order stored
STORED = [
    ("CV Ivan", "101", "087", "1", "approved"),
    ("CV Ivan", "101", "087", "2", "in_review"),
    ("Delegation log", "101", "101", "1", "draft"),
    ("Lab certificate", "102", "160", "2026", "approved"),
    ("cv Sara", "102", "087", "1", "draft"),
    ("Training record", "101", "104", "A", "approved"),
    ("Trial master plan", None, "204", "1", "draft"),
]
RELEASED = [("CV Ivan", "1"), ("Lab certificate", "2026"), ("Training record", "A")]


def _by_name(sites: tuple[str | None, ...], statuses: tuple[str, ...] = ("approved", "in_review", "draft")):
    """(name, label) of the stored versions at `sites` in `statuses`, by name in any case, site, then storing."""
    rows = [(n, r) for n, r in enumerate(STORED) if r[1] in sites and r[4] in statuses]
    rows.sort(key=lambda pair: (pair[1][0].lower(), pair[1][1] or "", pair[0]))
    return [(r[0], r[3]) for _, r in rows]


def _versions(html: str) -> list[tuple[str, str]]:
    """The versions a documents page lists, in order."""
    found = re.findall(r'/documents/version\?name=([^&"]*)&amp;label=([^&"]*)', html)
    return [(unescape(_unquote(name)), unescape(_unquote(label))) for name, label in found]


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def _next(html: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', html)
    return unescape(found.group(1)) if found else None


async def _walk(client, url: str, params: dict) -> list:
    """Every row across the pages, following each page's Next link."""
    answer = await client.get(url, params=params)
    assert answer.status_code == 200, answer.text
    seen, pages = _versions(answer.text) if url == PAGE else _checklist(answer.text), 1
    while (link := _next(answer.text)) is not None:
        assert parse_qs(urlsplit(link).query).get("size") == [str(params["size"])]  # the filters ride along
        answer = await client.get(link)
        assert answer.status_code == 200, answer.text
        seen += _versions(answer.text) if url == PAGE else _checklist(answer.text)
        pages += 1
        assert pages < 20
    return seen


async def test_staff_walk_every_version_once_in_each_order_and_the_filters_narrow_it(anonymous, filed):
    for persona, sites in (("admin", ("101", "102", None)), ("coord-a", ("101", None))):
        client = await signed_in(anonymous, persona)
        walked = await _walk(client, PAGE, {"size": 2})
        assert walked == _by_name(sites), persona  # every row once, by name in any case
        assert await _walk(client, PAGE, {"size": 3}) == walked  # the same order whatever the page size
        newest = await _walk(client, PAGE, {"size": 2, "sort": "created", "order": "desc"})
        assert newest == list(reversed(await _walk(client, PAGE, {"size": 5, "sort": "created"}))), persona
        assert newest == [(r[0], r[3]) for r in reversed(STORED) if r[1] in sites], persona
    admin = await signed_in(anonymous, "admin")
    assert await _walk(admin, PAGE, {"size": 2, "status": "approved"}) == RELEASED
    cvs = [("CV Ivan", "1"), ("CV Ivan", "2"), ("cv Sara", "1")]
    assert await _walk(admin, PAGE, {"size": 2, "artifact": "087"}) == cvs
    assert await _walk(admin, PAGE, {"size": 2, "artifact": "87"}) == cvs  # "87" is "087"
    assert await _walk(admin, PAGE, {"size": 2, "q": "CV"}) == await _walk(admin, PAGE, {"size": 2, "q": "cv"}) == cvs
    assert await _walk(admin, PAGE, {"size": 2, "site": "102"}) == [("cv Sara", "1"), ("Lab certificate", "2026")]
    assert await _walk(admin, PAGE, {"size": 2, "site": "/"}) == [("Trial master plan", "1")]  # study level
    assert await _walk(admin, PAGE, {"size": 2, "q": "100%_"}) == []  # LIKE's wildcards are plain text
    by_site = await _walk(admin, PAGE, {"size": 2, "sort": "site"})
    assert by_site[0] == ("Trial master plan", "1")  # study level first
    assert "No version matches." in (await admin.get(PAGE, params={"status": "expired"})).text


async def test_a_bad_sort_cursor_or_filter_is_named_not_a_crash(anonymous, filed):
    admin = await signed_in(anonymous, "admin")
    for params, named in (
        ({"sort": "sha256"}, "sort"),
        ({"after": "bm90LWEtY3Vyc29y"}, "after"),
        ({"size": "0"}, "size"),
    ):
        answer = await admin.get(PAGE, params=params)
        assert answer.status_code == 400 and f"{named}:" in answer.text, (params, answer.status_code)
    from trialcoord.kernel.web.paging import encode_cursor

    forged = await admin.get(PAGE, params={"after": encode_cursor((1, 2, "x"))})  # three values, wrong types
    assert forged.status_code == 422 and "cursor" in forged.text
    unknown = await admin.get(PAGE, params={"status": "lost"})
    assert unknown.status_code == 422 and "lost" in unknown.text


async def test_monitors_and_sponsors_page_through_released_versions_only_however_they_filter(anonymous, filed):
    for persona in READERS:
        client = await signed_in(anonymous, persona)
        assert await _walk(client, PAGE, {"size": 1}) == RELEASED, persona
        by_status = await _walk(client, PAGE, {"size": 1, "sort": "status", "order": "desc"})
        assert by_status == list(reversed(RELEASED)), persona  # all approved: by name, descending too
        for status in ("draft", "in_review"):
            shown = (await client.get(PAGE, params={"status": status})).text
            assert _versions(shown) == [] and "No version matches." in shown, (persona, status)
        assert await _walk(client, PAGE, {"size": 1, "q": "cv"}) == [("CV Ivan", "1")], persona
        assert await _walk(client, PAGE, {"size": 1, "site": "/"}) == [], persona
        page = (await client.get(PAGE)).text
        for hidden in ("Delegation log</a>", "Trial master plan</a>", "cv Sara</a>", "label=2&amp;site=101"):
            assert hidden not in page, (persona, hidden)


async def test_a_page_of_released_versions_is_full_even_past_many_hidden_drafts(filed):
    """Hidden rows are skipped in chunks: a page is never cut short by drafts a reader does not see."""
    for n in range(110):
        await documents.add_version(DocumentKey("TST-1", "101", f"Draft {n:03d}"), "089", "1", PDF + b"%d" % n, "x.pdf")
    sponsor = Reader(tuple(await _grants("sponsor")), DAY)
    after, walked = None, []
    for _ in range(10):
        request = page_request("name", None, after, 1, sorts=documents.SORTS, default="name", key_width=3)
        page = await documents.page_of_versions("TST-1", request, documents.VersionFilter(), sponsor)
        walked += [(row.name, row.label) for row in page.rows]
        if page.next_after is None:
            break
        after = page.next_after
    assert walked == RELEASED


async def _grants(user_id: str):
    from trialcoord.accounts import users

    return await users.grants_held(user_id)


# The binder checklist


def _checklist(html: str) -> list[tuple[str, str, str]]:
    """(state, artifact number, for whom) of each row of the checklist table, in order."""
    if 'id="checklist"' not in html:
        return []
    table = html.split('id="checklist"', 1)[1].split("</table>", 1)[0]
    rows = []
    for row in table.split("<tr")[2:]:
        cells = [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        rows.append((cells[0], cells[1].split(" ", 1)[0], cells[2]))
    return rows


async def test_the_checklist_pages_sorts_and_filters(anonymous, filed):
    await add_user("cora", ("coordinator", "TST-1", "101"))
    coord = await signed_in(anonymous, "coord-a")
    whole = await _walk(coord, BINDER, {"site": "101", "size": 50})
    assert len(whole) == 8 and len(set(whole)) == len(whole)
    paged = await _walk(coord, BINDER, {"site": "101", "size": 3})
    assert paged == whole  # every row once, in the same order
    states = [r[0] for r in whole]
    assert states == sorted(states, key=["missing", "expired", "expiring", "present"].index)  # by state first
    by_artifact = await _walk(coord, BINDER, {"site": "101", "size": 2, "sort": "artifact", "order": "desc"})
    assert [r[1] for r in by_artifact] == sorted((r[1] for r in whole), reverse=True)
    present = await _walk(coord, BINDER, {"site": "101", "size": 2, "state": "present"})
    assert present == [("present", "05.02.04", "ivan")]  # the CV filed for ivan, approved
    training = await _walk(coord, BINDER, {"site": "101", "size": 2, "artifact": "104"})
    assert {r[2] for r in training} == {"coord-a", "cora", "ivan"}  # GCP training of each person at the site
    assert await _walk(coord, BINDER, {"site": "101", "size": 2, "q": "CORA"}) == [("missing", "05.03.03", "cora")]
    summary = (await coord.get(BINDER, params={"site": "101", "state": "present"})).text
    assert re.search(r"\d+ missing, \d+ expired, \d+ expiring within 60 days, 1 present", summary)  # all, unfiltered
    assert "No expected document matches." in (await coord.get(BINDER, params={"site": "101", "q": "zzz"})).text
    assert (await coord.get(BINDER, params={"site": "101", "sort": "document"})).status_code == 400


# What each role reads: monitors (with or without the personal-data grant) and sponsors read released versions only
# (approved, effective, and superseded or expired as history); site staff and administrators every version.

ROLES = {
    "monitor": RELEASED,
    "monitor-coded": RELEASED,  # a monitor without the personal-data grant
    "sponsor": RELEASED,
    "coord-a": _by_name(("101", None)),
    "ivan": _by_name(("101", None)),
    "admin": _by_name(("101", "102", None)),
}


@pytest.mark.parametrize("persona", list(ROLES))
async def test_each_role_reads_the_versions_its_role_may_on_every_surface(anonymous, filed, persona):
    await add_user("monitor-coded", ("monitor", "TST-1", None))
    client = await signed_in(anonymous, persona)
    expected = ROLES[persona]
    released_only = persona in ("monitor", "monitor-coded", "sponsor")
    assert await _walk(client, PAGE, {"size": 2}) == expected  # the list page
    listed = (await client.get("/api/studies/TST-1/documents")).json()  # the API
    assert sorted((row["name"], row["label"]) for row in listed) == sorted(expected)
    if released_only:
        assert {row["status"] for row in listed} <= {"approved", "effective", "superseded", "expired"}
    draft = {"name": "Delegation log", "label": "1", "site": "101"}
    unknown = {**draft, "name": "No such document"}
    for url in (
        "/studies/TST-1/documents/version",
        "/api/studies/TST-1/documents/content",
        "/api/studies/TST-1/documents/signatures",
        "/api/studies/TST-1/documents/signature-requests",
    ):
        answer = await client.get(url, params=draft)
        if released_only:  # a draft is not found, with the answer a version that never existed gets
            missing = await client.get(url, params=unknown)
            assert answer.status_code == missing.status_code == 404, (persona, url)
            # The same page but for the name, typed or in the page's own address (which the sign-in link carries).
            same = [
                text.replace(name, "X").replace(name.replace(" ", "+"), "X")
                for text, name in ((answer.text, "Delegation log"), (missing.text, "No such document"))
            ]
            assert same[0] == same[1]
        else:
            assert answer.status_code == 200, (persona, url, answer.status_code)
    approved = await client.get(
        "/studies/TST-1/documents/version", params={"name": "CV Ivan", "label": "1", "site": "101"}
    )
    assert approved.status_code == 200 and "Signature requests" in approved.text
    assert ("Request a signature" in approved.text) is (persona in ("coord-a", "ivan", "admin"))
    binder = await client.get(BINDER, params={"site": "101"})
    assert binder.status_code == 200
    items = (await client.get("/api/studies/TST-1/binder/checklist", params={"site": "101"})).json()
    cv = next(i for i in items if i["artifact"]["unique_id"] == "087")
    assert (cv["state"], cv["document"]) == ("present", "CV Ivan 1")  # released, so every reader counts it
    delegation = next(i for i in items if i["artifact"]["unique_id"] == "101")
    assert delegation["state"] == "missing"  # a draft log fills nothing, for anyone
    assert ("Upload it" in binder.text) is (persona in ("coord-a", "ivan", "admin"))
    upload_form = await client.get("/studies/TST-1/documents/new", params={"artifact": "101", "site": "101"})
    assert upload_form.status_code == (403 if released_only else 200), persona
