"""Electronic signatures of document versions, as stored: made through the ceremony, linked to the version's
bytes, printed on a signature page, PAdES on approval, revocable without losing old signatures, and
verified against the registry; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import asdict
from datetime import UTC, date, datetime

import pikepdf
import pytest
from asn1crypto import cms

from tests.conftest import PASSWORD, account_rules, add_user, sign_version
from tests.integration.test_documents import tamper
from trialcoord.accounts import signer_keys, signing, users
from trialcoord.accounts.rules.signers import parse_registry
from trialcoord.deviations import verification
from trialcoord.documents import documents, signatures
from trialcoord.documents.rules.documents import DocumentKey, IrbApproval
from trialcoord.kernel import audit_log, audit_store
from trialcoord.kernel.database.engine import fetch
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.render.docx_documents import render_docx
from trialcoord.kernel.render.pdf_documents import render_pdf
from trialcoord.kernel.render.signed_pdf import pades_verify

pytestmark = pytest.mark.anyio
ICF = DocumentKey("TST-1", "101", "Informed consent form (English)")
CV = DocumentKey("TST-1", "101", "PI CV")
COVER = {
    "study_code": "TST-1",
    "study_title": "Test study",
    "site_code": "101",
    "site_name": "Riverside",
    "investigator": "Dr. Ivan Investigator",
    "sponsor": "Acme",
}
AT = "2026-11-27T09:30:00.000000Z"


@pytest.fixture(scope="module")
def real_pdf() -> bytes:
    return render_pdf("binder_cover", COVER, created_at=AT, title="Consent", version_label="1.0")


async def _file(key: DocumentKey, label: str, kind: str, installation) -> bytes:
    files = (await signatures.of_version(key, label, installation=installation)).files
    newest = next(f for f in files if f.kind == kind)
    rows = await fetch("SELECT data FROM document_blobs WHERE sha256 = {}", newest.sha256)
    import base64

    return base64.b64decode(rows[0]["data"])


async def test_a_signature_is_linked_to_the_version_printed_and_audited(study, real_pdf, installation):
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await add_user("ivan", ("investigator", "TST-1", "101"), printed_name="Dr. Ivan Investigator")
    made = await sign_version(ICF, "1.0", "ivan", "review", installation=installation)
    assert (made.signer_id, made.printed_name, made.meaning) == ("ivan", "Dr. Ivan Investigator", "review")
    assert made.version_sha256 == hashlib.sha256(real_pdf).hexdigest()
    found = await signatures.of_version(ICF, "1.0", installation=installation)
    shown, files = found.signatures, found.files
    assert [(s.verdict, s.local_time[-18:]) for s in shown] == [("valid", "(America/New_York)")]
    assert {f.kind for f in files} == {"signature_page", "signed_copy"}
    page = await _file(ICF, "1.0", "signature_page", installation=installation)
    from tests.unit.test_document_rendering import pdf_text

    printed = pdf_text(page).replace("America/ New_York", "America/New_York")
    assert "Dr. Ivan Investigator (ivan) review" in printed and "(America/New_York)" in printed
    assert made.instant in printed.replace(" ", "") or made.instant in printed
    with pikepdf.open(io.BytesIO(page)) as pdf:
        assert len(pdf.pages) == 1
        attached = json.loads(pdf.attachments["data.json"].get_file().read_bytes())
    assert attached["signatures"][0]["printed_name"] == "Dr. Ivan Investigator"
    assert attached["signatures"][0]["local_time"].endswith("EST (America/New_York)")
    with pikepdf.open(io.BytesIO(await _file(ICF, "1.0", "signed_copy", installation=installation))) as copy:
        assert len(copy.pages) == 2  # the version's page, then the signature page
    assert await documents.version_bytes(ICF, "1.0") == real_pdf  # the version itself never changes
    entry = [
        e
        for e in await audit_log.export_rows(audit_store.AuditFilter(record_type="document_version"), 50)
        if e.action == "sign"
    ][0]
    assert entry.actor == "ivan" and entry.new["meaning"] == "review"
    assert entry.new["components"] == "user ID and password"
    assert await verification.verify_all() == (4, [])  # one key, one signature, two files


async def test_a_wrong_password_signs_nothing_and_is_audited(study, real_pdf, installation):
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await add_user("ivan", ("investigator", "TST-1", "101"))
    with pytest.raises(InvalidInput) as refused:
        await signing.signing_by_password("ivan", "approval", "not the password", rules=account_rules())
    assert refused.value.problems[0].field == "password"
    with pytest.raises(InvalidInput, match="not correct"):
        await signing.signing_by_password("nobody", "approval", PASSWORD, rules=account_rules())
    with pytest.raises(InvalidInput, match="meaning"):
        await signing.signing_by_password("ivan", "liking", PASSWORD, rules=account_rules())
    found = await signatures.of_version(ICF, "1.0", installation=installation)
    assert (found.signatures, found.files) == ([], [])
    failures = await audit_log.export_rows(audit_store.AuditFilter(action="signing_failed"), 10)
    assert [e.reason for e in failures][:1] == ["the password is not correct"]
    assert all(
        PASSWORD not in json.dumps(asdict(e)) and "not the password" not in json.dumps(asdict(e)) for e in failures
    )


async def test_approval_by_signature_gets_a_pades_signature_readers_verify(study, real_pdf, system_keys, installation):
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "approval", installation=installation)
    signed = await _file(ICF, "1.0", "pades_signed", installation=installation)
    check = await pades_verify(signed, [system_keys.pades[1]])
    assert check.ok, check.problems
    approved_at = (await signatures.of_version(ICF, "1.0", installation=installation)).signatures[0].instant
    assert (
        -1 < (check.signed_at - datetime.fromisoformat(approved_at.replace("Z", "+00:00"))).total_seconds() < 60
    )  # PDF time: whole seconds
    copy = await _file(ICF, "1.0", "signed_copy", installation=installation)
    assert signed.startswith(copy)  # PAdES is an incremental update of the copy with its signature page


STAMPED_AT = datetime(2026, 11, 27, 9, 30, 5, tzinfo=UTC)  # the authority's clock


@pytest.fixture(scope="module")
def tsa():
    """An RFC 3161 authority on loopback, with its CA's CRL (tests/timestamp_authority.py)."""
    from tests.timestamp_authority import serving

    with serving(STAMPED_AT) as running:
        yield running


def _with_tsa(tmp_path, system_keys, url: str, ca_file=None):
    from trialcoord.kernel.config import load_settings
    from trialcoord.kernel.installation import Installation

    environ = {"TRIALCOORD_DATA_DIR": str(tmp_path / "data"), "TRIALCOORD_TSA_URL": url}
    return Installation(
        load_settings(environ | ({"TRIALCOORD_TSA_CA_FILE": str(ca_file)} if ca_file else {})), system_keys
    )


def _time_stamp_of(signed: bytes) -> tuple[datetime, bool]:
    """The signature's RFC 3161 token, read with asn1crypto: its time, and whether it is over the signature value."""
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        contents = bytes(pdf.Root.AcroForm.Fields[0].V.Contents)
    info = cms.ContentInfo.load(contents)["content"]["signer_infos"][0]
    (token,) = [a["values"][0] for a in info["unsigned_attrs"] if a["type"].native == "signature_time_stamp_token"]
    tst_info = token["content"]["encap_content_info"]["content"].parsed
    imprint = tst_info["message_imprint"]["hashed_message"].native
    return tst_info["gen_time"].native, imprint == hashlib.sha256(info["signature"].native).digest()


async def test_with_a_time_stamp_authority_and_its_ca_the_pades_copy_is_b_lt(
    study, real_pdf, system_keys, tsa, tmp_path
):
    from cryptography.hazmat.primitives import serialization

    ca_file = tmp_path / "tsa-ca.pem"
    ca_file.write_bytes(tsa.authority.root.public_bytes(serialization.Encoding.PEM))
    installation = _with_tsa(tmp_path, system_keys, f"{tsa.url}/tsa", ca_file)
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "approval", installation=installation)
    signed = await _file(ICF, "1.0", "pades_signed", installation=installation)
    assert _time_stamp_of(signed) == (STAMPED_AT, True)  # B-T
    with pikepdf.open(io.BytesIO(signed)) as pdf:  # LT: the TSA's CRL in the DSS, fetched when signing
        assert [bytes(c.read_bytes()) for c in pdf.Root.DSS.CRLs] == [
            tsa.authority.crl.public_bytes(serialization.Encoding.DER)
        ]
    assert (await pades_verify(signed, [system_keys.pades[1]])).ok
    assert signed.startswith(await _file(ICF, "1.0", "signed_copy", installation=installation))


async def test_an_unreachable_time_stamp_authority_stores_no_signed_file_and_says_why(
    study, real_pdf, system_keys, tsa, tmp_path, caplog, installation
):
    from tests.timestamp_authority import closed_port_url

    url = closed_port_url()
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    with caplog.at_level(logging.ERROR, logger="trialcoord.documents.signatures"):
        made = await sign_version(ICF, "1.0", "ivan", "approval", installation=_with_tsa(tmp_path, system_keys, url))
    found = await signatures.of_version(ICF, "1.0", installation=installation)
    assert [s.signature for s in found.signatures] == [made.signature]  # the signature stands
    assert found.files == []  # no B-B copy in place of the B-T asked for, and no half set of files
    (record,) = [r for r in caplog.records if r.name == "trialcoord.documents.signatures"]
    message = record.getMessage()
    assert f"the time-stamp authority {url} (TRIALCOORD_TSA_URL) gave no time-stamp: " in message
    assert "Connect call failed" in message and record.exc_info is None  # one line, no traceback

    # the authority is back: the next attempt makes the files
    await signatures.manifest_safely(ICF, "1.0", _with_tsa(tmp_path, system_keys, f"{tsa.url}/tsa"))
    files = (await signatures.of_version(ICF, "1.0", installation=installation)).files
    assert {f.kind for f in files} == {"signature_page", "signed_copy", "pades_signed"}
    signed = await _file(ICF, "1.0", "pades_signed", installation=installation)
    assert _time_stamp_of(signed) == (STAMPED_AT, True)


async def test_a_docx_version_carries_its_signature_page(study, installation):
    docx = render_docx(
        "consent_form",
        {
            "study_code": "TST-1",
            "study_title": "T",
            "consent_version": "1.0",
            "language": "en",
            "protocol_version": "1.0",
            "sections": [{"heading": "Purpose", "paragraphs": ["Why."]}],
        },
        created_at=AT,
        title="Consent",
        version_label="1.0",
    )
    await documents.add_version(ICF, "040", "1.0", docx, "icf.docx")
    await sign_version(ICF, "1.0", "colin", "authorship", installation=installation)
    copy = await _file(ICF, "1.0", "signed_copy", installation=installation)
    with zipfile.ZipFile(io.BytesIO(copy)) as archive:
        body = archive.read("word/document.xml").decode()
    assert "Signature page" in body and hashlib.sha256(docx).hexdigest() in body and "authorship" in body


async def test_signing_twice_for_one_meaning_or_a_version_no_longer_in_force_is_refused(study, real_pdf, installation):
    await documents.add_version(CV, "087", "1", real_pdf, "cv.pdf")
    await sign_version(CV, "1", "ivan", "authorship", installation=installation)
    with pytest.raises(Conflict, match="already signed"):
        await sign_version(CV, "1", "ivan", "authorship", installation=installation)
    await sign_version(CV, "1", "ivan", "approval", installation=installation)  # another meaning is another signature
    from datetime import date

    for status in ("in_review", "approved", "effective"):  # a CV needs no IRB/IEC approval
        await documents.change_status(CV, "1", status, date(2024, 5, 1))
    await documents.add_version(CV, "087", "2", real_pdf + b"%2", "cv.pdf")
    await sign_version(CV, "2", "ivan", installation=installation)
    for status in ("in_review", "approved", "effective"):
        await documents.change_status(CV, "2", status, date(2024, 6, 1))
    with pytest.raises(InvalidInput, match="superseded: a version no longer in force"):
        await sign_version(CV, "1", "ivan", "review", installation=installation)


async def test_a_revoked_key_keeps_old_signatures_valid_when_made_and_a_new_key_signs_on(study, real_pdf, installation):
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "review", installation=installation)
    first_key = (await signatures.of_version(ICF, "1.0", installation=installation)).signatures[0].key_id
    with pytest.raises(InvalidInput):
        await signer_keys.end_signer_keys("ivan", " ", "admin", installation=installation)
    assert await signer_keys.end_signer_keys("ivan", "laptop lost", "admin", installation=installation) == [first_key]
    await sign_version(ICF, "1.0", "ivan", "approval", installation=installation)
    shown = (await signatures.of_version(ICF, "1.0", installation=installation)).signatures
    assert [(s.meaning, s.verdict) for s in shown] == [("review", "valid when made"), ("approval", "valid")]
    assert shown[1].key_id != first_key
    assert (await verification.verify_all())[1] == []
    registry = await signer_keys.registry(installation)
    signers, system = parse_registry(registry)
    assert signers[first_key].valid_to is not None and signers[first_key].revoked_reason == "laptop lost"
    assert len(system) == 1


async def test_disabling_an_account_ends_its_signing_key(study, real_pdf, installation):
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "review", installation=installation)
    await users.disable_user("ivan", "admin", "left the site", installation=installation)
    signers, _ = parse_registry(await signer_keys.registry(installation))
    assert [k.revoked_reason for k in signers.values()] == ["account disabled"]
    with pytest.raises(InvalidInput, match="disabled"):
        await signing.signing_by_password("ivan", "approval", PASSWORD, rules=account_rules())


async def test_verification_names_an_altered_or_moved_signature(study, db, real_pdf, installation):
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await documents.add_version(ICF, "040", "2.0", real_pdf + b"%2", "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "review", installation=installation)
    await sign_version(ICF, "2.0", "ivan", "approval", installation=installation)
    assert (await verification.verify_all())[1] == []
    value = (await fetch("SELECT value FROM document_signatures WHERE meaning = 'review'"))[0]["value"]
    flipped = ("0" if value[0] != "0" else "1") + value[1:]
    await tamper(db, "UPDATE document_signatures SET value = {} WHERE meaning = 'review'", flipped)
    problems = (await verification.verify_all())[1]
    assert problems == [
        "document Informed consent form (English) at site 101 version 1.0: signature by ivan (review,"
        f" {(await signatures.of_version(ICF, '1.0', installation)).signatures[0].instant}): the signature does not"
        " verify: the statement or the value was altered"
    ]
    await tamper(db, "UPDATE document_signatures SET value = {} WHERE meaning = 'review'", value)
    moved = (await fetch("SELECT id FROM document_versions WHERE label = '1.0'"))[0]["id"]
    await tamper(db, "UPDATE document_signatures SET version = {} WHERE meaning = 'approval'", moved)
    problems = (await verification.verify_all())[1]
    assert len(problems) == 1 and "version 1.0: signature by ivan (approval" in problems[0]
    assert "does not verify" in problems[0]


async def test_the_registry_file_is_written_and_holds_only_public_parts(study, tmp_path, real_pdf, installation):
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "review", installation=installation)
    written = await signer_keys.write_registry(installation, tmp_path)
    document = json.loads(written.read_text())
    assert [s["signer_id"] for s in document["signers"]] == ["ivan"]
    encrypted = (await fetch("SELECT encrypted FROM signer_keys"))[0]["encrypted"]
    assert json.loads(encrypted)["kdf"]["name"] == "scrypt"
    assert "ciphertext" not in written.read_text() and json.loads(encrypted)["ciphertext"] not in written.read_text()
    assert (tmp_path / "pades-certificate.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")


async def test_a_key_or_signature_inserted_behind_the_applications_back_is_named(study, db, real_pdf, installation):
    from trialcoord.accounts.rules.accounts import Meaning
    from trialcoord.documents.rules.signatures import Statement
    from trialcoord.kernel import signing_keys

    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "review", installation=installation)
    rogue = signing_keys.generate_key()
    public, kid = signing_keys.public_key_hex(rogue.public_key()), signing_keys.key_id(rogue.public_key())
    await fetch(
        "INSERT INTO signer_keys (signer_id, printed_name, key_id, public_key, encrypted, valid_from, valid_to)"
        " VALUES ('ivan', 'Ivan', {}, {}, '{{}}', '2020-01-01T00:00:00.000000Z',"
        " '2021-01-01T00:00:00.000000Z')",
        kid,
        public,
    )
    version = (await fetch("SELECT id, sha256 FROM document_versions"))[0]
    at = "2020-06-01T00:00:00.000000Z"
    statement = Statement(version["sha256"], "ivan", Meaning.APPROVAL, at, documents.record_id(ICF, "1.0"))
    await fetch(
        "INSERT INTO document_signatures (version, signer_id, printed_name, meaning, instant, key_id, value)"
        " VALUES ({}, 'ivan', 'Ivan', 'approval', {}, {}, {})",
        version["id"],
        at,
        kid,
        signing_keys.sign_bytes(statement.canonical_bytes(), rogue),
    )
    problems = (await verification.verify_all())[1]
    assert any(f"signing key {kid} of ivan: not the key the audit trail recorded" in p for p in problems), problems
    assert any("signature by ivan (approval, 2020-06-01" in p and "audit trail has no record" in p for p in problems)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE signer_keys SET public_key = 'ab'",
        "DELETE FROM signer_keys",
        "UPDATE documents SET site = '102'",
        "UPDATE document_versions SET expires_on = '2099-01-01'",
    ],
)
async def test_the_database_refuses_to_rewrite_keys_or_documents(study, real_pdf, sql, installation):
    from trialcoord.kernel.database.engine import transaction

    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "review", installation=installation)
    await signer_keys.end_signer_keys(
        "ivan", "rotated", "admin", installation=installation
    )  # ending a key, once, is allowed
    with pytest.raises(Exception, match="never change"):
        async with transaction():
            await fetch(sql)
    with pytest.raises(Exception, match="never change"):
        async with transaction():
            await fetch("UPDATE signer_keys SET valid_to = '2030-01-01T00:00:00.000000Z'")  # ended keys stay ended


async def test_a_signer_without_the_right_cannot_sign_from_any_door(study, real_pdf, installation):
    from trialcoord.kernel.problems import Forbidden

    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await add_user("sam", ("sponsor", "TST-1", None))
    from trialcoord.scheduling import sites

    await sites.create_site("TST-1", "102", "Lakeside", "America/Chicago")
    await add_user("colin", ("coordinator", "TST-1", "102"))
    await add_user("mona", ("monitor", "TST-1", None))
    for user, meaning in (("sam", "review"), ("colin", "approval"), ("mona", "approval")):
        with pytest.raises(Forbidden):
            await signatures.sign(
                ICF,
                "1.0",
                await signing.signing_by_password(user, meaning, PASSWORD, rules=account_rules()),
                installation=installation,
            )
    with pytest.raises(NotFound, match="no document"):  # a draft is not a monitor's to see, nor to sign
        await signatures.sign(
            ICF,
            "1.0",
            await signing.signing_by_password("mona", "review", PASSWORD, rules=account_rules()),
            installation=installation,
        )
    letter = DocumentKey("TST-1", "101", "IRB approval")
    await documents.add_version(letter, "066", "1", real_pdf + b"%letter", "letter.pdf")
    await documents.change_status(ICF, "1.0", "in_review", date(2026, 1, 5))
    await sign_version(ICF, "1.0", "ivan", "approval", installation=installation)
    approval = IrbApproval("IRB-1", date(2026, 1, 5), hashlib.sha256(real_pdf + b"%letter").hexdigest())
    await documents.change_status(ICF, "1.0", "approved", date(2026, 1, 5), approval=approval)
    made = await signatures.sign(
        ICF,
        "1.0",
        await signing.signing_by_password("mona", "review", PASSWORD, rules=account_rules()),
        installation=installation,
    )
    assert made.meaning == "review"


async def test_equal_bytes_filed_twice_do_not_share_signatures(study, db, real_pdf, installation):
    other = DocumentKey("TST-1", "101", "ICF copy")
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await documents.add_version(other, "040", "1.0", real_pdf, "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "approval", installation=installation)
    versions = await fetch("SELECT v.id, d.name FROM document_versions v JOIN documents d ON d.id = v.document")
    copy = next(v["id"] for v in versions if v["name"] == "ICF copy")
    await tamper(
        db,
        "INSERT INTO document_signatures (version, signer_id, printed_name, meaning, instant, key_id,"
        " value) SELECT {}, signer_id, printed_name, meaning, instant, key_id, value"
        " FROM document_signatures",
        copy,
    )
    problems = (await verification.verify_all())[1]
    assert len(problems) == 1 and "document ICF copy" in problems[0] and "does not verify" in problems[0]


async def test_a_manifestation_that_fails_leaves_the_signature_and_is_made_later(
    study, real_pdf, monkeypatch, installation
):
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")

    def broken(*args, **kwargs):
        raise RuntimeError("renderer down")

    import trialcoord.kernel.render.pdf_documents as rendering

    real = rendering.render_pdf
    monkeypatch.setattr(rendering, "render_pdf", broken)
    made = await sign_version(
        ICF, "1.0", "ivan", "review", installation=installation
    )  # no error: the signature is stored
    assert made.meaning == "review" and (await signatures.of_version(ICF, "1.0", installation=installation)).files == []
    monkeypatch.setattr(rendering, "render_pdf", real)
    await signatures.manifest_safely(ICF, "1.0", installation=installation)
    assert {f.kind for f in (await signatures.of_version(ICF, "1.0", installation=installation)).files} == {
        "signature_page",
        "signed_copy",
    }


async def test_an_older_registry_never_replaces_a_newer_one(study, tmp_path, real_pdf, monkeypatch, installation):
    await documents.add_version(ICF, "040", "1.0", real_pdf, "icf.pdf")
    await sign_version(ICF, "1.0", "ivan", "review", installation=installation)
    written = await signer_keys.write_registry(installation, tmp_path)
    newer = json.loads(written.read_text())
    newer["generated_at"] = "2999-01-01T00:00:00.000000Z"  # as another process published later
    written.write_text(json.dumps(newer))
    await signer_keys.write_registry(installation, tmp_path)
    assert json.loads(written.read_text())["generated_at"] == "2999-01-01T00:00:00.000000Z"
