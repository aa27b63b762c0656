"""The regulatory binder: the site's expected-documents checklist, and the signed export checked offline
with only the public registry; on SQLite and PostgreSQL, and through the commands."""

from __future__ import annotations

import asyncio
import hashlib
import json
import zipfile
from datetime import date

import pytest
from lxml import etree

from tests.conftest import LONG_AGO, PASSWORD, account_rules, add_user, sign_version
from tests.integration.test_signatures import AT, COVER
from tests.unit.test_ems_exchange import CONFORMANCE, OFFICIAL, errors, relaxed_official, schema
from trialcoord.accounts import signer_keys, signing, users
from trialcoord.documents import binder_checklist, binder_contents, binder_export, documents, signatures
from trialcoord.documents.package_verification import verify_package
from trialcoord.documents.rules.documents import DocumentKey, IrbApproval
from trialcoord.kernel import audit_log, audit_store
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.render.pdf_documents import render_pdf

pytestmark = pytest.mark.anyio
TODAY = date(2026, 11, 27)
ICF = DocumentKey("TST-1", "101", "ICF English")
LETTER = DocumentKey("TST-1", "101", "IRB approval ICF 1.0")
NOW = "2026-11-27T12:00:00.000000Z"


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return render_pdf("binder_cover", COVER, created_at=AT, title="Doc", version_label="1")


def with_data_dir(tmp_path, keys) -> Installation:
    from trialcoord.kernel.config import load_settings

    return Installation(load_settings({"TRIALCOORD_DATA_DIR": str(tmp_path / "data")}), keys)


async def effective(key, artifact, label, data, on, person=None, expires_on=None, approval=None, *, installation):
    await documents.add_version(key, artifact, label, data, "file.pdf", person=person, expires_on=expires_on)
    await documents.change_status(key, label, "in_review", on)
    await sign_version(key, label, "ivan", installation=installation)
    await documents.change_status(key, label, "approved", on, approval=approval)
    await documents.change_status(key, label, "effective", on)


@pytest.fixture
async def filed(study, pdf, installation):
    """Site 101 with ivan (investigator) and cora (coordinator); ivan's CV, a licence expiring within 60
    days, an effective consent form with its approval letter, and a superseded earlier form."""
    await add_user("ivan", ("investigator", "TST-1", "101"), printed_name="Dr. Ivan Investigator")
    await add_user("cora", ("coordinator", "TST-1", "101"))
    await documents.add_version(LETTER, "066", "1", pdf + b"%letter", "letter.pdf")
    letter = hashlib.sha256(pdf + b"%letter").hexdigest()
    for label, day in (("1.0", date(2026, 1, 5)), ("2.0", date(2026, 6, 1))):
        await effective(
            ICF,
            "040",
            label,
            pdf + label.encode(),
            day,
            approval=IrbApproval(f"IRB-{label}", day, letter),
            installation=installation,
        )
    await effective(
        DocumentKey("TST-1", "101", "CV Ivan"),
        "087",
        "2026",
        pdf + b"%cv",
        date(2026, 2, 1),
        "ivan",
        installation=installation,
    )
    await effective(
        DocumentKey("TST-1", "101", "Licence Ivan"),
        "090",
        "2026",
        pdf + b"%lic",
        date(2026, 2, 1),
        "ivan",
        expires_on=date(2027, 1, 10),
        installation=installation,
    )
    return letter


async def test_the_checklist_lists_present_missing_expiring_and_expired(filed):
    items = await binder_checklist.site_checklist("TST-1", "101", TODAY)
    states = {(i.artifact.unique_id, i.person or i.consent_version): i.state for i in items}
    assert states == {
        ("087", "ivan"): "present",
        ("090", "ivan"): "expiring",
        ("104", "cora"): "missing",
        ("104", "ivan"): "missing",
        ("091", None): "missing",
        ("101", None): "missing",
        ("066", "2.0"): "present",
        ("160", None): "missing",
    }
    later = await binder_checklist.site_checklist("TST-1", "101", date(2027, 1, 11))
    assert [i.state for i in later if i.artifact.unique_id == "090"] == ["expired"]


async def test_the_export_holds_every_version_signed_and_verifies_offline(filed, tmp_path, installation):
    out = tmp_path / "binder.zip"
    manifest = await binder_export.export("TST-1", "101", out, "cora", installation=installation)
    versions = [f for f in manifest["files"] if f["kind"] == "version"]
    assert sorted((f["document"], f["label"], f["status"]) for f in versions) == [
        ("CV Ivan", "2026", "effective"),
        ("ICF English", "1.0", "superseded"),
        ("ICF English", "2.0", "effective"),
        ("IRB approval ICF 1.0", "1", "draft"),
        ("Licence Ivan", "2026", "effective"),
    ]
    icf = next(f for f in versions if f["label"] == "2.0")
    assert icf["path"].startswith("binder/02 Central Trial Documents/02.02 Subject Documentation/02.02.03 Informed")
    assert [s["meaning"] for s in icf["signatures"]] == ["approval"]
    kinds = {f["kind"] for f in manifest["files"]}
    assert kinds == {"version", "signature_page", "pades_signed"}
    registry = await signer_keys.registry(installation)
    report = verify_package(out, registry, now=NOW)
    assert report.ok, report.problems
    assert report.signatures_checked == 4
    with zipfile.ZipFile(out) as archive:
        assert {"manifest.json", "manifest.json.sig", "exchange.xml", "index.pdf", "registry.json"} <= set(
            archive.namelist()
        )
        assert archive.read("index.pdf").startswith(b"%PDF")
    exported = await audit_log.export_rows(audit_store.AuditFilter(record_type="binder"), 5)
    assert [(e.actor, e.record_id, e.new["files"]) for e in exported] == [
        ("cora", "TST-1/101", 13)
    ]  # 5 versions; 4 signed: a page and a PAdES copy each


async def test_a_changed_member_or_a_moved_signature_in_an_export_is_named(filed, tmp_path, installation):
    out = tmp_path / "binder.zip"
    manifest = await binder_export.export("TST-1", "101", out, "cora", installation=installation)
    registry = await signer_keys.registry(installation)
    target = next(f["path"] for f in manifest["files"] if f["kind"] == "version" and f["label"] == "2.0")
    with zipfile.ZipFile(out) as source:
        members = {name: source.read(name) for name in source.namelist()}
    altered = dict(members)
    altered[target] = members[target][:-10] + b"%tampered\n"
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        for name, data in altered.items():
            archive.writestr(name, data)
    problems = verify_package(broken, registry, now=NOW).problems
    assert any(target in p and "SHA-256" in p for p in problems), problems


async def test_an_unchanged_binder_reuses_its_index(filed, tmp_path, monkeypatch, system_keys):
    installation = with_data_dir(tmp_path, system_keys)  # whose data directory holds the render cache
    await binder_export.export("TST-1", "101", tmp_path / "one.zip", "cora", installation=installation)
    rendered = []
    monkeypatch.setattr("trialcoord.kernel.render.cache.render_pdf", lambda *a, **k: rendered.append(a) or b"")
    await binder_export.export("TST-1", "101", tmp_path / "two.zip", "cora", installation=installation)
    assert rendered == []  # a cache hit: nothing re-rendered
    with zipfile.ZipFile(tmp_path / "one.zip") as one, zipfile.ZipFile(tmp_path / "two.zip") as two:
        assert one.read("index.pdf") == two.read("index.pdf")


async def test_the_commands_sign_export_and_verify_a_binder(study, db, tmp_path, pdf):
    from tests.integration.test_cli import run

    env = {
        "TRIALCOORD_DATABASE_URL": db.url,
        "TRIALCOORD_DATA_DIR": str(tmp_path / "data"),
        "TRIALCOORD_SIGNATURES_DIR": str(tmp_path / "signatures"),
    }
    (tmp_path / "signatures").mkdir()
    assert run("setup", "--no-demo", env=env).returncode == 0
    assert run("signatures", "publish", env=env).returncode == 0  # kept current from now on: it is this one's
    await users.create_user("ivan", "Dr. Ivan", "ivan@example.org", PASSWORD, "admin", rules=account_rules())
    await users.grant("ivan", "investigator", "TST-1", "101", LONG_AGO, None, "admin")
    file = tmp_path / "cv.pdf"
    file.write_bytes(pdf)
    assert (
        run(
            "document",
            "add",
            "TST-1",
            "CV Ivan",
            str(file),
            "--label",
            "1",
            "--artifact",
            "087",
            "--site",
            "101",
            env=env,
        ).returncode
        == 0
    )
    wrong = run(
        "document",
        "sign",
        "TST-1",
        "CV Ivan",
        "1",
        "--meaning",
        "approval",
        "--user",
        "ivan",
        "--site",
        "101",
        env=env,
        input="not the password\n",
    )
    assert wrong.returncode == 2 and "password is not correct" in wrong.stderr
    await asyncio.sleep(1.05)  # a wrong password delays the next attempt by a second
    signed = run(
        "document",
        "sign",
        "TST-1",
        "CV Ivan",
        "1",
        "--meaning",
        "approval",
        "--user",
        "ivan",
        "--site",
        "101",
        env=env,
        input=PASSWORD + "\n",
    )
    assert signed.returncode == 0, signed.stderr
    assert "signed by Dr. Ivan (ivan) for approval" in signed.stdout
    registry = json.loads((tmp_path / "signatures" / "registry.json").read_text())
    assert [s["signer_id"] for s in registry["signers"]] == ["ivan"]
    checklist = run("binder", "checklist", "TST-1", "--site", "101", "--as-of", "2026-11-27", env=env)
    assert "missing\t05.02.08 Form FDA 1572" in checklist.stdout
    report = run("binder", "checklist", "TST-1", "--site", "101", "--pdf", str(tmp_path / "checklist.pdf"), env=env)
    assert report.returncode == 0 and (tmp_path / "checklist.pdf").read_bytes().startswith(b"%PDF")
    out = tmp_path / "binder.zip"
    exported = run("binder", "export", "TST-1", "--site", "101", "--out", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    assert run("verify", env=env).returncode == 0
    ok = run("verify", str(out), env=env)
    assert ok.returncode == 0 and "1 signatures verify" in ok.stdout, ok.stderr
    raw = bytearray(out.read_bytes())
    raw[200] ^= 0xFF  # inside the first member's bytes
    (tmp_path / "flipped.zip").write_bytes(bytes(raw))
    flipped = run("verify", str(tmp_path / "flipped.zip"), env=env)
    assert flipped.returncode == 1 and "flipped.zip" in flipped.stderr
    unknown = run("signer", "revoke", "nobody", "--reason", "x", env=env)
    assert unknown.returncode == 2 and "no user nobody" in unknown.stderr
    revoked = run("signer", "revoke", "IVAN", "--reason", "laptop stolen", env=env)  # user IDs are case-blind
    assert revoked.returncode == 0 and "stay valid when made" in revoked.stdout
    registry = json.loads((tmp_path / "signatures" / "registry.json").read_text())
    assert registry["signers"][0]["revoked_reason"] == "laptop stolen"
    assert run("verify", str(out), env=env).returncode == 0  # the signature was valid when made
    missing = run("binder", "export", "TST-1", "--site", "999", "--out", str(tmp_path / "x.zip"), env=env)
    assert missing.returncode == 2 and "no site 999" in missing.stderr and not (tmp_path / "x.zip").exists()


async def test_a_re_export_takes_unchanged_files_from_the_last_export_and_a_damaged_copy_from_the_database(
    filed, tmp_path, monkeypatch, pdf, installation
):
    from trialcoord.documents import store as documents_store

    installation = with_data_dir(tmp_path, installation.keys())  # whose data directory keeps the last export
    first = await binder_export.export("TST-1", "101", tmp_path / "one.zip", "cora", installation=installation)
    kept = binder_contents.kept_export(installation.data_dir, "TST-1", "101", [], None)
    assert kept.exists()
    asked = []
    real = documents_store.blobs

    async def counting(sha256s):
        asked.extend(sha256s)
        return await real(sha256s)

    monkeypatch.setattr(documents_store, "blobs", counting)
    await documents.add_version(DocumentKey("TST-1", "101", "CV Ivan"), "087", "2027", pdf + b"%cv2", "cv.pdf")
    second = await binder_export.export("TST-1", "101", tmp_path / "two.zip", "cora", installation=installation)
    assert asked == [hashlib.sha256(pdf + b"%cv2").hexdigest()]  # only the new version came from the database
    assert len(second["files"]) == len(first["files"]) + 1
    report = verify_package(tmp_path / "two.zip", await signer_keys.registry(installation), now=NOW)
    assert report.ok, report.problems
    raw = bytearray(kept.read_bytes())
    raw[300] ^= 0xFF  # the kept copy is damaged: its bytes fail their CRC, the database is read instead
    kept.write_bytes(bytes(raw))
    asked.clear()
    await binder_export.export("TST-1", "101", tmp_path / "three.zip", "cora", installation=installation)
    assert asked and verify_package(tmp_path / "three.zip", await signer_keys.registry(installation), now=NOW).ok


async def test_names_that_meet_at_one_path_stay_apart_and_subject_logs_follow_the_personal_data_grant(
    filed, tmp_path, pdf, installation
):
    for name in ("Lab cert: 2026", "Lab cert_ 2026", "lab cert: 2026"):  # one path once made safe; equal bytes
        await documents.add_version(DocumentKey("TST-1", "101", name), "160", "1", pdf + b"%cert", "cert.pdf")
    await documents.add_version(DocumentKey("TST-1", "101", "Subject log"), "105", "1", pdf + b"%log", "log.pdf")
    without = await binder_export.export(
        "TST-1", "101", tmp_path / "a.zip", "cora", personal_at=lambda site: False, installation=installation
    )
    paths = [f["path"] for f in without["files"]]
    assert len([p for p in paths if "ab cert" in p]) == 3 and len({p.casefold() for p in paths}) == len(paths)
    assert not any(f["document"] == "Subject log" for f in without["files"])
    with_log = await binder_export.export(
        "TST-1", "101", tmp_path / "b.zip", "cora", personal_at=lambda site: site == "101", installation=installation
    )
    assert any(f["document"] == "Subject log" for f in with_log["files"])
    assert verify_package(tmp_path / "b.zip", await signer_keys.registry(installation), now=NOW).ok


async def test_verify_refuses_to_trust_a_package_without_the_sites_registry(filed, db, tmp_path, installation):
    from tests.integration.test_cli import run

    await binder_export.export("TST-1", "101", tmp_path / "binder.zip", "cora", installation=installation)
    env = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_SIGNATURES_DIR": str(tmp_path / "none")}
    refused = run("verify", str(tmp_path / "binder.zip"), env=env)
    assert refused.returncode == 2 and "no signer registry to trust" in refused.stderr
    (tmp_path / "registry.json").write_text(json.dumps(await signer_keys.registry(installation)))
    trusted = run("verify", str(tmp_path / "binder.zip"), "--registry", str(tmp_path / "registry.json"), env=env)
    assert trusted.returncode == 0, trusted.stderr
    other = dict(await signer_keys.registry(installation))
    other["system_keys"] = [{**other["system_keys"][0], "public_key": "00" * 32}]
    (tmp_path / "other.json").write_text(json.dumps(other))
    forged = run("verify", str(tmp_path / "binder.zip"), "--registry", str(tmp_path / "other.json"), env=env)
    assert forged.returncode == 1 and "manifest.json.sig" in forged.stderr


async def test_an_expired_approval_letter_is_expired_however_often_it_is_filed(study, pdf, installation):
    letter_key = DocumentKey("TST-1", "101", "IRB continuing review")
    await add_user("ivan", ("investigator", "TST-1", "101"))
    await documents.add_version(letter_key, "066", "1", pdf + b"%review", "review.pdf", expires_on=date(2026, 10, 1))
    letter = hashlib.sha256(pdf + b"%review").hexdigest()
    await effective(
        ICF,
        "040",
        "1.0",
        pdf + b"%icf",
        date(2026, 1, 5),
        approval=IrbApproval("IRB-1", date(2026, 1, 5), letter),
        installation=installation,
    )
    states = [i.state for i in await binder_checklist.site_checklist("TST-1", "101", TODAY) if i.consent_version]
    assert states == ["expired"]


async def test_site_staff_sign_the_protocol_for_review_but_only_the_study_approves_it(study, pdf, installation):
    from trialcoord.kernel.problems import Forbidden

    protocol = DocumentKey("TST-1", None, "Protocol")
    await documents.add_version(protocol, "032", "2.0", pdf + b"%protocol", "protocol.pdf")
    await add_user("ivan", ("investigator", "TST-1", "101"))
    for meaning in ("review", "responsibility"):
        made = await signatures.sign(
            protocol,
            "2.0",
            await signing.signing_by_password("ivan", meaning, PASSWORD, rules=account_rules()),
            installation=installation,
        )
        assert made.meaning == meaning and made.record == "TST-1/documents/Protocol/2.0"
    with pytest.raises(Forbidden, match="may not sign Protocol for approval"):
        await signatures.sign(
            protocol,
            "2.0",
            await signing.signing_by_password("ivan", "approval", PASSWORD, rules=account_rules()),
            installation=installation,
        )
    await add_user("ada", ("administrator", None, None))
    assert (await sign_version(protocol, "2.0", "ada", installation=installation)).meaning == "approval"


async def test_the_export_exchange_xml_is_an_ems_batch_with_the_trail_as_audit_records(filed, tmp_path, installation):
    out = tmp_path / "binder.zip"
    await binder_export.export("TST-1", "101", out, "cora", installation=installation)
    with zipfile.ZipFile(out) as archive:
        xml = archive.read("exchange.xml")
    assert errors(schema(CONFORMANCE), xml) == []
    if OFFICIAL:  # the official file with the cardinalities docs/documents.md names relaxed
        assert errors(relaxed_official(), xml) == []
    e = "{https://tmfrefmodel.com/ems}"
    found = {
        (o.findtext(f"{e}OBJECTTITLE"), o.findtext(f"{e}OBJECTVERSION")): o
        for o in etree.fromstring(xml).iter(f"{e}OBJECT")
    }
    assert len(found) == 5  # one OBJECT per version
    states = {k: (o.findtext(f"{e}OBJECTVERSIONSTATE"), o.findtext(f"{e}METADATA")) for k, o in found.items()}
    assert states[("ICF English", "1.0")] == ("Superseded", "superseded")
    assert states[("ICF English", "2.0")] == ("Current", "effective")
    assert states[("IRB approval ICF 1.0", "1")] == ("Current", "draft")
    icf = found[("ICF English", "2.0")]
    assert [f.findtext(f"{e}FILEDESCRIPTION").split(":")[0] for f in icf.iter(f"{e}FILE")] == [
        "Record",
        "Signature page",
        "PAdES copy",
    ]
    trail = await audit_log.export_rows(
        audit_store.AuditFilter(record_type="document_version", record_id="TST-1/101/documents/ICF English/2.0"), 50
    )
    audit = [[c.text for c in a] for a in icf.iter(f"{e}AUDITRECORD")]
    assert [a[:3] for a in audit] == [[str(t.sequence), t.recorded_at, t.actor] for t in trail]
    assert [(a[3], a[4]) for a in audit] == [
        ("New", "create: draft"),
        ("Change", "update: in_review"),
        ("Other", "sign: approval"),
        ("Change", "update: approved"),
        ("Change", "update: effective"),
    ]
    (signed,) = icf.iter(f"{e}SIGNATURE")
    assert [c.text for c in signed][:3] == ["Digital", "ivan", "Dr. Ivan Investigator"]
