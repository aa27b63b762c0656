"""Electronic signatures of document versions (Part 11 11.50, 11.70, 11.200) and their manifestation.

A signer signs through the re-authentication ceremony (`signing.signing_ceremony` on the web,
`signing.signing_by_password` on the command line); the system then signs the statement with the
signer's own Ed25519 key, made at their first signature and kept encrypted (scrypt + AES-GCM under the
system passphrase). The public part of every key, with its validity, is the signer registry
(`signatures/registry.json`). Each signature is printed on a signature page that is appended to the
version (PDF, DOCX); an approved PDF also gets a PAdES signature by the site's certificate. Files made
from a version are stored with their hashes beside it; the version's own bytes never change.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from anyio import to_thread

from trialcoord.accounts import signer_keys, users
from trialcoord.accounts.rules.accounts import Meaning, Signing
from trialcoord.accounts.rules.signers import SignerKey
from trialcoord.documents import signature_requests_store as requests_store
from trialcoord.documents import signatures_store as store
from trialcoord.documents import store as documents_store
from trialcoord.documents.documents import record_id, version_row
from trialcoord.documents.rules.documents import DOCX, PDF, DocumentKey, DocumentStatus, Reader
from trialcoord.documents.rules.signatures import Signature, Statement, judge, local_time
from trialcoord.kernel import audit_log, isolation, signing_keys
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import Conflict, Forbidden, InvalidInput, NotConfigured, invalid
from trialcoord.kernel.rules.access import Grant
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.scheduling import lookups

log = logging.getLogger(__name__)
SIGNATURE_PAGE, SIGNED_COPY, PADES = "signature_page", "signed_copy", "pades_signed"
UNSIGNABLE = {DocumentStatus.SUPERSEDED, DocumentStatus.EXPIRED}


@dataclass(frozen=True, slots=True)
class SignatureRecord:
    """A signature of a version as shown: the statement signed, the printed name and the signature itself."""

    version_sha256: str
    record: str
    signer_id: str
    printed_name: str
    meaning: str
    instant: str
    key_id: str
    signature: str

    @classmethod
    def of(cls, signature: Signature) -> SignatureRecord:
        s = signature.statement
        return cls(
            s.version_sha256,
            s.record,
            s.signer_id,
            signature.printed_name,
            str(s.meaning),
            s.instant,
            signature.key_id,
            signature.value,
        )


@dataclass(frozen=True, slots=True)
class JudgedSignature(SignatureRecord):
    """A signature with its verdict now, and its instant in the site's time zone."""

    verdict: str
    reason: str
    local_time: str


@dataclass(frozen=True, slots=True)
class VersionFile:
    """A file made from a version to print its signatures (signature page, signed copy, PAdES copy)."""

    kind: str
    signatures: int  # how many signatures it prints
    sha256: str
    size: int
    media_type: str
    created_at: str

    @classmethod
    def of(cls, row: dict[str, Any]) -> VersionFile:
        return cls(row["kind"], row["signatures"], row["sha256"], row["size"], row["media_type"], row["created_at"])


@dataclass(frozen=True, slots=True)
class VersionSignatures:
    """A version's signatures, each judged now, and the files made from it, newest first within each kind."""

    signatures: list[JudgedSignature]
    files: list[VersionFile]


@dataclass(frozen=True, slots=True)
class DocumentsVerification:
    """What `verify_documents` found, with the registry and instant it checked against."""

    checked: int
    problems: list[str]
    registry_keys: dict[str, SignerKey]
    checked_at: str


async def sign(key: DocumentKey, label: str, signing: Signing, installation: Installation) -> SignatureRecord:
    """Sign a version as the ceremony's signer, if their grants allow it; then print the manifestation.
    Audited with the signature. The instant is taken once the signer's key is in hand, inside the
    transaction that checks the key is still in force, so a stored signature always verifies. A version the
    signer may not read (a draft, for a monitor) is not found, as on every door."""
    reader = await _check_authority(key, signing, installation.time_zone)
    signer_key, private = await signer_keys.key_of_signer(signing.user_id, signing.printed_name, installation)
    record = record_id(key, label)
    async with transaction(f"signature of document {key.name} version {label}"):
        stored = await version_row(key, label, reader)
        sha256 = stored.version.sha256
        if stored.version.status in UNSIGNABLE:
            raise invalid(
                f"version {label} is {stored.version.status}: a version no longer in force cannot be signed",
                field="label",
            )
        if any(
            s["signer_id"] == signing.user_id and s["meaning"] == signing.meaning
            for s in await store.signatures_of(stored.id)
        ):
            raise Conflict(f"{signing.user_id} has already signed version {label} of {key.name} for {signing.meaning}")
        await signer_keys.hold_in_force(signer_key, signing.user_id)
        instant = max(utc_instant(audit_log.clock()), signer_key.valid_from)
        statement = Statement(sha256, signing.user_id, Meaning(signing.meaning), instant, record)
        signature = Signature(
            statement,
            signing.printed_name,
            signer_key.key_id,
            signing_keys.sign_bytes(statement.canonical_bytes(), private),
        )
        check = judge(signature, {signer_key.key_id: signer_key}, sha256, signing_keys.verify_hex, instant)
        if not check.ok:  # never store a signature that would not verify
            raise Conflict(f"the signature could not be made: {check.reason}")
        signature_id = await store.insert_signature(stored.id, signature)
        # The signature asked for answers the open requests for it (one at most: the database holds that).
        answered = await requests_store.fulfil(stored.id, signing.user_id, str(signing.meaning), instant, signature_id)
        await audit_log.record(
            signing.user_id,
            Change(
                "sign",
                "document_version",
                record,
                None,
                {
                    "meaning": str(signing.meaning),
                    "instant": instant,
                    "sha256": sha256,
                    "key_id": signer_key.key_id,
                    "printed_name": signing.printed_name,
                    "components": str(signing.components),
                    "signature": signature.value,
                },
            ),
            *(
                Change(
                    "update",
                    "signature_request",
                    record,
                    {"request": request, "state": "open"},
                    {"request": request, "state": "fulfilled", "fulfilled_at": instant, "signature": signature.value},
                    f"signed by {signing.user_id} for {signing.meaning}",
                )
                for request in answered
            ),
        )
    await manifest_safely(key, label, installation)
    return SignatureRecord.of(signature)


READING_MEANINGS = {Meaning.REVIEW, Meaning.RESPONSIBILITY}  # a reader's signatures, not an author's


def may_sign(grants: Sequence[Grant], key: DocumentKey, meaning: str, today: date) -> bool:
    """Who may sign what, the one rule for every door (web or command line). A site's document: a review
    needs the right to sign at the site, any other meaning also the right to manage its documents there.
    A study-level document (protocol, amendment, brochure): a review or responsibility signature needs the
    right to sign at any site of the study, so investigators sign the protocol; authorship and approval
    need the right to manage the study's own documents."""
    return signing_refusal(grants, key, meaning, today) is None


def signing_refusal(grants: Sequence[Grant], key: DocumentKey, meaning: str, today: date) -> str | None:
    """Why the holder of `grants` may not sign `key` for `meaning` today (the grants' reasons), None if they may:
    the rule of `may_sign`."""
    from trialcoord.kernel.rules.access import Action, authorize, visible_sites

    if key.site is None and meaning in READING_MEANINGS:
        scope = visible_sites(grants, Action.SIGN, key.study, today)
        return None if scope.all_sites or scope.sites else f"no grant to sign at a site of {key.study}"
    needed = [Action.SIGN] + ([] if meaning == Meaning.REVIEW else [Action.MANAGE_DOCUMENTS])
    decisions = [authorize(grants, action, key.study, key.site, today) for action in needed]
    return next((decision.reason for decision in decisions if not decision), None)


async def _check_authority(key: DocumentKey, signing: Signing, time_zone: str) -> Reader:
    """The signer as a reader of the binder, once their grants allow the signature."""
    async with read():
        grants = await users.grants_held(signing.user_id)
    today = signing.signed_at.astimezone(ZoneInfo(time_zone)).date()  # as grants
    if not may_sign(grants, key, signing.meaning, today):
        raise Forbidden(
            f"{signing.user_id} may not sign {key.name} for {signing.meaning}"
            + (f" at site {key.site}" if key.site else "")
        )
    return Reader(tuple(grants), today)


async def of_version(
    key: DocumentKey, label: str, installation: Installation, reader: Reader | None = None
) -> VersionSignatures:
    """The version's signatures with their verdict now, and the files made from it; NotFound for a version the
    `reader` (given one) may not see."""
    async with read():
        stored = await version_row(key, label, reader)
        rows = await store.signatures_of(stored.id)
        files = await store.files_of(stored.id)
        registry_keys = {k.key_id: k for k in await signer_keys.all_keys()}
    sha256 = stored.version.sha256
    now = utc_instant(audit_log.clock())
    zone_name = await _zone_name(key, installation.time_zone)
    shown = []
    for r in rows:
        signature = store.signature_of(r, sha256, record_id(key, label))
        check = judge(signature, registry_keys, sha256, signing_keys.verify_hex, now)
        made = SignatureRecord.of(signature)
        shown.append(
            JudgedSignature(
                made.version_sha256,
                made.record,
                made.signer_id,
                made.printed_name,
                made.meaning,
                made.instant,
                made.key_id,
                made.signature,
                verdict=str(check.verdict),
                reason=check.reason,
                local_time=local_time(r["instant"], zone_name, ZoneInfo(zone_name)),
            )
        )
    return VersionSignatures(shown, [VersionFile.of(f) for f in files])


async def _zone_name(key: DocumentKey, fallback: str) -> str:
    if key.site is None:
        return fallback
    async with read():
        study = await lookups.find_study(key.study)
        site = await lookups.find_site(study["id"], key.site) if study else None
    return (site or {}).get("time_zone") or fallback


async def manifest(key: DocumentKey, label: str, installation: Installation) -> list[VersionFile]:
    """Make the files that print the version's signatures, once per number of signatures (idempotent):
    the signature page, the version with it appended (PDF, DOCX) and, once approved by signature, that
    PDF signed with PAdES."""
    from trialcoord.kernel.render.docx_documents import docx_with_signature_page
    from trialcoord.kernel.render.pdf_documents import render_pdf
    from trialcoord.kernel.render.signed_pdf import append_pages, pades_sign

    found = await of_version(key, label, installation)
    signatures, files = found.signatures, found.files
    if not signatures:
        return []
    count = len(signatures)
    async with read():
        version = (await version_row(key, label)).version
    wanted = {SIGNATURE_PAGE} | ({SIGNED_COPY} if version.media_type in (PDF, DOCX) else set())
    keys = installation.keys()
    approved = any(s.meaning == Meaning.APPROVAL for s in signatures)
    if version.media_type == PDF and approved and keys.pades is not None:
        wanted.add(PADES)
    have = {f.kind for f in files if f.signatures == count}
    if wanted <= have:
        return [f for f in files if f.signatures == count]
    page_data = {
        "study_code": key.study,
        "site_code": key.site or "study level",
        "document": key.name,
        "version": label,
        "version_sha256": version.sha256,
        "signatures": [
            {
                k: getattr(s, k)
                for k in ("printed_name", "signer_id", "meaning", "instant", "local_time", "key_id", "signature")
            }
            for s in signatures
        ],
    }
    created_at = signatures[-1].instant
    made: dict[str, tuple[bytes, str]] = {}
    page = await to_thread.run_sync(
        lambda: render_pdf(
            "signature_page", page_data, created_at=created_at, title=f"Signatures: {key.name}", version_label=label
        )
    )
    made[SIGNATURE_PAGE] = (page, PDF)
    original = await _bytes(version.sha256, label)
    where = f"document {key.name} version {label}"
    if version.media_type == PDF:
        try:  # qpdf decompresses the upload's streams to write them again: in the memory-capped worker
            copy = await to_thread.run_sync(lambda: isolation.run_isolated(append_pages, original, page, file=where))
        except (isolation.ReadFailed, InvalidInput):  # an upload readers open but pikepdf cannot, or a bomb:
            copy = None  # the signature page stands alone
        if copy is not None:
            made[SIGNED_COPY] = (copy, PDF)
        if copy is not None and PADES in wanted and keys.pades is not None:
            signed_copy, pades_key = copy, keys.pades
            tsa_url, tsa_roots = installation.tsa_url, installation.tsa_roots()
            approval = next(s for s in signatures if s.meaning == Meaning.APPROVAL)
            signed_at = audit_log.clock()  # when the site's certificate signs, not when the approval was given

            def pades() -> bytes:  # parsing, hashing and ECDSA: CPU work, off the event loop
                return asyncio.run(
                    pades_sign(
                        signed_copy,
                        *pades_key,
                        signed_at=signed_at,
                        reason=f"approved by {approval.printed_name} at {approval.instant}",
                        location=key.site or key.study,
                        signer_name=approval.printed_name,
                        tsa_url=tsa_url,
                        tsa_roots=tsa_roots,
                    )
                )

            made[PADES] = (await to_thread.run_sync(pades), PDF)
    elif version.media_type == DOCX:
        try:  # python-docx parses the upload: in the memory-capped worker, as when it was uploaded
            made[SIGNED_COPY] = (
                await to_thread.run_sync(
                    lambda: isolation.run_isolated(
                        docx_with_signature_page, original, page_data, created_at, file=where
                    )
                ),
                DOCX,
            )
        except (isolation.ReadFailed, InvalidInput) as error:  # it was read at upload: the cap was lowered since
            log.warning("%s: no Word copy with its signature page (%s); the page stands alone", where, error)
    at = utc_instant(audit_log.clock())
    async with transaction(f"signature page of document {key.name} version {label}"):
        version_id = (await version_row(key, label)).id
        for kind, (data, media_type) in made.items():
            if kind in have:
                continue
            sha256 = hashlib.sha256(data).hexdigest()
            await documents_store.save_blob(sha256, data)
            if await store.insert_file(version_id, kind, count, sha256, len(data), media_type, at):  # not a racer's
                await audit_log.record(
                    audit_log.SYSTEM,
                    Change(
                        "create",
                        "document_file",
                        record_id(key, label),
                        None,
                        {"kind": kind, "signatures": count, "sha256": sha256},
                    ),
                )
    return [f for f in (await of_version(key, label, installation)).files if f.signatures == count]


async def manifest_safely(key: DocumentKey, label: str, installation: Installation) -> None:
    """The manifestation, never failing what asked for it: a signature stands once stored, and a page that
    cannot be printed now (an odd upload, a render failure) is printed by the next attempt or export."""
    from trialcoord.kernel.render.signed_pdf import TimestampError

    try:
        await manifest(key, label, installation)
    except (TimestampError, NotConfigured) as error:  # the message says it all: what, where and what went wrong
        log.error("the signature page of %s version %s could not be made: %s", record_id(key, label), label, error)
    except Exception:  # noqa: BLE001 - logged whole; the signature is already stored and audited
        log.exception("the signature page of %s version %s could not be made", record_id(key, label), label)


async def file_bytes(
    key: DocumentKey, label: str, kind: str, installation: Installation, reader: Reader | None = None
) -> tuple[bytes | None, VersionFile | None]:
    """The newest file of `kind` made from the version, checked against its SHA-256, with its facts; NotFound
    for a version the `reader` (given one) may not see."""
    made = next((f for f in (await of_version(key, label, installation, reader)).files if f.kind == kind), None)
    if made is None:
        return None, None
    return await _bytes(made.sha256, label), made


async def _bytes(sha256: str, label: str) -> bytes:
    async with read():
        data = await documents_store.blob(sha256)
    if data is None or hashlib.sha256(data).hexdigest() != sha256:
        raise Conflict(f"version {label}: the stored bytes do not match their SHA-256; restore them first")
    return data


async def verify_documents() -> DocumentsVerification:
    """Items checked, problems, the registry's keys and the instant checked: every document signature against the
    registry, its version's stored SHA-256 and record, and the audit entry made with it; every signer key
    against the audit entry made with it (a row inserted behind the application's back has none); every file
    made from a version against its content. `verification.verify_all` adds the deviations' signatures."""
    async with read():
        rows = await store.all_signatures()
        keys_held = await signer_keys.all_keys()
        files = await store.all_files()
    registry_keys = {k.key_id: k for k in keys_held}
    audited_keys = {
        e.record_id: (e.new or {})
        for e in await audit_log.export_rows(
            audit_log.AuditFilter(record_type="signer_key", action="create"), 10_000_000
        )
    }
    audited_signatures = {
        (e.record_id, (e.new or {}).get("signature"))
        for e in await audit_log.export_rows(
            audit_log.AuditFilter(record_type="document_version", action="sign"), 10_000_000
        )
    }
    now = utc_instant(audit_log.clock())
    problems = []
    trail = await audit_log.verify()
    if not trail.ok:  # the cross-checks below are only as good as the trail they read
        sequence, reason = trail.result.first_bad or (0, "")
        problems.append(
            f"the audit trail does not verify from entry {sequence} ({reason}), so keys and signatures"
            " cannot be checked against it; run `trialcoord audit verify`"
        )
    for k in keys_held:
        entry = audited_keys.get(f"{k.signer_id}/{k.key_id}")
        if entry is None or entry.get("public_key") != k.public_key or entry.get("valid_from") != k.valid_from:
            problems.append(
                f"signing key {k.key_id} of {k.signer_id}: not the key the audit trail recorded when it"
                " was made (added or altered outside the application)"
            )
    for r in rows:
        key = DocumentKey(r["study"], r["site"] or None, r["name"])
        record = record_id(key, r["label"])
        where = f"document {r['name']}" + (f" at site {r['site']}" if r["site"] else "") + f" version {r['label']}"
        check = judge(
            store.signature_of(r, r["sha256"], record), registry_keys, r["sha256"], signing_keys.verify_hex, now
        )
        if not check.ok:
            problems.append(f"{where}: signature by {r['signer_id']} ({r['meaning']}, {r['instant']}): {check.reason}")
        elif (record, r["value"]) not in audited_signatures:
            problems.append(
                f"{where}: signature by {r['signer_id']} ({r['meaning']}, {r['instant']}): the audit trail"
                " has no record of it being made"
            )
    for f in files:
        if f["blob_size"] is None or f["blob_size"] != f["size"]:
            problems.append(
                f"file {f['kind']} {f['sha256']} of version row {f['version']}: its content is missing"
                " or of another size"
            )
    return DocumentsVerification(len(keys_held) + len(rows) + len(files), problems, registry_keys, now)
