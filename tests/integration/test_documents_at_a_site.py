"""Documents in a site's daily use: no status step dated in the future, the IRB/IEC letter picked from the study's
stored letters (and a refusal keeps what was typed), and a CV filed for its holder with its expiry so that the
binder's checklist finds it, with an upload link on each row still to fill; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import date
from html import unescape

import pytest

from tests.conftest import sign_version, signed_in
from trialcoord.documents import binder_checklist, documents
from trialcoord.documents.rules.documents import DocumentKey, IrbApproval
from trialcoord.kernel.problems import InvalidInput

pytestmark = pytest.mark.anyio
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ICF = DocumentKey("TST-1", "101", "ICF English")
LETTER = DocumentKey("TST-1", "101", "IRB approval of ICF 1.0")
DOCS = "/api/studies/TST-1/documents"
PAGE = "/studies/TST-1/documents"
TODAY = date(2026, 12, 7)
FUTURE = date(2031, 1, 1)


async def _in_review(key: DocumentKey = ICF, artifact: str = "040", label: str = "1.0") -> None:
    await documents.add_version(key, artifact, label, PDF + label.encode(), "icf.pdf")
    await documents.change_status(key, label, "in_review", date(2026, 11, 2))


async def _letter() -> str:
    await documents.add_version(LETTER, "066", "1", PDF + b"%letter", "irb-letter.pdf")
    return hashlib.sha256(PDF + b"%letter").hexdigest()


# 1. A status step is dated on or before the day it is recorded


async def test_a_status_step_dated_after_today_is_refused_naming_the_date(study, installation):
    await _in_review()
    with pytest.raises(InvalidInput) as future:
        await documents.change_status(ICF, "1.0", "draft", FUTURE, reason="typo", today=TODAY)
    problem = future.value.problems[0]
    assert problem.field == "on" and "2031-01-01" in problem.message and "2026-12-07" in problem.message
    with pytest.raises(InvalidInput) as unstated:  # without today: no date later than any time zone's today
        await documents.change_status(ICF, "1.0", "draft", FUTURE, reason="typo")
    assert unstated.value.problems[0].field == "on"
    letter = await _letter()
    await sign_version(ICF, "1.0", installation=installation)
    with pytest.raises(InvalidInput) as approval:  # the IRB's decision cannot postdate today either
        await documents.change_status(
            ICF, "1.0", "approved", TODAY, approval=IrbApproval("IRB-1", FUTURE, letter), today=TODAY
        )
    assert [p.field for p in approval.value.problems] == ["approval_date"]
    assert (await documents.get_version(ICF, "1.0")).status == "in_review"  # nothing changed
    done = await documents.change_status(ICF, "1.0", "draft", TODAY, reason="typo", today=TODAY)
    assert done.status_date == TODAY  # today itself is fine


async def test_the_api_the_page_and_the_command_refuse_a_future_date(anonymous, personas, db, tmp_path):
    from tests.integration.test_cli import run

    await _in_review()
    coord = await signed_in(anonymous, "coord-a")
    step = {"name": ICF.name, "site": "101", "label": "1.0", "status": "draft", "reason": "x", "on": "2031-01-01"}
    answer = await coord.post(f"{DOCS}/status", json=step)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "on" and "2031-01-01" in answer.json()["errors"][0]["message"]
    page = await coord.post(f"{PAGE}/status", data=step)
    assert page.status_code == 422
    note = _field_note(page.text, "on")
    assert "2031-01-01" in note and "after today" in note
    assert 'value="2031-01-01"' in page.text and 'value="x"' in page.text  # what was typed stays
    env = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path)}
    typed = ("document", "status", "TST-1", ICF.name, "1.0", "draft", "--reason", "x", "--site", "101")
    command = run(*typed, "--on", "2031-01-01", env=env)
    assert command.returncode == 2 and "on: " in command.stderr and "2031-01-01" in command.stderr
    assert "Traceback" not in command.stderr
    assert (await documents.get_version(ICF, "1.0")).status == "in_review"


def _field_note(html: str, field: str) -> str:
    """The message shown next to a form field (the first field of that name on the page with one)."""
    found = re.search(rf'<span class="error" id="(?:[^"]*-)?{field}-note">([^<]*)<', html)
    assert found, f"no message next to {field}"
    return unescape(found.group(1))


# 3. The IRB/IEC approval letter is picked from the study's stored letters


async def test_the_status_form_offers_the_studys_approval_letters_and_approves_with_one(
    anonymous, personas, installation
):
    letter = await _letter()
    await _in_review()
    await sign_version(ICF, "1.0", installation=installation)
    coord = await signed_in(anonymous, "coord-a")
    listing = (await coord.get(PAGE)).text
    assert "approval_letter_sha256" not in listing  # no hash to paste
    options = re.findall(r'<option value="([0-9a-f]{64})"[^>]*>([^<]*)</option>', listing)
    assert [(value, unescape(text)) for value, text in options] == [
        (letter, "IRB approval of ICF 1.0 version 1 (site 101, irb-letter.pdf)")
    ]
    form = {"name": ICF.name, "site": "101", "label": "1.0", "status": "approved", "on": "2026-11-20"}
    approval = {"approval_reference": "IRB-2026-7", "approval_date": "2026-11-19", "approval_letter": letter}
    moved = await coord.post(f"{PAGE}/status", data={**form, **approval})
    assert moved.status_code == 303, moved.text
    approved = await documents.get_version(ICF, "1.0")
    assert approved.status == "approved" and approved.approval.letter_sha256 == letter


async def test_a_letter_that_is_not_an_approval_is_refused_next_to_its_field_keeping_what_was_typed(
    anonymous, personas, installation
):
    await _letter()
    await _in_review()
    await sign_version(ICF, "1.0", installation=installation)
    coord = await signed_in(anonymous, "coord-a")
    form = {"name": ICF.name, "site": "101", "label": "1.0", "status": "approved", "on": "2026-11-20"}
    typed = {"approval_reference": "IRB-2026-7", "approval_date": "2026-11-19", "approval_letter": "ab" * 32}
    refused = await coord.post(f"{PAGE}/status", data={**form, **typed})
    assert refused.status_code == 422
    assert "no IRB/IEC approval" in _field_note(refused.text, "approval_letter")
    assert 'value="IRB-2026-7"' in refused.text and 'value="2026-11-19"' in refused.text
    assert 'value="2026-11-20"' in refused.text and '<option value="approved" selected' in refused.text
    partial = await coord.post(f"{PAGE}/status", data={**form, "approval_reference": "IRB-2026-7"})
    assert partial.status_code == 422 and "letter" in _field_note(partial.text, "approval_letter")
    # the API still takes a SHA-256, and answers 422 naming the field, for a wrong one and a malformed one
    body = {**form, "approval_reference": "IRB-2026-7", "approval_date": "2026-11-19"}
    for wrong in ("ab" * 32, "not-a-hash", "AB" * 32):
        answer = await coord.post(f"{DOCS}/status", json={**body, "approval_letter_sha256": wrong})
        assert answer.status_code == 422, (wrong, answer.text)
        error = answer.json()["errors"][0]
        assert error["field"] == "approval_letter_sha256" and error["message"], wrong
    assert (await documents.get_version(ICF, "1.0")).status == "in_review"


# 4. Whose document it is and until when: the checklist finds what was filed


async def _approve(key: DocumentKey, label: str, installation) -> None:
    await documents.change_status(key, label, "in_review", date(2026, 2, 1))
    await sign_version(key, label, "ivan", installation=installation)
    await documents.change_status(key, label, "approved", date(2026, 2, 1))


def _row(items: list[binder_checklist.ChecklistEntry], artifact: str) -> tuple[str, str | None]:
    found = next(i for i in items if i.artifact.unique_id == artifact)
    return found.state, found.document


async def test_a_pi_cv_filed_by_the_command_with_its_holder_turns_the_checklist_row_present(
    study, db, tmp_path, installation
):
    from tests.conftest import add_user
    from tests.integration.test_cli import run

    await add_user("ivan", ("investigator", "TST-1", "101"), printed_name="Dr. Ivan Investigator")
    assert _row(await binder_checklist.site_checklist("TST-1", "101", TODAY), "087") == ("missing", None)
    env = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path)}
    (tmp_path / "cv.pdf").write_bytes(PDF)
    (tmp_path / "licence.pdf").write_bytes(PDF + b"%licence")
    common = ("--artifact", "087", "--site", "101", "--label", "2026", "--person", "ivan")
    filed = run("document", "add", "TST-1", "CV Ivan", str(tmp_path / "cv.pdf"), *common, env=env)
    assert filed.returncode == 0, filed.stderr
    assert "for ivan" in filed.stdout
    licence = run(
        "document",
        "add",
        "TST-1",
        "Licence Ivan",
        str(tmp_path / "licence.pdf"),
        *("--artifact", "090", "--site", "101", "--label", "1", "--person", "IVAN", "--expires-on", "2026-10-31"),
        env=env,
    )
    assert licence.returncode == 0, licence.stderr
    assert "valid until 2026-10-31" in licence.stdout
    await _approve(DocumentKey("TST-1", "101", "CV Ivan"), "2026", installation)
    await _approve(DocumentKey("TST-1", "101", "Licence Ivan"), "1", installation)
    items = await binder_checklist.site_checklist("TST-1", "101", TODAY)
    assert _row(items, "087") == ("present", "CV Ivan 2026")
    assert _row(items, "090") == ("expired", "Licence Ivan 1")  # its expiry is past
    shown = run("binder", "checklist", "TST-1", "--site", "101", "--as-of", "2026-12-07", env=env)
    assert "present\t05.02.04 Principal investigator CV\tivan\tCV Ivan 2026" in shown.stdout
    assert "expired\t05.02.07" in shown.stdout and "until 2026-10-31" in shown.stdout
    unknown = run("document", "add", "TST-1", "CV Nobody", str(tmp_path / "cv.pdf"), *common[:-1], "nobody", env=env)
    assert unknown.returncode == 2 and "person" in unknown.stderr and "nobody" in unknown.stderr
    bad_day = run(
        "document", "add", "TST-1", "CV X", str(tmp_path / "cv.pdf"), *common, "--expires-on", "soon", env=env
    )
    assert bad_day.returncode == 2 and "soon" in bad_day.stderr


async def test_the_page_files_a_cv_for_its_holder_and_the_checklist_links_each_gap_to_a_prefilled_upload(
    anonymous, personas, installation
):
    from tests.conftest import add_user

    await add_user("ivan", ("investigator", "TST-1", "101"), printed_name="Dr. Ivan Investigator")
    coord = await signed_in(anonymous, "coord-a")
    binder = (await coord.get("/studies/TST-1/binder", params={"site": "101"})).text
    link = _upload_link(binder, "087")
    assert link.startswith(PAGE + "/new?") and "artifact=087" in link and "site=101" in link and "person=ivan" in link
    form = (await coord.get(link)).text
    assert '<option value="087" selected' in form and '<option value="ivan" selected' in form
    assert re.search(r'<select id="add-site" name="site">.*?<option value="101" selected', form, re.S)
    stored = await coord.post(
        PAGE,
        data={"name": "CV Ivan", "artifact": "087", "site": "101", "label": "2026", "person": "ivan"},
        files={"file": ("cv.pdf", PDF, "application/pdf")},
    )
    assert stored.status_code == 303, stored.text
    licence = await coord.post(
        PAGE,
        data={
            "name": "Licence Ivan",
            "artifact": "090",
            "site": "101",
            "label": "1",
            "person": "ivan",
            "expires_on": "2026-10-31",
        },
        files={"file": ("licence.pdf", PDF + b"%licence", "application/pdf")},
    )
    assert licence.status_code == 303, licence.text
    filed = {row.name: row for row in await documents.list_documents("TST-1")}
    assert (filed["CV Ivan"].person, filed["Licence Ivan"].expires_on) == ("ivan", date(2026, 10, 31))
    await _approve(DocumentKey("TST-1", "101", "CV Ivan"), "2026", installation)
    await _approve(DocumentKey("TST-1", "101", "Licence Ivan"), "1", installation)
    binder = (await coord.get("/studies/TST-1/binder", params={"site": "101"})).text
    assert _state(binder, "087") == "present" and _state(binder, "090") == "expired"
    assert "artifact=087" not in binder  # nothing to upload for a row that is present
    renew = _upload_link(binder, "090")  # a new version of the document that expired
    assert "name=Licence+Ivan" in renew or "name=Licence%20Ivan" in renew
    refused = await coord.post(
        PAGE,
        data={"name": "CV X", "artifact": "087", "site": "101", "label": "1", "person": "nobody", "expires_on": "x"},
        files={"file": ("cv.pdf", PDF, "application/pdf")},
    )
    assert refused.status_code == 422 and "date" in _field_note(refused.text, "expires_on")
    refused = await coord.post(
        PAGE,
        data={"name": "CV X", "artifact": "087", "site": "101", "label": "1", "person": "nobody"},
        files={"file": ("cv.pdf", PDF, "application/pdf")},
    )
    assert refused.status_code == 422 and "nobody" in _field_note(refused.text, "person")
    assert 'value="CV X"' in refused.text  # what was typed stays
    monitor = await signed_in(anonymous, "monitor")  # reads the binder, files nothing: no upload links
    assert "artifact=" not in (await monitor.get("/studies/TST-1/binder", params={"site": "101"})).text


def _rows(html: str) -> list[str]:
    table = html.split('id="checklist"', 1)[1].split("</table>", 1)[0]
    return table.split("<tr")[2:]


def _checklist_row(html: str, artifact: str) -> str:
    number = {"087": "05.02.04", "090": "05.02.07"}[artifact]
    return next(row for row in _rows(html) if number in row)


def _state(html: str, artifact: str) -> str:
    return re.search(r"<strong>(\w+)</strong>", _checklist_row(html, artifact)).group(1)


def _upload_link(html: str, artifact: str) -> str:
    found = re.search(r'<a href="([^"]+)"[^>]*>Upload', _checklist_row(html, artifact))
    assert found, f"no upload link on the row of {artifact}"
    return unescape(found.group(1))


async def test_a_version_filed_for_another_holder_than_its_document_is_refused(study):
    from tests.conftest import add_user

    await add_user("ivan", ("investigator", "TST-1", "101"))
    await add_user("sara", ("investigator", "TST-1", "101"))
    cv = DocumentKey("TST-1", "101", "CV")
    await documents.add_version(cv, "087", "1", PDF, "cv.pdf", person="ivan")
    with pytest.raises(InvalidInput) as other:
        await documents.add_version(cv, "087", "2", PDF + b"2", "cv.pdf", person="sara")
    assert other.value.problems[0].field == "person" and "ivan" in other.value.problems[0].message
    later = await documents.add_version(cv, "087", "2", PDF + b"2", "cv.pdf")  # the holder is the document's
    assert later.person == "ivan"
    nobody = DocumentKey("TST-1", "101", "CV without holder")
    await documents.add_version(nobody, "087", "1", PDF, "cv.pdf")
    with pytest.raises(InvalidInput) as late:
        await documents.add_version(nobody, "087", "2", PDF + b"3", "cv.pdf", person="ivan")
    assert late.value.problems[0].field == "person" and "new document" in late.value.problems[0].message


async def test_the_api_files_a_version_for_its_holder_by_user_id_and_refuses_an_unknown_one(anonymous, personas):
    coord = await signed_in(anonymous, "coord-a")
    body = {
        "name": "CV Coord",
        "site": "101",
        "artifact": "087",
        "label": "1",
        "file_name": "cv.pdf",
        "content": base64.b64encode(PDF).decode(),
        "expires_on": "2027-03-31",
    }
    unknown = await coord.post(DOCS, json={**body, "person": "nobody"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "person"
    filed = await coord.post(DOCS, json={**body, "person": "Coord-A"})
    assert filed.status_code == 201, filed.text
    assert (filed.json()["person"], filed.json()["expires_on"]) == ("coord-a", "2027-03-31")  # user IDs: any case
