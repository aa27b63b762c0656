"""The study's search box: a subject ID, a document's title or a deviation's number, on one results page, each
result a link to its page; only what the viewer may see (their sites; drafts to who manages documents)."""

from __future__ import annotations

import re
from datetime import date

import pytest

from tests.conftest import SITE_A, SITE_B, SUBJECT_A, SUBJECT_B, signed_in
from trialcoord.deviations import manual
from trialcoord.documents import documents
from trialcoord.documents.rules.documents import DocumentKey

pytestmark = [pytest.mark.anyio, pytest.mark.db]

SEARCH = "/studies/TST-1/search"
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
TODAY = date(2024, 4, 1)


@pytest.fixture
async def findable(personas):
    await documents.add_version(
        DocumentKey("TST-1", SITE_A, "Informed consent form (English)"), "040", "1.0", PDF, "icf.pdf"
    )
    await documents.add_version(
        DocumentKey("TST-1", SITE_A, "Informed consent form (English)"), "040", "1.1", PDF + b" ", "icf.pdf"
    )
    await documents.add_version(DocumentKey("TST-1", SITE_B, "Consent checklist"), "040", "1", PDF + b"  ", "list.pdf")
    found = []
    for site, subject in ((SITE_A, SUBJECT_A), (SITE_B, SUBJECT_B)):
        row = await manual.record_manual(
            "TST-1", site, "assessments", "ECG not done", TODAY, "admin", subject_id=subject, today=TODAY
        )
        found.append(row.id)
    return found


def results(text: str) -> list[tuple[str, str]]:
    """(kind, link) of each result, in page order."""
    return re.findall(r'<li class="found (\w+)"><a href="([^"]+)"', text)


async def test_a_subject_id_finds_the_participant(anonymous, findable):
    client = await signed_in(anonymous, "admin")
    page = await client.get(SEARCH, params={"q": SUBJECT_A[1:]})
    assert page.status_code == 200
    assert ("participant", f"/studies/TST-1/participants/{SUBJECT_A}") in results(page.text)


async def test_a_title_finds_each_document_once_at_its_latest_version(anonymous, findable):
    client = await signed_in(anonymous, "admin")
    found = [
        link for kind, link in results((await client.get(SEARCH, params={"q": "CONSENT"})).text) if kind == "document"
    ]
    assert found == [  # by site, then title
        "/studies/TST-1/documents/version?name=Informed+consent+form+%28English%29&amp;label=1.1&amp;site=101",
        "/studies/TST-1/documents/version?name=Consent+checklist&amp;label=1&amp;site=102",
    ]
    for link in found:  # one click from its page
        assert (await client.get(link.replace("&amp;", "&"))).status_code == 200


async def test_a_deviation_number_finds_the_deviation(anonymous, findable):
    client = await signed_in(anonymous, "admin")
    for query in (str(findable[0]), f"#{findable[0]}"):
        page = await client.get(SEARCH, params={"q": query})
        assert ("deviation", f"/studies/TST-1/deviations/{findable[0]}") in results(page.text)
    assert (await client.get(f"/studies/TST-1/deviations/{findable[0]}")).status_code == 200


async def test_a_coordinator_finds_only_their_sites(anonymous, findable):
    client = await signed_in(anonymous, "coord-a")
    mine = results((await client.get(SEARCH, params={"q": "consent"})).text)
    assert [kind for kind, _ in mine] == ["document"] and "site=101" in mine[0][1]
    assert results((await client.get(SEARCH, params={"q": SUBJECT_B})).text) == []
    assert results((await client.get(SEARCH, params={"q": str(findable[1])})).text) == []  # site B's deviation
    assert ("deviation", f"/studies/TST-1/deviations/{findable[0]}") in results(
        (await client.get(SEARCH, params={"q": str(findable[0])})).text
    )


async def test_a_monitor_finds_no_draft(anonymous, findable):
    client = await signed_in(anonymous, "monitor")
    page = await client.get(SEARCH, params={"q": "consent"})
    assert page.status_code == 200 and results(page.text) == []
    assert "Nothing found for “consent”" in page.text
    assert ("participant", f"/studies/TST-1/participants/{SUBJECT_B}") in results(
        (await client.get(SEARCH, params={"q": SUBJECT_B})).text
    )


async def test_the_study_page_has_the_search_box_and_an_empty_or_long_query_is_named(anonymous, findable):
    client = await signed_in(anonymous, "admin")
    study = (await client.get("/studies/TST-1")).text
    assert f'<form class="inline search" method="get" action="{SEARCH}"' in study
    empty = await client.get(SEARCH)
    assert empty.status_code == 200 and results(empty.text) == [] and "Type a subject ID" in empty.text
    long = await client.get(SEARCH, params={"q": "x" * 201})
    assert long.status_code == 400 and "at most 200 characters" in long.text
