"""Signing, the binder and render jobs through the API and the pages, as a signed-in user."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile

import pytest

from tests.conftest import PASSWORD, account_rules, add_user, signed_in
from tests.integration.test_signatures import AT, COVER
from trialcoord.kernel.render.pdf_documents import render_pdf

pytestmark = pytest.mark.anyio
DOCS = "/api/studies/TST-1/documents"


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return render_pdf("binder_cover", COVER, created_at=AT, title="Doc", version_label="1")


@pytest.fixture
async def ivan(anonymous, study, pdf):
    await add_user("ivan", ("investigator", "TST-1", "101"), printed_name="Dr. Ivan Investigator")
    client = await signed_in(anonymous, "ivan")
    body = {
        "name": "CV Ivan",
        "site": "101",
        "artifact": "087",
        "label": "1",
        "file_name": "cv.pdf",
        "content": base64.b64encode(pdf).decode(),
        "person": "ivan",
    }
    assert (await client.post(DOCS, json=body)).status_code == 201
    return client


async def test_the_first_signing_needs_user_id_and_password_then_the_password(ivan):
    sign = {"name": "CV Ivan", "site": "101", "label": "1", "meaning": "authorship", "password": PASSWORD}
    first = await ivan.post(f"{DOCS}/signatures", json=sign)
    assert first.status_code == 422 and "user ID and password" in first.text
    wrong = await ivan.post(f"{DOCS}/signatures", json={**sign, "user_id": "ivan", "password": "nope"})
    assert wrong.status_code == 422 and "password is not correct" in wrong.text
    await asyncio.sleep(1.05)  # a wrong password delays the next attempt by a second, as at sign-in
    made = await ivan.post(f"{DOCS}/signatures", json={**sign, "user_id": "ivan"})
    assert made.status_code == 201, made.text
    assert (made.json()["printed_name"], made.json()["verdict"]) == ("Dr. Ivan Investigator", "valid")
    assert made.json()["local_time"].endswith("(America/New_York)")
    again = await ivan.post(f"{DOCS}/signatures", json={**sign, "meaning": "approval"})  # password alone now
    assert again.status_code == 201, again.text
    listed = (await ivan.get(f"{DOCS}/signatures", params={"name": "CV Ivan", "label": "1", "site": "101"})).json()
    assert [s["meaning"] for s in listed["signatures"]] == ["authorship", "approval"]
    assert {f["kind"] for f in listed["files"]} == {"signature_page", "signed_copy", "pades_signed"}
    signed = await ivan.get(
        f"{DOCS}/file", params={"name": "CV Ivan", "label": "1", "site": "101", "kind": "pades_signed"}
    )
    assert signed.status_code == 200 and signed.content.startswith(b"%PDF")
    assert "cv.signed.pdf" in signed.headers["content-disposition"]


async def test_a_sponsor_cannot_sign_and_a_monitor_signs_for_review_only(anonymous, ivan, personas, installation):
    from datetime import date

    from tests.conftest import sign_version
    from trialcoord.documents import documents
    from trialcoord.documents.rules.documents import DocumentKey

    monitor = await signed_in(anonymous, "monitor")
    sign = {"name": "CV Ivan", "site": "101", "label": "1", "password": PASSWORD, "user_id": "monitor"}
    assert (await monitor.post(f"{DOCS}/signatures", json={**sign, "meaning": "review"})).status_code == 404  # a draft
    key = DocumentKey("TST-1", "101", "CV Ivan")
    await documents.change_status(key, "1", "in_review", date(2024, 5, 1))
    await sign_version(key, "1", "ivan", "approval", installation=installation)
    await documents.change_status(key, "1", "approved", date(2024, 5, 1))
    assert (await monitor.post(f"{DOCS}/signatures", json={**sign, "meaning": "approval"})).status_code == 403
    assert (await monitor.post(f"{DOCS}/signatures", json={**sign, "meaning": "review"})).status_code == 201
    sponsor = await signed_in(anonymous, "sponsor")
    assert (
        await sponsor.post(f"{DOCS}/signatures", json={**sign, "meaning": "review", "user_id": "sponsor"})
    ).status_code == 403


async def test_the_binder_checklist_and_export_through_the_api_and_page(ivan):
    items = (await ivan.get("/api/studies/TST-1/binder/checklist", params={"site": "101"})).json()
    assert {(i["artifact"]["unique_id"], i["state"]) for i in items} >= {("091", "missing"), ("087", "missing")}
    exported = await ivan.get("/api/studies/TST-1/binder/export", params={"site": "101"})
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        assert "manifest.json.sig" in archive.namelist()
    page = await ivan.get("/studies/TST-1/binder", params={"site": "101"})
    assert page.status_code == 200 and "Form FDA 1572" in page.text and "missing" in page.text
    report = await ivan.get("/api/studies/TST-1/binder/checklist.pdf", params={"site": "101"})
    assert report.status_code == 200 and report.content.startswith(b"%PDF")
    from tests.unit.test_document_rendering import pdf_text

    assert "missing 05.02.08 Form FDA 1572" in pdf_text(report.content)


async def test_the_version_page_signs_and_never_echoes_the_password(ivan):
    form = {
        "name": "CV Ivan",
        "label": "1",
        "site": "101",
        "meaning": "authorship",
        "user_id": "ivan",
        "password": "a wrong secret",
    }
    refused = await ivan.post("/studies/TST-1/documents/sign", data=form)
    assert refused.status_code == 422 and "password is not correct" in refused.text
    assert "a wrong secret" not in refused.text
    await asyncio.sleep(1.05)
    done = await ivan.post("/studies/TST-1/documents/sign", data={**form, "password": PASSWORD})
    assert done.status_code == 303
    page = await ivan.get(done.headers["location"])
    assert "Signed." in page.text and "Dr. Ivan Investigator" in page.text
    assert '<td class="verdict">valid</td>' in page.text and "invalid" not in page.text


async def test_a_long_document_renders_in_a_job_whose_progress_is_visible(ivan):
    entries = [
        {
            "participant": f"10{n:02}",
            "visit": "V2",
            "category": "window",
            "description": "late " * 8,
            "identified": "2026-01-05",
            "classification": "minor",
            "status": "open",
        }
        for n in range(600)
    ]
    job = await ivan.post(
        "/api/studies/TST-1/render-jobs",
        json={
            "template": "deviation_log",
            "data": {"study_code": "TST-1", "site": "101", "entries": entries},
            "title": "Deviation log",
            "version_label": "1",
            "created_at": AT,
        },
    )
    assert job.status_code == 202, job.text
    assert job.json()["long_document"] is True and job.json()["pages_estimated"] >= 20
    job_id, seen = job.json()["id"], []
    for _ in range(600):
        status = (await ivan.get(f"/api/studies/TST-1/render-jobs/{job_id}")).json()
        seen.append(status["progress"])
        if status["state"] in ("done", "failed"):
            break
        await asyncio.sleep(0.1)
    assert status["state"] == "done", status
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(set(seen)) > 2
    result = await ivan.get(f"/api/studies/TST-1/render-jobs/{job_id}/result")
    assert result.content.startswith(b"%PDF") and result.headers["content-type"] == "application/pdf"
    assert (await ivan.get("/api/studies/TST-1/render-jobs/not-a-job")).status_code == 404
    unknown = await ivan.post(
        "/api/studies/TST-1/render-jobs",
        json={"template": "nope", "data": {}, "title": "x", "version_label": "1", "created_at": AT},
    )
    assert unknown.status_code == 400 and "template" in unknown.text
    forged = await ivan.post(
        "/api/studies/TST-1/render-jobs",
        json={"template": "signature_page", "data": {}, "title": "x", "version_label": "1", "created_at": AT},
    )
    assert forged.status_code == 400 and "cannot be rendered from given data" in forged.text
    assert "deviation_log" in forged.text  # and says which templates can


async def test_wrong_signing_passwords_throttle_and_lock_the_account_like_wrong_sign_ins(ivan):
    sign = {"name": "CV Ivan", "site": "101", "label": "1", "meaning": "authorship", "user_id": "ivan"}
    first = await ivan.post(f"{DOCS}/signatures", json={**sign, "password": "guess"})
    assert first.status_code == 422 and "password is not correct" in first.text
    for _ in range(5):  # each failure delays the next attempt (doubling), as at sign-in
        again = await ivan.post(f"{DOCS}/signatures", json={**sign, "password": PASSWORD})
        assert again.status_code == 422 and "try again after" in again.text
    from trialcoord.accounts import sessions, signing

    with pytest.raises(sessions.SignInRefused, match="try again after"):  # the same gate guards signing in
        await sessions.sign_in("ivan", PASSWORD, "127.0.0.1", rules=account_rules())
    shown = await sessions.recent_sign_in_problems()
    assert "failed" in [p.outcome for p in shown if p.address == signing.SIGNING_ADDRESS]  # shown to admins
    assert (await ivan.get(f"{DOCS}/signatures", params={"name": "CV Ivan", "label": "1", "site": "101"})).json()[
        "signatures"
    ] == []


async def test_the_version_page_previews_the_pdf_inline(ivan):
    page = (
        await ivan.get("/studies/TST-1/documents/version", params={"name": "CV Ivan", "label": "1", "site": "101"})
    ).text
    assert 'id="preview"' in page and "inline=true" in page
    assert "<title>CV Ivan 1 · TST-1 · trialcoord</title>" in page  # the title holds the title only
    assert page.count('id="history-heading"') == 1
    shown = await ivan.get(f"{DOCS}/content", params={"name": "CV Ivan", "label": "1", "site": "101", "inline": "true"})
    assert shown.status_code == 200 and shown.headers["content-disposition"].startswith("inline;")
    saved = await ivan.get(f"{DOCS}/content", params={"name": "CV Ivan", "label": "1", "site": "101"})
    assert saved.headers["content-disposition"].startswith("attachment;")
    from trialcoord.kernel import audit_log, audit_store

    actions = [
        e.action
        for e in await audit_log.export_rows(audit_store.AuditFilter(record_type="document_version"), 50)
        if e.actor == "ivan"
    ]
    assert actions[-2:] == ["view", "export"]  # a preview is a view, a download a copy leaving the system
