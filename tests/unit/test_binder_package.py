"""The binder package: written deterministically, verified offline, and every kind of tampering named."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest

from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.accounts.rules.signers import SignerKey, registry_document
from trialcoord.documents import package_exchange, package_layout, package_verification, package_writing
from trialcoord.documents.rules.signatures import Signature, Statement
from trialcoord.documents.rules.tmf import artifact
from trialcoord.kernel import signing_keys as sk
from trialcoord.kernel.rules.audit_entries import canonical_json

GENERATED = "2026-03-01T12:00:00.000000Z"
NOW = "2026-03-02T00:00:00.000000Z"
SIGNED_AT = "2025-06-01T09:30:00.000000Z"
KEY_FROM = "2024-01-01T00:00:00.000000Z"
OPENSSL = "/usr/bin/openssl"

SIGNER = sk.generate_key()
SYSTEM = sk.generate_key()
SIGNER_ID = sk.key_id(SIGNER.public_key())


def registry(valid_to: str | None = None, system=SYSTEM) -> dict:
    signer = SignerKey(
        "u-pi",
        "Dr Ana Müller",
        SIGNER_ID,
        sk.public_key_hex(SIGNER.public_key()),
        KEY_FROM,
        valid_to,
        "left the site" if valid_to else None,
    )
    system_key = {
        "key_id": sk.key_id(system.public_key()),
        "public_key": sk.public_key_hex(system.public_key()),
        "purpose": "manifests and audit checkpoints",
        "valid_from": KEY_FROM,
    }
    return registry_document([signer], [system_key], GENERATED)


def signature(data: bytes, instant: str = SIGNED_AT, meaning: Meaning = Meaning.APPROVAL, record: str = "") -> dict:
    statement = Statement(hashlib.sha256(data).hexdigest(), "u-pi", meaning, instant, record)
    return Signature(
        statement, "Dr Ana Müller", SIGNER_ID, sk.sign_bytes(statement.canonical_bytes(), SIGNER)
    ).as_dict()


def package_file(
    uid: str,
    document: str,
    label: str,
    name: str,
    data: bytes,
    *,
    kind: str = "version",
    media_type: str = "application/pdf",
    signed_at: str | None = SIGNED_AT,
) -> package_layout.PackageFile:
    art = artifact(uid)
    meta = {
        "study": "TST-1",
        "site": "S01",
        "document": document,
        "label": label,
        "status": "effective",
        "status_history": [{"status": "effective", "at": "2025-05-01T00:00:00.000000Z"}],
        "effective_on": "2025-05-01",
        "author": "u-pi",
        "created_at": "2025-04-30T10:00:00.000000Z",
        "artifact": {"unique_id": art.unique_id, "number": art.number, "name": art.name},
        "kind": kind,
    }
    if kind == "version":
        record = f"TST-1/S01/documents/{document}/{label}"  # what trialcoord.documents.rules.documents.record_id names
        meta["signatures"] = [signature(data, signed_at, record=record)] if signed_at else []
    path = package_layout.binder_path(art, "S01", document, label, name, kind)
    return package_layout.PackageFile(path, hashlib.sha256(data).hexdigest(), len(data), media_type, lambda: data, meta)


CV = b"%PDF-1.7 curriculum vitae of Dr Muller\n%%EOF\n"
CV_OLD = b"%PDF-1.7 curriculum vitae of Dr Muller, 2023\n%%EOF\n"
LOG = b"date,person,task\n" * 50


def files(signed_at: str = SIGNED_AT) -> list[package_layout.PackageFile]:
    return [
        package_file("087", "CV Dr Müller", "2025", "cv.pdf", CV, signed_at=signed_at),
        package_file("087", "CV Dr Müller", "2023", "cv.pdf", CV_OLD, signed_at=signed_at),
        package_file("101", "Delegation log", "v3", "log.csv", LOG, media_type="text/csv"),
        package_file("085", "Protocol signature page", "v1", "protocol.pdf", b"%PDF-1.7 page\n", kind="signature_page"),
    ]


def write(out, items=None, reg=None) -> dict:
    return package_writing.write_package(
        out,
        files() if items is None else items,
        index_pdf=b"%PDF-1.7 index\n",
        registry=reg or registry(),
        manifest_key=SYSTEM,
        generated_at=GENERATED,
        scope={"study": "TST-1", "site": "S01"},
    )


@pytest.fixture
def package(tmp_path) -> Path:
    path = tmp_path / "binder.zip"
    write(path)
    return path


def rewritten(source: Path, target: Path, changes: dict[str, bytes]) -> Path:
    """A copy of the ZIP with the named members' bytes replaced (or added), CRCs made consistent."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, changes.pop(info.filename, None) or old.read(info.filename))
        for name, data in changes.items():
            new.writestr(name, data)
    return target


def manifest_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(package_layout.MANIFEST))


def resigned(manifest: dict) -> dict[str, bytes]:
    """A changed manifest signed again with the real system key: only deeper checks can catch it."""
    data = canonical_json(manifest)
    return {package_layout.MANIFEST: data, package_layout.SIGNATURE: SYSTEM.sign(data)}


def problems_of(path, reg=None) -> tuple[str, ...]:
    return package_verification.verify_package(path, reg or registry(), now=NOW).problems


# --- paths -------------------------------------------------------------------------------------------


def test_a_binder_path_follows_the_tmf_folders_and_keeps_unicode_letters():
    path = package_layout.binder_path(artifact("087"), "S01", "CV Dr Müller", "v1", "Lebenslauf Müller.pdf", "version")
    assert path == (
        "binder/05 Site Management/05.02 Site Set-up/05.02.04 Principal investigator CV/S01/"
        "CV Dr Müller/v1/Lebenslauf Müller.pdf"
    )
    study_level = package_layout.binder_path(artifact("032"), None, "Protocol", "2.0", "p.pdf", "version")
    assert study_level.split("/")[4] == "study"


def test_a_binder_path_replaces_what_is_unsafe_in_file_names():
    path = package_layout.binder_path(
        artifact("101"), "S/01", 'a\\b:c*d?"e<f>g|h', "v1\x00\n", "../../etc/passwd", "version"
    )
    parts = path.split("/")
    assert len(parts) == 8 and parts[4] == "S_01" and parts[5] == "a_b_c_d__e_f_g_h" and parts[6] == "v1__"
    assert parts[7] == "_.._etc_passwd" and ".." not in parts


def test_extra_kinds_get_a_suffix_and_unknown_kinds_are_refused():
    folder = (artifact("085"), "S01", "Protocol signature page", "v1")
    assert package_layout.binder_path(*folder, "protocol.pdf", "signature_page").endswith(
        "/protocol.signature-page.pdf"
    )
    assert package_layout.binder_path(*folder, "protocol.docx", "pades_signed").endswith("/protocol.signed.pdf")
    with pytest.raises(ValueError, match="kind"):
        package_layout.binder_path(*folder, "protocol.pdf", "draft")


# --- writing -----------------------------------------------------------------------------------------


def test_a_package_verifies_clean_against_the_site_registry(package):
    report = package_verification.verify_package(package, registry(), now=NOW)
    assert report.ok, report.problems
    assert (report.files_checked, report.signatures_checked, report.valid_when_made) == (4, 3, 0)
    assert report.trust == "the given signer registry"
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        assert set(package_layout.FIXED) <= names and len(names) == len(package_layout.FIXED) + 4
        kinds = {i.filename.rsplit(".", 1)[-1]: i.compress_type for i in archive.infolist()}
        assert kinds["pdf"] == zipfile.ZIP_STORED and kinds["csv"] == kinds["json"] == zipfile.ZIP_DEFLATED
        assert {i.date_time for i in archive.infolist()} == {(2026, 3, 1, 12, 0, 0)}
        assert len(archive.read(package_layout.SIGNATURE)) == 64
        assert json.loads(archive.read(package_layout.REGISTRY)) == registry()
    manifest = manifest_of(package)
    assert manifest["format"] == "trialcoord-binder-manifest/1" and manifest["scope"] == {
        "study": "TST-1",
        "site": "S01",
    }
    assert manifest["manifest_key_id"] == sk.key_id(SYSTEM.public_key())
    assert manifest["index"]["path"] == "index.pdf" and manifest["registry"]["path"] == "registry.json"
    cv = next(f for f in manifest["files"] if f["label"] == "2025")
    assert cv["sha256"] == hashlib.sha256(CV).hexdigest() and cv["artifact"]["unique_id"] == "087"


def test_the_same_inputs_give_the_same_zip_bytes(tmp_path):
    first, second = io.BytesIO(), io.BytesIO()
    assert write(first) == write(second)
    assert first.getvalue() == second.getvalue()
    write(tmp_path / "a.zip")
    assert (tmp_path / "a.zip").read_bytes() == first.getvalue()


def test_a_stream_that_cannot_seek_still_gets_a_valid_package():
    class Pipe(io.RawIOBase):  # like an HTTP response body: write only
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, chunk):
            self.data += chunk
            return len(chunk)

    pipe = Pipe()
    write(pipe)
    assert package_verification.verify_package(io.BytesIO(bytes(pipe.data)), registry(), now=NOW).ok


def test_bytes_that_are_not_the_stated_version_are_never_signed(tmp_path):
    good = files()[0]
    bad = package_layout.PackageFile(good.path, good.sha256, good.size, good.media_type, lambda: CV + b"x", good.meta)
    with pytest.raises(ValueError, match="not the version stated"):
        write(tmp_path / "bad.zip", [bad])


def test_duplicate_and_reserved_paths_are_refused(tmp_path):
    one = files()[0]
    with pytest.raises(ValueError, match="two package files"):
        write(io.BytesIO(), [one, one])
    reserved = package_layout.PackageFile("manifest.json", one.sha256, one.size, one.media_type, one.load, one.meta)
    with pytest.raises(ValueError, match="reserved"):
        write(io.BytesIO(), [reserved])


# --- tampering ---------------------------------------------------------------------------------------


def test_a_changed_member_is_named(package, tmp_path):
    path = files()[0].path
    problems = problems_of(rewritten(package, tmp_path / "t.zip", {path: CV.replace(b"Muller", b"Miller")}))
    assert len(problems) == 1 and problems[0].startswith(f"{path}: SHA-256") and "altered" in problems[0]


def test_a_flipped_byte_in_the_archive_is_a_crc_problem_not_a_traceback(package, tmp_path):
    path = files()[0].path
    data = bytearray(package.read_bytes())
    with zipfile.ZipFile(package) as archive:
        info = archive.getinfo(path)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # the stored PDF's bytes
    assert data[start : start + 8] == b"%PDF-1.7"
    data[start + 3] ^= 0x01
    (tmp_path / "flipped.zip").write_bytes(bytes(data))
    problems = problems_of(tmp_path / "flipped.zip")
    assert len(problems) == 1 and problems[0].startswith(f"{path}: unreadable") and "CRC" in problems[0]


def test_a_garbled_archive_is_a_problem_not_a_traceback(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 this is not a package")
    report = package_verification.verify_package(tmp_path / "junk.zip", registry(), now=NOW)
    assert not report.ok and report.problems[0].startswith("archive: not a readable ZIP")


def test_a_manifest_rewritten_under_the_old_signature_is_detected(package, tmp_path):
    manifest = manifest_of(package)
    manifest["files"][0]["status"] = "superseded"
    problems = problems_of(rewritten(package, tmp_path / "t.zip", {package_layout.MANIFEST: canonical_json(manifest)}))
    assert problems == (
        "manifest.json.sig: does not verify under system key"
        f" {manifest['manifest_key_id']}: manifest.json or its signature was altered",
    )


def test_a_flipped_manifest_signature_is_detected(package, tmp_path):
    with zipfile.ZipFile(package) as archive:
        sig = bytearray(archive.read(package_layout.SIGNATURE))
    sig[10] ^= 0x80
    problems = problems_of(rewritten(package, tmp_path / "t.zip", {package_layout.SIGNATURE: bytes(sig)}))
    assert len(problems) == 1 and problems[0].startswith("manifest.json.sig: does not verify")


def test_an_altered_signature_value_is_caught_by_the_signature_check(package, tmp_path):
    manifest = manifest_of(package)
    entry = next(f for f in manifest["files"] if f.get("signatures"))
    value = entry["signatures"][0]["signature"]
    entry["signatures"][0]["signature"] = ("0" if value[0] != "0" else "1") + value[1:]
    problems = problems_of(rewritten(package, tmp_path / "t.zip", resigned(manifest)))
    assert len(problems) == 1
    assert problems[0].startswith(f"{entry['path']}: signature by u-pi (Dr Ana Müller, approval)")
    assert "does not verify" in problems[0]


def test_a_signature_moved_from_another_version_is_caught(package, tmp_path):
    manifest = manifest_of(package)
    new, old = (next(f for f in manifest["files"] if f.get("label") == label) for label in ("2025", "2023"))
    new["signatures"] = old["signatures"]  # a genuine signature, of the 2023 version
    problems = problems_of(rewritten(package, tmp_path / "t.zip", resigned(manifest)))
    assert len(problems) == 1 and problems[0].startswith(f"{new['path']}: signature by u-pi")
    assert "states the record 'TST-1/S01/documents/CV Dr Müller/2023'" in problems[0]  # copied from the 2023 entry


def test_an_unlisted_member_is_detected(package, tmp_path):
    extra = {"binder/": b"", "binder/extra.pdf": b"%PDF-1.7 smuggled"}  # a folder entry alone is harmless
    problems = problems_of(rewritten(package, tmp_path / "t.zip", extra))
    assert problems == ("binder/extra.pdf: in the archive but not listed in the manifest",)


def test_a_missing_member_is_detected(package, tmp_path):
    path = files()[2].path
    with zipfile.ZipFile(package) as old, zipfile.ZipFile(tmp_path / "t.zip", "w") as new:
        for info in old.infolist():
            if info.filename != path:
                new.writestr(info, old.read(info))
    assert problems_of(tmp_path / "t.zip") == (f"{path}: listed in the manifest but missing from the package",)


def test_an_exchange_xml_that_disagrees_with_the_manifest_is_detected(package, tmp_path):
    log = next(f for f in files() if f.sha256 == hashlib.sha256(LOG).hexdigest())
    zeros = package_exchange.sri("0" * 64)
    with zipfile.ZipFile(package) as archive:
        xml = archive.read(package_layout.EXCHANGE).replace(package_exchange.sri(log.sha256).encode(), zeros.encode())
    manifest = manifest_of(package)
    manifest["exchange"]["sha256"] = hashlib.sha256(xml).hexdigest()  # so only the comparison can catch it
    problems = problems_of(rewritten(package, tmp_path / "t.zip", {package_layout.EXCHANGE: xml, **resigned(manifest)}))
    assert problems == (f"exchange.xml: {log.path}: INTEGRITY {zeros[:19]}... is not that of its bytes",)


# --- keys and trust ----------------------------------------------------------------------------------


def test_a_key_revoked_after_signing_leaves_signatures_valid_when_made(tmp_path):
    revoked = registry(valid_to="2025-09-01T00:00:00.000000Z")
    write(tmp_path / "p.zip", reg=revoked)
    report = package_verification.verify_package(tmp_path / "p.zip", revoked, now=NOW)
    assert report.ok, report.problems
    assert report.valid_when_made == report.signatures_checked == 3


def test_a_signature_made_after_the_key_ended_is_a_problem(tmp_path):
    ended = registry(valid_to="2025-01-01T00:00:00.000000Z")
    write(tmp_path / "p.zip", reg=ended)
    problems = package_verification.verify_package(tmp_path / "p.zip", ended, now=NOW).problems
    assert len(problems) == 3 and all("outside key" in p and ": signature by u-pi" in p for p in problems)


def test_a_registry_with_another_system_key_rejects_the_manifest_signature(package):
    problems = problems_of(package, registry(system=sk.generate_key()))
    assert problems and all(p.startswith("manifest.json.sig: signed by key") for p in problems)


def test_without_a_registry_the_package_vouches_for_itself_and_says_so(package):
    report = package_verification.verify_package(package, now=NOW)
    assert report.ok and "package's own registry.json only" in report.trust


def test_a_swapped_key_pem_is_reported(package, tmp_path):
    other = sk.public_key_pem(sk.generate_key().public_key()).encode()
    assert problems_of(rewritten(package, tmp_path / "t.zip", {package_layout.KEY_PEM: other})) == (
        f"manifest-key.pem: is not system key {sk.key_id(SYSTEM.public_key())} of the registry",
    )


# --- by hand -----------------------------------------------------------------------------------------


def test_openssl_and_sha256sum_verify_by_the_readme(package, tmp_path):
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(folder)
    command = [
        OPENSSL,
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "manifest-key.pem",
        "-rawin",
        "-in",
        "manifest.json",
        "-sigfile",
        "manifest.json.sig",
    ]
    accepted = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    assert accepted.returncode == 0 and "Signature Verified Successfully" in accepted.stdout
    readme = (folder / "README.txt").read_text()
    assert " ".join(command[1:]) in readme
    shell = [line.strip() for line in readme.splitlines() if line.strip().startswith(("openssl pkey ", "grep "))]
    key_hex = subprocess.run(shell[0], shell=True, cwd=folder, capture_output=True, text=True, check=True).stdout
    assert key_hex.strip() == sk.public_key_hex(SYSTEM.public_key())
    sums = subprocess.run(shell[1], shell=True, cwd=folder, capture_output=True, text=True)
    assert sums.returncode == 0 and sums.stdout.count(": OK") == 4 + len(package_layout.HASHED), (
        sums.stdout + sums.stderr
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][0]["status"] = "withdrawn"
    (folder / "manifest.json").write_bytes(canonical_json(manifest))
    rejected = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    assert rejected.returncode != 0 and "Signature Verification Failure" in rejected.stdout
    (folder / files()[0].path).write_bytes(CV + b" ")
    assert subprocess.run(shell[1], shell=True, cwd=folder, capture_output=True).returncode != 0


def test_exchange_xml_lists_the_same_files_and_hashes_as_the_manifest(package):
    ems = "{https://tmfrefmodel.com/ems}"
    with zipfile.ZipFile(package) as archive:
        root = ET.fromstring(archive.read(package_layout.EXCHANGE))
    manifest = manifest_of(package)
    listed = {
        (unquote(f.findtext(f"{ems}CONTENTURL")), package_exchange.sri_hex(f.findtext(f"{ems}INTEGRITY")))
        for f in root.iter(f"{ems}FILE")
    }
    assert listed == {(f["path"], f["sha256"]) for f in manifest["files"]}
    assert root.tag == f"{ems}BATCH" and root.get("STUDYID") == "TST-1"
    cv = next(o for o in root.iter(f"{ems}OBJECT") if o.findtext(f"{ems}OBJECTVERSION") == "2025")
    assert [
        cv.findtext(f"{ems}{tag}") for tag in ("OBJECTTITLE", "UNIQUEID", "ARTIFACTNUMBER", "OBJECTVERSIONSTATE")
    ] == [
        "CV Dr Müller",
        "087",
        "05.02.04",
        "Current",
    ]
    (signed,) = cv.iter(f"{ems}SIGNATURE")
    assert (
        signed.findtext(f"{ems}SIGNATURENAME") == "Dr Ana Müller"
        and signed.findtext(f"{ems}SIGNATUREREASON") == "approval"
    )


def test_exchange_xml_stays_well_formed_with_markup_and_control_characters(tmp_path):
    odd = package_file("087", 'CV <b>&"x"</b>\x01', "v1\x07", "cv.pdf", CV)
    write(tmp_path / "p.zip", [odd])
    with zipfile.ZipFile(tmp_path / "p.zip") as archive:
        root = ET.fromstring(archive.read(package_layout.EXCHANGE))
    title = root.find("{https://tmfrefmodel.com/ems}OBJECT/{https://tmfrefmodel.com/ems}OBJECTTITLE")
    assert title is not None and title.text == 'CV <b>&"x"</b>\ufffd'
    assert package_verification.verify_package(tmp_path / "p.zip", registry(), now=NOW).ok


def test_a_signature_copied_to_an_entry_with_equal_bytes_is_caught(tmp_path):
    twin = package_file("087", "CV copy", "2025", "cv.pdf", CV)  # the same bytes filed under another name
    original = package_file("087", "CV Dr Müller", "2025", "cv.pdf", CV)
    copied = package_layout.PackageFile(
        twin.path,
        twin.sha256,
        twin.size,
        twin.media_type,
        twin.load,
        {**twin.meta, "signatures": original.meta["signatures"]},
    )
    write(tmp_path / "p.zip", [original, copied])
    problems = package_verification.verify_package(tmp_path / "p.zip", registry(), now=NOW).problems
    assert len(problems) == 1 and "CV copy" in problems[0] and "states the record" in problems[0]


def test_a_carried_audit_checkpoint_is_checked_by_its_bytes_and_its_own_signature(tmp_path):
    import hashlib

    from trialcoord.kernel.rules.audit_verification import Checkpoint

    statement = Checkpoint(7, "ab" * 32, "2026-03-01T11:00:00.000000Z")
    good = sk.sign_checkpoint(statement, SYSTEM).to_json()
    path = tmp_path / "anchored.zip"
    package_writing.write_package(
        path,
        files(),
        index_pdf=b"%PDF-1.7 index\n",
        registry=registry(),
        manifest_key=SYSTEM,
        generated_at=GENERATED,
        scope={"study": "TST-1", "site": "S01"},
        checkpoint=good,
    )
    report = package_verification.verify_package(path, registry(), now=NOW)
    assert report.ok, report.problems
    assert report.checkpoint == f"audit checkpoint of 7 entries, root {'ab' * 32}, issued at {statement.issued_at}"

    def restated(data: bytes) -> dict[str, bytes]:
        """The checkpoint replaced, its hash restated and the manifest signed again by the real key."""
        manifest = manifest_of(path)
        manifest["audit_checkpoint"]["sha256"] = hashlib.sha256(data).hexdigest()
        return {package_layout.CHECKPOINT: data, **resigned(manifest)}

    other = sk.generate_key()
    foreign = canonical_json(sk.sign_checkpoint(statement, other).to_json())
    assert problems_of(rewritten(path, tmp_path / "foreign.zip", restated(foreign))) == (
        f"audit-checkpoint.json: signed by key {sk.key_id(other.public_key())}, not a system key of the registry",
    )
    altered = canonical_json({**good, "size": 8})
    assert problems_of(rewritten(path, tmp_path / "altered.zip", restated(altered))) == (
        "audit-checkpoint.json: checkpoint signature does not verify: the checkpoint was altered after signing",
    )
    padded = b" " * 5000 + canonical_json(good)  # valid JSON, but never read whole: no checkpoint is that large
    assert problems_of(rewritten(path, tmp_path / "padded.zip", restated(padded))) == (
        "audit-checkpoint.json: larger than a checkpoint (4096 bytes at most)",
    )
    plain = tmp_path / "plain.zip"
    write(plain)  # a package that states none: a checkpoint slipped in is unlisted
    assert problems_of(
        rewritten(plain, tmp_path / "slipped.zip", {package_layout.CHECKPOINT: canonical_json(good)})
    ) == ("audit-checkpoint.json: in the archive but not listed in the manifest",)
