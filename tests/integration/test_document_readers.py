"""Sponsors and monitors read only released document versions (approved, effective, and superseded or expired
as history), never a draft or a version in review: not in a listing, not by its address (404, as if it did not
exist), not its signatures or the files printing them, not in the binder's export or checklist. Site staff and
administrators see every version."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import date

import pytest

from tests.conftest import PASSWORD, account_rules, add_user, sign_version, signed_in
from tests.integration.test_signatures import AT, COVER
from trialcoord.accounts import signing
from trialcoord.documents import documents, signatures
from trialcoord.documents.rules.documents import DocumentKey, IrbApproval
from trialcoord.kernel.problems import NotFound
from trialcoord.kernel.render.pdf_documents import render_pdf

pytestmark = pytest.mark.anyio
DOCS = "/api/studies/TST-1/documents"
CV = DocumentKey("TST-1", "101", "PI CV")  # 1 superseded, 2 effective, 3 in review (signed), 4 draft
ROSTER = DocumentKey("TST-1", "101", "Roster working copy")  # drafts only
PROTOCOL = DocumentKey("TST-1", None, "Protocol working copy")  # a study-level draft
LETTER = DocumentKey("TST-1", "101", "IRB letter of ICF 1.0")  # an approval letter left in draft
ICF = DocumentKey("TST-1", "101", "ICF English")  # effective, approved by that letter
READERS = ("sponsor", "monitor")
STAFF = ("coord-a", "admin")
DAY = date(2024, 5, 1)


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return render_pdf("binder_cover", COVER, created_at=AT, title="Doc", version_label="1")


async def _released(key: DocumentKey, artifact: str, label: str, data: bytes, installation, approval=None) -> None:
    await documents.add_version(key, artifact, label, data, "file.pdf")
    await documents.change_status(key, label, "in_review", DAY)
    await sign_version(key, label, "ivan", installation=installation)
    await documents.change_status(key, label, "approved", DAY, approval=approval)
    await documents.change_status(key, label, "effective", DAY)


@pytest.fixture
async def binder(personas, pdf, installation):
    await add_user("ivan", ("investigator", "TST-1", "101"), printed_name="Dr. Ivan Investigator")
    await _released(CV, "087", "1", pdf + b"%1", installation)
    await _released(CV, "087", "2", pdf + b"%2", installation)  # supersedes 1
    await documents.add_version(CV, "087", "3", pdf + b"%3", "cv.pdf")
    await documents.change_status(CV, "3", "in_review", DAY)
    await sign_version(CV, "3", "ivan", "authorship", installation=installation)  # a signature page exists
    await documents.add_version(CV, "087", "4", pdf + b"%4", "cv.pdf")
    await documents.add_version(ROSTER, "101", "1", pdf + b"%roster", "roster.pdf")
    await documents.add_version(PROTOCOL, "032", "1", pdf + b"%protocol", "protocol.pdf")
    await documents.add_version(LETTER, "066", "1", pdf + b"%letter", "letter.pdf")
    letter = hashlib.sha256(pdf + b"%letter").hexdigest()
    await _released(ICF, "040", "1.0", pdf + b"%icf", installation, approval=IrbApproval("IRB-1", DAY, letter))
    return personas


def _listed(rows: list[dict]) -> set[tuple[str, str, str]]:
    return {(row["name"], row["label"], row["status"]) for row in rows}


RELEASED = {
    ("PI CV", "1", "superseded"),
    ("PI CV", "2", "effective"),
    ("ICF English", "1.0", "effective"),
}
UNRELEASED = {
    ("PI CV", "3", "in_review"),
    ("PI CV", "4", "draft"),
    ("Roster working copy", "1", "draft"),
    ("Protocol working copy", "1", "draft"),
    ("IRB letter of ICF 1.0", "1", "draft"),
}


async def test_sponsors_and_monitors_list_released_versions_only_and_staff_list_every_one(anonymous, binder):
    for persona in READERS:
        client = await signed_in(anonymous, persona)
        assert _listed((await client.get(DOCS)).json()) == RELEASED, persona
        assert _listed((await client.get(DOCS, params={"site": "101"})).json()) == RELEASED, persona
        page = (await client.get("/studies/TST-1/documents")).text
        assert "PI CV" in page and "label=2&amp;site=101" in page
        for hidden in ("Roster working copy", "Protocol working copy", "IRB letter of ICF 1.0", "label=3&", "label=4&"):
            assert hidden not in page, (persona, hidden)
    for persona in STAFF:  # a site's coordinator sees the study-level draft too: site staff of the study
        client = await signed_in(anonymous, persona)
        assert _listed((await client.get(DOCS)).json()) == RELEASED | UNRELEASED, persona
        page = (await client.get("/studies/TST-1/documents")).text
        assert "Roster working copy" in page and "Protocol working copy" in page and "label=4&amp;site=101" in page


def _addresses(name: str, label: str, site: str | None = "101") -> list[str]:
    query = f"name={name}&label={label}" + (f"&site={site}" if site else "")
    return [
        f"{DOCS}/content?{query}",
        f"{DOCS}/signatures?{query}",
        f"{DOCS}/file?{query}&kind=signature_page",
        f"/studies/TST-1/documents/version?{query}",
    ]


async def test_a_draft_or_a_version_in_review_is_not_found_by_its_address_nor_its_signatures_or_files(
    anonymous, binder
):
    for persona in READERS:
        client = await signed_in(anonymous, persona)
        for name, label, site in (
            ("PI CV", "3", "101"),
            ("PI CV", "4", "101"),
            ("Roster working copy", "1", "101"),
            ("Protocol working copy", "1", None),
        ):
            for url in _addresses(name, label, site):
                answer = await client.get(url)
                assert answer.status_code == 404, (persona, url, answer.status_code)
        # the answer is the one a version or a document that does not exist gets: nothing tells them apart
        in_review = await client.get(f"{DOCS}/content", params={"name": "PI CV", "label": "3", "site": "101"})
        missing = await client.get(f"{DOCS}/content", params={"name": "PI CV", "label": "9", "site": "101"})
        assert in_review.json()["detail"] == missing.json()["detail"].replace("9", "3")
        drafts_only = await client.get(f"{DOCS}/content", params={"name": ROSTER.name, "label": "1", "site": "101"})
        nothing = await client.get(f"{DOCS}/content", params={"name": "No such thing", "label": "1", "site": "101"})
        assert drafts_only.json()["detail"] == nothing.json()["detail"].replace("No such thing", ROSTER.name)
        released = await client.get(f"{DOCS}/content", params={"name": "PI CV", "label": "1", "site": "101"})
        assert released.status_code == 200  # superseded: history, the version in force on its dates
        signed = await client.get(
            f"{DOCS}/file", params={"name": "PI CV", "label": "2", "site": "101", "kind": "signature_page"}
        )
        assert signed.status_code == 200
    coordinator = await signed_in(anonymous, "coord-a")
    for url in _addresses("PI CV", "3"):
        assert (await coordinator.get(url)).status_code == 200, url
    for url in _addresses("Protocol working copy", "1", None)[:2]:  # study level; no signature, so no file
        assert (await coordinator.get(url)).status_code == 200, url


async def test_the_binder_export_and_checklist_hold_no_draft_for_a_sponsor_or_monitor(anonymous, binder):
    for persona, expected in (("sponsor", RELEASED), ("monitor", RELEASED), ("coord-a", RELEASED | UNRELEASED)):
        client = await signed_in(anonymous, persona)
        exported = await client.get("/api/studies/TST-1/binder/export")
        assert exported.status_code == 200, exported.text
        with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            names = archive.namelist()
        versions = {(f["document"], f["label"], f["status"]) for f in manifest["files"] if f["kind"] == "version"}
        assert versions == expected, persona
        if persona != "coord-a":
            assert not any("working copy" in n or "IRB letter" in n for n in names)
            assert not [f for f in manifest["files"] if f["label"] in ("3", "4") and f["document"] == "PI CV"]
        items = (await client.get("/api/studies/TST-1/binder/checklist", params={"site": "101"})).json()
        approval = next(i for i in items if i["artifact"]["unique_id"] == "066")
        # the letter in draft counts for the site's staff; a reader sees the binder as released, where it is missing
        if persona == "coord-a":
            assert (approval["state"], approval["document"]) == ("present", "IRB letter of ICF 1.0 1")
        else:
            assert (approval["state"], approval["document"]) == ("missing", None)
            page = (await client.get("/studies/TST-1/binder", params={"site": "101"})).text
            assert "IRB letter of ICF 1.0" not in page
            report = await client.get("/api/studies/TST-1/binder/checklist.pdf", params={"site": "101"})
            from tests.unit.test_document_rendering import pdf_text

            assert "IRB letter" not in pdf_text(report.content)


async def test_a_monitor_signs_a_released_version_for_review_but_finds_no_draft_to_sign_from_any_door(
    anonymous, binder, installation
):
    for label in ("3", "4"):
        with pytest.raises(NotFound, match=f"no version {label}"):
            await signatures.sign(
                CV,
                label,
                await signing.signing_by_password("monitor", "review", PASSWORD, rules=account_rules()),
                installation=installation,
            )
    monitor = await signed_in(anonymous, "monitor")
    body = {"name": "PI CV", "site": "101", "password": PASSWORD, "user_id": "monitor", "meaning": "review"}
    assert (await monitor.post(f"{DOCS}/signatures", json={**body, "label": "3"})).status_code == 404
    made = await monitor.post(f"{DOCS}/signatures", json={**body, "label": "2"})
    assert made.status_code == 201, made.text
