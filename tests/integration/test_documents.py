"""Document versions as stored: immutable, typed by content, moved only along the lifecycle, audited, and
their bytes checked against their hash; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
from datetime import date

import pytest

from tests.conftest import sign_version
from trialcoord.documents import documents
from trialcoord.documents.rules.documents import DocumentKey, IrbApproval
from trialcoord.kernel import archives, audit_log, audit_store
from trialcoord.kernel.database.engine import fetch, transaction
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound

pytestmark = pytest.mark.anyio
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
ICF = DocumentKey("TST-1", "101", "Informed consent form (English)")
LETTER = DocumentKey("TST-1", "101", "IRB approval of ICF 2.0")


async def trail(record_type: str) -> list[audit_store.TrailEntry]:
    return await audit_log.export_rows(audit_store.AuditFilter(record_type=record_type), 100)


async def test_a_version_is_stored_once_hashed_typed_by_content_and_audited(study):
    added = await documents.add_version(ICF, "040", "2.0", PDF, "icf-v2.pdf", "amendment 2 wording", actor="cora")
    assert (added.sha256, added.media_type, added.status) == (
        hashlib.sha256(PDF).hexdigest(),
        "application/pdf",
        "draft",
    )
    assert added.artifact.number == "02.02.03" and added.author == "cora"
    assert await documents.version_bytes(ICF, "2.0") == PDF
    with pytest.raises(Conflict, match="versions never change"):
        await documents.add_version(ICF, "040", "2.0", PDF + b" ", "icf-v2b.pdf", actor="cora")
    scan = await documents.add_version(LETTER, "066", "1", PNG, "letter.pdf", actor="cora")  # the name lies
    assert scan.media_type == "image/png"
    created = await trail("document_version")
    assert [e.record_id for e in created] == [
        "TST-1/101/documents/Informed consent form (English)/2.0",
        "TST-1/101/documents/IRB approval of ICF 2.0/1",
    ]
    assert created[0].new["sha256"] == added.sha256 and created[0].actor == "cora"


@pytest.mark.parametrize(
    ("data", "name", "field"),
    [
        (b"", "empty.pdf", "file"),
        (b"%PDF-1.7\n1 0 obj<<>>endobj\n", "truncated.pdf", "file"),
        (b"MZ\x90\x00 not a document", "cv.pdf", "file"),
    ],
)
async def test_bad_uploads_are_refused_naming_the_file_and_nothing_is_stored(study, data, name, field):
    with pytest.raises(InvalidInput) as refused:
        await documents.add_version(ICF, "040", "1.0", data, name)
    assert refused.value.problems[0].field == field
    assert await documents.list_documents("TST-1") == []
    assert (await fetch("SELECT COUNT(*) AS n FROM document_blobs"))[0]["n"] == 0


async def test_an_oversized_upload_is_refused(study):
    header, rest = PDF.split(b"\n", 1)
    at_limit = header + b"\n%" + b"x" * (documents.MAX_BYTES - len(PDF) - 2) + b"\n" + rest  # a long comment
    assert len(at_limit) == documents.MAX_BYTES
    with pytest.raises(InvalidInput, match="larger|exceeds|limit|bytes"):
        await documents.add_version(ICF, "040", "1.0", header + b"\n%x" + at_limit[len(header) + 2 :], "icf.pdf")
    await documents.add_version(ICF, "040", "1.0", at_limit, "icf.pdf")  # at the limit: kept


async def test_unknown_study_site_or_artifact_are_named(study):
    with pytest.raises(NotFound, match="NOPE"):
        await documents.add_version(DocumentKey("NOPE", None, "x"), "040", "1", PDF, "x.pdf")
    with pytest.raises(InvalidInput) as site:
        await documents.add_version(DocumentKey("TST-1", "999", "x"), "040", "1", PDF, "x.pdf")
    assert site.value.problems[0].field == "site"
    with pytest.raises(InvalidInput) as artifact:
        await documents.add_version(ICF, "999", "1", PDF, "x.pdf")
    assert artifact.value.problems[0].field == "artifact"


async def test_the_lifecycle_is_followed_and_each_step_audited(study, installation):
    await documents.add_version(LETTER, "066", "1", PDF, "letter.pdf")
    letter_sha = (await documents.list_documents("TST-1"))[0].sha256
    await documents.add_version(ICF, "040", "2.0", PDF + b"%v2", "icf.pdf")
    with pytest.raises(InvalidInput) as skipped:
        await documents.change_status(ICF, "2.0", "effective", date(2024, 5, 1))
    assert skipped.value.problems[0].field == "status"
    assert (await documents.list_documents("TST-1"))[-1].status == "draft"  # nothing changed
    await documents.change_status(ICF, "2.0", "in_review", date(2024, 4, 1), actor="cora")
    with pytest.raises(InvalidInput) as no_approval:
        await documents.change_status(ICF, "2.0", "approved", date(2024, 4, 10))
    assert no_approval.value.problems[0].field == "approval"
    approval = IrbApproval("IRB-2024-117", date(2024, 4, 9), letter_sha)
    with pytest.raises(InvalidInput, match="needs an electronic signature with the meaning approval"):
        await documents.change_status(ICF, "2.0", "approved", date(2024, 4, 10), approval=approval)
    await sign_version(ICF, "2.0", "ivan", "review", installation=installation)
    with pytest.raises(InvalidInput, match="meaning approval"):  # a review is not an approval
        await documents.change_status(ICF, "2.0", "approved", date(2024, 4, 10), approval=approval)
    await sign_version(ICF, "2.0", "ivan", installation=installation)
    approved = await documents.change_status(ICF, "2.0", "approved", date(2024, 4, 10), approval=approval, actor="ivan")
    assert approved.approval.reference == "IRB-2024-117"
    effective = await documents.change_status(ICF, "2.0", "effective", date(2024, 4, 15), actor="ivan")
    assert (effective.status, effective.status_date) == ("effective", date(2024, 4, 15))
    steps = [e for e in await trail("document_version") if e.action == "update"]
    assert [(e.old["status"], e.new["status"], e.actor) for e in steps] == [
        ("draft", "in_review", "cora"),
        ("in_review", "approved", "ivan"),
        ("approved", "effective", "ivan"),
    ]
    assert steps[1].new["approval"]["letter_sha256"] == letter_sha
    assert (await audit_log.verify()).ok


GUARDED = ("documents", "document_blobs", "document_versions", "document_signatures", "document_files", "signer_keys")


async def tamper(db, sql: str, *args) -> None:
    """Change stored rows as someone holding the database owner's rights could: the guards go first."""
    async with transaction():
        if db.kind == "sqlite":
            tables = ", ".join(f"'{table}'" for table in GUARDED)
            names = await fetch(f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({tables})")
            for row in names:
                await fetch(f"DROP TRIGGER {row['name']}")
        else:
            for table in GUARDED:
                await fetch(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        await fetch(sql, *args)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE document_blobs SET size = size + 1",
        "DELETE FROM document_blobs",
        "UPDATE document_versions SET sha256 = 'x'",
        "UPDATE document_versions SET author = 'mallory'",
        "DELETE FROM document_versions",
    ],
)
async def test_the_database_refuses_to_change_stored_bytes_or_a_version(study, sql):
    await documents.add_version(ICF, "040", "1.0", PDF, "icf.pdf")
    with pytest.raises(Exception, match="never change"):
        async with transaction():
            await fetch(sql)
    assert await documents.verify_stored() == (2, [])
    await documents.change_status(ICF, "1.0", "in_review", date(2024, 4, 1))  # the lifecycle still moves


async def test_altered_bytes_are_never_handed_out_and_verification_names_them(study, db):
    await documents.add_version(ICF, "040", "1.0", PDF, "icf.pdf")
    assert await documents.verify_stored() == (2, [])  # one content, one version
    sha = hashlib.sha256(PDF).hexdigest()
    flipped = bytearray(PDF)
    flipped[10] ^= 1
    await tamper(
        db, "UPDATE document_blobs SET data = {} WHERE sha256 = {}", base64.b64encode(bytes(flipped)).decode(), sha
    )
    with pytest.raises(Conflict, match="do not match their SHA-256"):
        await documents.version_bytes(ICF, "1.0")
    checked, problems = await documents.verify_stored()
    assert checked == 2 and problems == [f"content {sha}: its bytes do not match their SHA-256 (altered or damaged)"]


async def test_a_version_pointed_at_other_bytes_is_caught_against_the_audit_trail(study, db):
    await documents.add_version(ICF, "040", "1.0", PDF, "icf.pdf")
    await documents.add_version(ICF, "040", "2.0", PDF + b"%v2", "icf.pdf")
    other = hashlib.sha256(PDF + b"%v2").hexdigest()
    await tamper(db, "UPDATE document_versions SET sha256 = {}, size = {} WHERE label = '1.0'", other, len(PDF) + 3)
    _, problems = await documents.verify_stored()
    assert problems == [
        "document Informed consent form (English) at site 101 version 1.0: its SHA-256 is not the one"
        " recorded in the audit trail when it was created"
    ]


async def test_a_new_effective_version_supersedes_the_one_before(study, installation):
    await documents.add_version(LETTER, "066", "1", PDF + b"%letter", "letter.pdf")
    letter = hashlib.sha256(PDF + b"%letter").hexdigest()
    for label, day in (("1.0", 1), ("2.0", 20)):
        await documents.add_version(ICF, "040", label, PDF + label.encode(), "icf.pdf")
        await documents.change_status(ICF, label, "in_review", date(2024, 4, day))
        await sign_version(ICF, label, installation=installation)
        await documents.change_status(
            ICF, label, "approved", date(2024, 4, day), approval=IrbApproval(f"IRB-{label}", date(2024, 4, day), letter)
        )
        await documents.change_status(ICF, label, "effective", date(2024, 4, day + 1))
    states = {
        row.label: (row.status, row.status_date)
        for row in await documents.list_documents("TST-1")
        if row.name == ICF.name
    }
    assert states == {"1.0": ("superseded", date(2024, 4, 21)), "2.0": ("effective", date(2024, 4, 21))}
    superseded = [e for e in await trail("document_version") if (e.new or {}).get("status") == "superseded"]
    assert [e.reason for e in superseded] == ["superseded by version 2.0"]


async def test_an_approval_must_name_a_stored_letter_and_dates_must_be_plausible(study, installation):
    await documents.add_version(ICF, "040", "1.0", PDF, "icf.pdf")
    await documents.change_status(ICF, "1.0", "in_review", date(2024, 4, 1))
    await sign_version(ICF, "1.0", installation=installation)
    with pytest.raises(InvalidInput) as unknown:
        await documents.change_status(
            ICF, "1.0", "approved", date(2024, 4, 2), approval=IrbApproval("IRB-1", date(2024, 4, 2), "ab" * 32)
        )
    assert unknown.value.problems[0].field == "approval_letter_sha256"
    for day in (date(1, 1, 1), date(9999, 12, 31)):
        with pytest.raises(InvalidInput) as implausible:
            await documents.change_status(ICF, "1.0", "draft", day, reason="x")
        assert implausible.value.problems[0].field == "on"


async def test_artifacts_are_filed_at_their_level_and_names_are_checked(study):
    with pytest.raises(InvalidInput, match="study level") as protocol:
        await documents.add_version(DocumentKey("TST-1", "101", "Protocol"), "032", "1", PDF, "p.pdf")
    assert protocol.value.problems[0].field == "site"
    with pytest.raises(InvalidInput, match="name the site"):
        await documents.add_version(DocumentKey("TST-1", None, "Subject log"), "234", "1", PDF, "s.pdf")
    for label, file_name, field in (
        ("a/b", "x.pdf", "label"),
        ("1", "x\x00.pdf", "file_name"),
        ("1", "f" * 201, "file_name"),
        ("x" * 65, "x.pdf", "label"),
    ):
        with pytest.raises(InvalidInput) as bad:
            await documents.add_version(ICF, "040", label, PDF, file_name)
        assert bad.value.problems[0].field == field


async def test_the_document_commands_store_list_move_and_verify(study, db, tmp_path):
    from tests.integration.test_cli import run

    env = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path)}
    file = tmp_path / "cv.pdf"
    file.write_bytes(PDF)
    added = run(
        "document", "add", "TST-1", "PI CV", str(file), "--label", "1", "--artifact", "087", "--site", "101", env=env
    )
    assert added.returncode == 0, added.stderr
    assert "05.02.04" in added.stdout and hashlib.sha256(PDF).hexdigest() in added.stdout
    refused = run(
        "document", "status", "TST-1", "PI CV", "1", "effective", "--on", "2024-05-01", "--site", "101", env=env
    )
    assert refused.returncode == 2 and "cannot go from draft to effective" in refused.stderr
    moved = run(
        "document", "status", "TST-1", "PI CV", "1", "in_review", "--on", "2024-05-01", "--site", "101", env=env
    )
    assert moved.returncode == 0 and "in_review from 2024-05-01" in moved.stdout
    listing = run("document", "list", "TST-1", env=env)
    assert "PI CV\t1\tin_review since 2024-05-01" in listing.stdout
    assert run("verify", env=env).returncode == 0
    await tamper(db, "UPDATE document_blobs SET data = {}", base64.b64encode(b"%PDF-1.7 forged\n%%EOF").decode())
    broken = run("verify", env=env)
    assert broken.returncode == 1 and "do not match their SHA-256" in broken.stderr
    entries = [e for e in await trail("document_version")]
    assert {e.actor[:4] for e in entries} == {"cli:"}


# Through the API, as the personas of the access matrix


def _body(name: str = "PI CV", site: str | None = "101", data: bytes = PDF, label: str = "1") -> dict:
    return {
        "name": name,
        "site": site,
        "artifact": "087",
        "label": label,
        "file_name": "cv.pdf",
        "content": base64.b64encode(data).decode(),
    }


async def test_site_staff_add_and_move_their_sites_documents_and_others_only_read(anonymous, personas):
    from tests.conftest import signed_in

    url = "/api/studies/TST-1/documents"
    coord = await signed_in(anonymous, "coord-a")
    added = await coord.post(url, json=_body())
    assert added.status_code == 201 and added.json()["media_type"] == "application/pdf"
    assert (await coord.post(url, json=_body(site="102"))).status_code == 403
    assert (await coord.post(url, json=_body(site=None))).status_code == 403  # study level: whole-study grant
    moved = await coord.post(
        f"{url}/status", json={"name": "PI CV", "site": "101", "label": "1", "status": "in_review", "on": "2024-05-01"}
    )
    assert moved.status_code == 200 and moved.json()["status"] == "in_review"
    skipped = await coord.post(
        f"{url}/status", json={"name": "PI CV", "site": "101", "label": "1", "status": "expired", "on": "2024-05-02"}
    )
    assert skipped.status_code == 422 and skipped.json()["errors"][0]["field"] == "status"
    not_base64 = await coord.post(url, json={**_body(label="2"), "content": "%%%"})
    assert not_base64.status_code == 400 and "content" in not_base64.text

    query = {"name": "PI CV", "label": "1", "site": "101"}
    sponsor = await signed_in(anonymous, "sponsor")
    assert (await sponsor.post(url, json=_body(label="3"))).status_code == 403
    assert (await sponsor.get(url)).json() == []  # a version in review is the site's work in progress
    assert (await sponsor.get(f"{url}/content", params=query)).status_code == 404
    coord = await signed_in(anonymous, "coord-a")
    download = await coord.get(f"{url}/content", params=query)
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-type"].startswith("application/pdf")
    other = await signed_in(anonymous, "coord-b")
    assert (await other.get(url)).json() == []  # site 101's documents are not theirs to see
    assert (await other.get(f"{url}/content", params=query)).status_code == 403
    exports = [e for e in await trail("document_version") if e.action == "export"]
    assert [e.actor for e in exports] == ["coord-a"]


async def test_the_documents_page_stores_a_version_and_moves_it(anonymous, personas):
    from tests.conftest import signed_in

    page = "/studies/TST-1/documents"
    coord = await signed_in(anonymous, "coord-a")
    token = coord.headers.pop("X-CSRF-Token")  # as a browser sends it: in the form
    fields = {"name": "Delegation log", "artifact": "101", "site": "101", "label": "1", "csrf_token": token}
    stored = await coord.post(page, data=fields, files={"file": ("log.pdf", PDF, "application/pdf")})
    assert stored.status_code == 303, stored.text
    listing = await coord.get(page)
    assert ">Delegation log</a>" in listing.text and "<td>05.02.18" in listing.text and "<td>draft" in listing.text
    refused = await coord.post(page, data={**fields, "label": "2"}, files={"file": ("x.pdf", b"MZ junk", "x/y")})
    assert refused.status_code == 422 and "file" in refused.text.lower()
    forged = await coord.post(
        page, data={**fields, "label": "3", "csrf_token": "forged"}, files={"file": ("log.pdf", PDF, "application/pdf")}
    )
    assert forged.status_code == 403
    moved = await coord.post(
        f"{page}/status",
        data={
            "name": "Delegation log",
            "label": "1",
            "site": "101",
            "status": "in_review",
            "on": "2024-05-01",
            "csrf_token": token,
        },
    )
    assert moved.status_code == 303
    assert "<td>in review" in (await coord.get(page)).text
    sponsor = await signed_in(anonymous, "sponsor")
    view = await sponsor.get(page)
    # the version in review is not the sponsor's to see (test_document_readers.py), nor is the form to add one
    assert view.status_code == 200 and ">Delegation log</a>" not in view.text and "Store version" not in view.text


async def test_subject_logs_are_personal_data_and_names_of_any_script_download(anonymous, personas, installation):
    from tests.conftest import signed_in

    url = "/api/studies/TST-1/documents"
    coord = await signed_in(anonymous, "coord-a")
    log = {**_body(name="Subject identification log"), "artifact": "234", "file_name": "同意書 log.pdf"}
    assert (await coord.post(url, json=log)).status_code == 201
    key = DocumentKey("TST-1", "101", "Subject identification log")
    await documents.change_status(key, "1", "in_review", date(2024, 5, 1))  # released: monitors may read it
    await sign_version(key, "1", installation=installation)
    await documents.change_status(key, "1", "approved", date(2024, 5, 1))
    query = {"name": "Subject identification log", "label": "1", "site": "101"}
    mine = await coord.get(f"{url}/content", params=query)
    assert mine.status_code == 200 and mine.content == PDF
    assert "filename*=UTF-8''%E5%90%8C%E6%84%8F%E6%9B%B8%20log.pdf" in mine.headers["content-disposition"]
    for persona in ("sponsor", "monitor-expired"):
        client = await signed_in(anonymous, persona)
        assert (await client.get(f"{url}/content", params=query)).status_code == 403
        assert "Subject identification log" not in (await client.get(url)).text
    monitor = await signed_in(anonymous, "monitor")  # a personal-data grant: source data verification
    assert (await monitor.get(f"{url}/content", params=query)).status_code == 200
    assert (await monitor.get(f"{url}/content", params={**query, "site": ""})).status_code == 404
    assert (await monitor.get("/api/studies/NOPE/documents")).status_code == 403
    admin = await signed_in(anonymous, "admin")
    assert (await admin.get("/api/studies/NOPE/documents")).status_code == 404


async def test_an_archive_zipfile_cannot_read_is_refused_not_a_crash(study):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    data = bytearray(buffer.getvalue())
    central = data.rfind(b"PK\x01\x02")
    data[central + 6] = 0xFF  # "version needed to extract": one zipfile does not support
    with pytest.raises(InvalidInput) as refused:
        await documents.add_version(ICF, "040", "1.0", bytes(data), "icf.docx")
    assert refused.value.problems[0].field == "file"


async def test_identical_bytes_uploaded_at_the_same_moment_are_all_stored(study):
    import asyncio

    keys = [DocumentKey("TST-1", "101", f"Certificate {i}") for i in range(4)]
    await asyncio.gather(*(documents.add_version(key, "090", "1", PDF, "cert.pdf") for key in keys))
    assert len(await documents.list_documents("TST-1")) == 4
    assert (await fetch("SELECT COUNT(*) AS n FROM document_blobs"))[0]["n"] == 1


async def test_a_zip_that_only_looks_like_a_word_document_is_refused(study):
    import io
    import zipfile

    fake = io.BytesIO()
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("word/document.xml", "<not really/>")
    with pytest.raises(InvalidInput, match="Word document cannot be read") as refused:
        await documents.add_version(ICF, "040", "1.0", fake.getvalue(), "icf.docx")
    assert refused.value.problems[0].field == "file"
    assert await documents.list_documents("TST-1") == []


async def test_a_word_document_that_unpacks_to_more_than_the_limit_is_refused_unread(study):
    import io
    import zipfile

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", "<w/>")
        archive.writestr("word/media/huge.bin", b"\0" * (archives.WORD.total + 1))
    assert len(bomb.getvalue()) < 1024 * 1024  # small on arrival
    with pytest.raises(InvalidInput, match="unpacks to") as refused:
        await documents.add_version(ICF, "040", "1.0", bomb.getvalue(), "icf.docx")
    assert refused.value.problems[0].field == "file"
