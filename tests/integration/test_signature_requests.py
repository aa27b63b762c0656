"""Signature requests: someone who manages documents asks a named person to sign a version with a meaning, reminds
them, and their signature (the Part 11 ceremony, unchanged) fulfils the request; each step audited; refused for
someone who may not sign; through the use cases, the API and the version page; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date
from html import unescape

import pytest

from tests.conftest import PASSWORD, add_user, sign_version, signed_in
from trialcoord.documents import documents
from trialcoord.documents.rules.documents import DocumentKey
from trialcoord.documents.signature_requests import (
    open_signature_requests,
    possible_signers,
    remind,
    request_signature,
    requests_of_version,
)
from trialcoord.kernel import audit_log, audit_store
from trialcoord.kernel.database.engine import fetch, transaction
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound

pytestmark = pytest.mark.anyio
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
CV = DocumentKey("TST-1", "101", "PI CV")
TODAY = date(2026, 12, 7)
API = "/api/studies/TST-1/documents/signature-requests"
VERSION_PAGE = "/studies/TST-1/documents/version"


@pytest.fixture
async def draft(personas):
    """Site 101's PI CV version 1 in draft; ivan is the site's investigator."""
    await add_user("ivan", ("investigator", "TST-1", "101"), printed_name="Dr. Ivan Investigator")
    await documents.add_version(CV, "087", "1", PDF, "cv.pdf", person="ivan")
    return personas


async def _trail() -> list[audit_store.TrailEntry]:
    return await audit_log.export_rows(audit_store.AuditFilter(record_type="signature_request"), 100)


async def test_a_request_is_stored_audited_reminded_and_fulfilled_by_the_signature_asked_for(draft, installation):
    made = await request_signature(CV, "1", "ivan", "approval", "coord-a", TODAY)
    assert (made.signer_id, made.signer_name, made.meaning, made.requested_by, made.state) == (
        "ivan",
        "Dr. Ivan Investigator",
        "approval",
        "coord-a",
        "open",
    )
    mine = await open_signature_requests("ivan", TODAY)
    assert len(mine) == 1
    row = mine[0]
    assert (row.study, row.site, row.document, row.label, row.meaning) == ("TST-1", "101", "PI CV", "1", "approval")
    assert (row.requested_by, row.requested_by_name, row.requested_at) == ("coord-a", "Coord-A", made.requested_at)
    assert (row.reminded_at, row.reminders) == (None, 0)
    assert row.path == "/studies/TST-1/documents/version?name=PI%20CV&label=1&site=101"
    assert await open_signature_requests("coord-a", TODAY) == []  # nobody asked coord-a
    reminded = await remind(CV, "1", made.id, "admin")
    assert reminded.reminders == 1 and reminded.reminded_at is not None
    assert (await open_signature_requests("IVAN", TODAY))[0].reminded_at == reminded.reminded_at  # case-blind ID
    with pytest.raises(Conflict, match="send a reminder instead"):
        await request_signature(CV, "1", "ivan", "approval", "admin", TODAY)
    other = await request_signature(CV, "1", "ivan", "review", "coord-a", TODAY)  # another meaning: its own request
    signed = await sign_version(CV, "1", "ivan", "approval", installation=installation)
    shown = {r.meaning: r for r in await requests_of_version(CV, "1")}
    assert shown["approval"].state == "fulfilled" and shown["approval"].fulfilled_at == signed.instant
    assert shown["review"].state == "open"
    assert [r.id for r in await open_signature_requests("ivan", TODAY)] == [other.id]
    linked = await fetch(
        "SELECT r.signature, s.value FROM signature_requests r JOIN document_signatures s ON s.id = r.signature"
        " WHERE r.id = {}",
        made.id,
    )
    assert linked[0]["value"] == signed.signature  # the request points at the signature that fulfilled it
    with pytest.raises(Conflict, match="signed version 1"):
        await remind(CV, "1", made.id, "coord-a")
    with pytest.raises(Conflict, match="signed version 1"):
        await request_signature(CV, "1", "ivan", "approval", "coord-a", TODAY)
    entries = [(e.action, e.actor, (e.new or {}).get("state"), (e.new or {}).get("reminders")) for e in await _trail()]
    assert entries == [
        ("create", "coord-a", "open", None),
        ("update", "admin", None, 1),
        ("create", "coord-a", "open", None),
        ("update", "ivan", "fulfilled", None),
    ]
    fulfilment = (await _trail())[-1]
    assert fulfilment.record_id == "TST-1/101/documents/PI CV/1" and fulfilment.new["signature"] == signed.signature
    assert (await audit_log.verify()).ok


@pytest.mark.parametrize(
    ("signer", "meaning", "field", "words"),
    [
        ("monitor", "approval", "signer_id", "a monitor may not manage_documents"),
        ("monitor", "review", "signer_id", "released versions only"),  # may review, but not read a draft
        ("coord-b", "authorship", "signer_id", "does not cover"),  # another site's coordinator
        ("sponsor", "review", "signer_id", "a sponsor may not sign"),
        ("outsider", "review", "signer_id", "no grant"),
        ("nobody", "review", "signer_id", "no user nobody"),
        ("ivan", "blessing", "meaning", "unknown meaning"),
    ],
)
async def test_someone_who_may_not_sign_is_never_asked(draft, signer, meaning, field, words):
    with pytest.raises(InvalidInput) as refused:
        await request_signature(CV, "1", signer, meaning, "coord-a", TODAY)
    problem = refused.value.problems[0]
    assert problem.field == field and words in problem.message, problem.message
    assert (await fetch("SELECT COUNT(*) AS n FROM signature_requests"))[0]["n"] == 0
    assert await _trail() == []


async def test_a_request_of_a_version_no_longer_in_force_is_closed_and_leaves_the_signers_list(draft, installation):
    for label in ("1", "2"):
        if label == "2":
            await documents.add_version(CV, "087", "2", PDF + b"2", "cv.pdf")
        await documents.change_status(CV, label, "in_review", date(2026, 11, 1))
        await sign_version(CV, label, "ivan", installation=installation)
        await documents.change_status(CV, label, "approved", date(2026, 11, 1))
        await documents.change_status(CV, label, "effective", date(2026, 11, 2))
        if label == "1":  # released: a monitor may review it
            asked = await request_signature(CV, "1", "monitor", "review", "coord-a", TODAY)
            assert [r.document for r in await open_signature_requests("monitor", TODAY)] == ["PI CV"]
    assert await open_signature_requests("monitor", TODAY) == []  # version 1 was superseded by 2
    assert [(r.id, r.state) for r in await requests_of_version(CV, "1")] == [(asked.id, "closed")]
    with pytest.raises(Conflict, match="superseded"):
        await remind(CV, "1", asked.id, "coord-a")
    with pytest.raises(InvalidInput) as superseded:
        await request_signature(CV, "1", "ivan", "review", "coord-a", TODAY)
    assert superseded.value.problems[0].field == "label"
    with pytest.raises(NotFound):  # a request is reminded on its own version only
        await remind(CV, "2", asked.id, "coord-a")


async def test_the_signers_offered_are_those_granted_at_the_study_or_site_who_may_sign_and_read_it(draft):
    offered = {p.user_id for p in await possible_signers(CV, "draft", TODAY)}
    assert offered == {"admin", "coord-a", "ivan"}  # not coord-b, the pharmacist, the sponsor, the monitors
    released = {p.user_id for p in await possible_signers(CV, "approved", TODAY)}
    assert released == {"admin", "coord-a", "ivan", "monitor"}  # a monitor reviews what is released
    protocol = DocumentKey("TST-1", None, "Protocol")  # study level: anyone at a site of the study who may sign
    assert {p.user_id for p in await possible_signers(protocol, "approved", TODAY)} == released | {"coord-b"}


async def test_the_database_keeps_what_was_asked_and_a_fulfilled_request(draft, installation, db):
    made = await request_signature(CV, "1", "ivan", "approval", "coord-a", TODAY)
    for sql in ("UPDATE signature_requests SET requested_by = 'mallory'", "DELETE FROM signature_requests"):
        with pytest.raises(Exception, match="never change"):
            async with transaction():
                await fetch(sql)
    await sign_version(CV, "1", "ivan", "approval", installation=installation)
    with pytest.raises(Exception, match="never change"):
        async with transaction():
            await fetch("UPDATE signature_requests SET fulfilled_at = NULL WHERE id = {}", made.id)


# Through the API


async def test_the_api_requests_lists_and_reminds_following_the_grants(anonymous, draft):
    body = {"name": "PI CV", "site": "101", "label": "1", "signer_id": "ivan", "meaning": "approval"}
    coord = await signed_in(anonymous, "coord-a")
    made = await coord.post(API, json=body)
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "open" and made.json()["requested_by"] == "coord-a"
    again = await coord.post(API, json=body)
    assert again.status_code == 409 and "reminder" in again.json()["detail"]
    refused = await coord.post(API, json={**body, "signer_id": "monitor"})
    assert refused.status_code == 422
    assert (
        refused.json()["errors"][0]["field"] == "signer_id" and "may not sign" in refused.json()["errors"][0]["message"]
    )
    listed = await coord.get(API, params={"name": "PI CV", "label": "1", "site": "101"})
    assert [(r["signer_id"], r["meaning"]) for r in listed.json()] == [("ivan", "approval")]
    reminder = {"name": "PI CV", "site": "101", "label": "1", "request": made.json()["id"]}
    reminded = await coord.post(f"{API}/remind", json=reminder)
    assert reminded.status_code == 200 and reminded.json()["reminders"] == 1
    assert (await coord.post(f"{API}/remind", json={**reminder, "request": 999})).status_code == 404
    other_site = await signed_in(anonymous, "coord-b")
    assert (await other_site.post(API, json={**body, "meaning": "review"})).status_code == 403
    assert (await other_site.post(f"{API}/remind", json=reminder)).status_code == 403
    for persona in ("monitor", "sponsor"):  # read-only for documents; and a draft does not exist for them
        reader = await signed_in(anonymous, persona)
        assert (await reader.post(API, json={**body, "meaning": "review"})).status_code == 403
        assert (await reader.get(API, params={"name": "PI CV", "label": "1", "site": "101"})).status_code == 404


# On the version page


def _note(html: str, field: str) -> str:
    found = re.search(rf'<span class="error" id="request-{field}-note">([^<]*)<', html)
    assert found, f"no message next to {field}"
    return unescape(found.group(1))


def _options(html: str, select_id: str) -> list[str]:
    select = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', html, re.S)
    assert select, f"no {select_id}"
    return [v for v in re.findall(r'<option value="([^"]*)"', select.group(1)) if v]


async def test_the_version_page_requests_a_signature_reminds_and_shows_it_fulfilled(anonymous, draft):
    coord = await signed_in(anonymous, "coord-a")
    query = {"name": "PI CV", "label": "1", "site": "101"}
    page = (await coord.get(VERSION_PAGE, params=query)).text
    assert "Nobody has been asked to sign this version." in page
    assert _options(page, "request-signer_id") == ["admin", "coord-a", "ivan"]  # by printed name; none reads no draft
    assert _options(page, "request-meaning") == ["authorship", "review", "approval", "responsibility", "consent"]
    form = {**query, "signer_id": "monitor", "meaning": "approval"}
    refused = await coord.post("/studies/TST-1/documents/signature-requests", data=form)
    assert refused.status_code == 422
    assert "may not sign PI CV for approval" in _note(refused.text, "signer_id")
    assert re.search(r'<option value="approval" selected', refused.text)  # what was chosen stays
    asked = await coord.post("/studies/TST-1/documents/signature-requests", data={**form, "signer_id": "ivan"})
    assert asked.status_code == 303
    shown = await coord.get(asked.headers["location"])
    assert "Signature requested." in shown.text
    table = shown.text.split('id="signature-requests"', 1)[1].split("</table>", 1)[0]
    assert "Dr. Ivan Investigator" in table and "approval" in table and ">Remind<" in table
    request_id = re.search(r'name="request" value="(\d+)"', table).group(1)
    reminded = await coord.post(
        "/studies/TST-1/documents/signature-requests/remind", data={**query, "request": request_id}
    )
    assert reminded.status_code == 303
    after = (await coord.get(reminded.headers["location"])).text
    assert "Reminder sent." in after and "(1 sent)" in after
    bad = await coord.post("/studies/TST-1/documents/signature-requests/remind", data={**query, "request": "x"})
    assert bad.status_code == 422 and "Choose the request" in bad.text
    ivan = await signed_in(anonymous, "ivan")
    signing = {**query, "meaning": "approval", "user_id": "ivan", "password": PASSWORD}
    assert (await ivan.post("/studies/TST-1/documents/sign", data=signing)).status_code == 303
    done = (await coord.get(VERSION_PAGE, params=query)).text
    table = done.split('id="signature-requests"', 1)[1].split("</table>", 1)[0]
    assert "signed 20" in table and ">Remind<" not in table
    monitor_view = await signed_in(anonymous, "monitor")
    assert (await monitor_view.get(VERSION_PAGE, params=query)).status_code == 404  # a draft, to a monitor
