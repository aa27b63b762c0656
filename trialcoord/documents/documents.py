"""Documents of the regulatory binder: immutable versions, their lifecycle, and proof that bytes are intact.

A version is created once (its bytes hashed on arrival, typed by content) and never changes afterwards
except by a permitted status transition (11.10(f)); both are audited in the same transaction. Reading
bytes back checks them against their SHA-256. Given a `Reader`, the reads show a draft or a version in review
only to those who manage documents where it is filed: to anyone else such a version (and a document that has
no other) does not exist, with the very answer a missing one gets. The rules are the domain's
(`documents/rules/documents.py`, `tmf.py`); signatures, consent and the binder export build on this
(docs/documents.md).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from anyio import to_thread

from trialcoord.accounts import users
from trialcoord.accounts.rules.accounts import normalize_user_id
from trialcoord.documents import signatures_store, store
from trialcoord.documents.rules.documents import (
    DOCX,
    DocumentKey,
    DocumentStatus,
    DocumentVersion,
    IrbApproval,
    Reader,
    check_upload,
    record_id,
    transition,
)
from trialcoord.documents.rules.tmf import IRB_APPROVED
from trialcoord.documents.rules.tmf import artifact as tmf_artifact
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound, Problem, invalid
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.kernel.web.paging import Page, PageRequest, page_of
from trialcoord.scheduling import lookups

MAX_BYTES = 20 * 1024 * 1024  # scanned approval letters and CVs; larger files are almost always a mistake
IRB_APPROVAL = "066"  # TMF 04.01.02, the IRB/IEC approval decision: the letter an approval names
PERSONAL_ARTIFACTS = frozenset({"105", "234"})  # subject logs link codes to people: personal data
EARLIEST_YEAR, LATEST_YEAR = 1900, 2199
LATEST_OFFSET = timedelta(hours=14)  # UTC+14 (Kiribati): no calendar anywhere is further ahead


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """The TMF artifact a document is filed under, as shown."""

    unique_id: str
    number: str
    name: str


@dataclass(frozen=True, slots=True)
class StatusStep:
    status: str
    on: date
    reason: str | None


@dataclass(frozen=True, slots=True)
class FiledVersion:
    """A document version as the binder shows it: its document, artifact, bytes' facts and lifecycle."""

    study: str
    site: str | None
    name: str
    artifact: ArtifactRef
    label: str
    sha256: str
    size: int
    media_type: str
    file_name: str
    author: str
    change_summary: str
    created_at: str
    status: str
    status_date: date | None
    approval: IrbApproval | None
    person: str | None
    expires_on: date | None
    history: tuple[StatusStep, ...]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A stored version with its row's ID and its document's filing: what the use cases act on."""

    id: int
    document_id: int
    artifact: str  # the TMF unique ID
    person: str | None
    version: DocumentVersion
    file_name: str
    expires_on: date | None


def holds_personal_data(version: FiledVersion) -> bool:
    return version.artifact.unique_id in PERSONAL_ARTIFACTS


async def add_version(
    key: DocumentKey,
    artifact_id: str,
    label: str,
    data: bytes,
    file_name: str,
    change_summary: str = "",
    actor: str = SYSTEM,
    person: str | None = None,
    expires_on: date | None = None,
) -> FiledVersion:
    """Store a new version in draft; its label is new for the document, its bytes are checked by content.
    `person`: whose document it is (the user ID of a CV's or licence's holder); `expires_on`: the last day
    the version is valid, when the document says so (a licence, a certificate)."""
    _check_text(label, "label", 64)
    _check_text(file_name, "file_name", 200)
    if person is not None:
        _check_text(person, "person", 64)
        person = normalize_user_id(person)
    if expires_on is not None:
        _check_date(expires_on, "expires_on")
    media_type = check_upload(data, file_name, MAX_BYTES)
    if media_type == DOCX:
        await to_thread.run_sync(_check_word, data, file_name)  # decompressing is CPU work
    found = tmf_artifact(artifact_id)
    if found.level == "study" and key.site is not None:
        raise invalid(f"TMF {found.number} ({found.name}) is filed at study level, not at a site", field="site")
    if found.level == "site" and key.site is None:
        raise invalid(f"TMF {found.number} ({found.name}) is filed at a site: name the site", field="site")
    sha256 = hashlib.sha256(data).hexdigest()
    version = DocumentVersion(
        key, label.strip(), sha256, actor, change_summary.strip(), utc_instant(audit_log.clock()), len(data), media_type
    )
    async with transaction(f"document {key.name} version {label}"):
        await _check_scope(key)
        if person is not None:
            await _check_holder(person)
        document = await store.find_document(key.study, key.site, key.name)
        if document is None:
            document = await store.insert_document(
                key.study, key.site, key.name, found.unique_id, version.created_at, person
            )
            await audit_log.record(
                actor,
                Change(
                    "create",
                    "document",
                    record_id(key),
                    None,
                    {"artifact": found.unique_id, "site": key.site, "person": person},
                ),
            )
        elif document["artifact"] != found.unique_id:
            raise invalid(
                f"document {key.name} is filed under TMF artifact {document['artifact']}, not {found.unique_id}",
                field="artifact",
            )
        elif person is not None and document["person"] != person:  # a document's holder never changes
            raise invalid(
                f"document {key.name} is {document['person']}'s, not {person}'s: file {person}'s as a new document"
                if document["person"]
                else f"document {key.name} was filed as nobody's; file {person}'s as a new document, named for them",
                field="person",
            )
        if await store.find_version(document["id"], version.label):
            raise Conflict(
                f"document {key.name} already has a version {version.label}; versions never change:"
                " give the new one its own label"
            )
        await store.save_blob(sha256, data)
        await store.insert_version(document["id"], version, file_name, expires_on)
        await audit_log.record(
            actor,
            Change(
                "create",
                "document_version",
                record_id(key, version.label),
                None,
                {
                    "sha256": sha256,
                    "size": len(data),
                    "media_type": media_type,
                    "status": "draft",
                    "change_summary": version.change_summary,
                    "expires_on": expires_on,
                },
            ),
        )
    return _filed(version, file_name, found.unique_id, document["person"], expires_on)


async def change_status(
    key: DocumentKey,
    label: str,
    to: str,
    on: date,
    reason: str | None = None,
    approval: IrbApproval | None = None,
    actor: str = SYSTEM,
    today: date | None = None,
) -> FiledVersion:
    """Move a version along its lifecycle; anything the lifecycle forbids is refused, nothing changed. A step
    records what happened: it is dated on or before `today` (None: the latest date anywhere on Earth now)."""
    _check_date(on, "on")
    _check_past(on, "on", today, f"the date of becoming {to.replace('_', ' ')}")
    if approval is not None:
        _check_date(approval.approved_on, "approval_date")
        _check_past(approval.approved_on, "approval_date", today, "the IRB/IEC approval date")
    reason = (reason or "").strip() or None
    async with transaction(f"document {key.name} version {label}"):
        stored = await version_row(key, label)
        before = stored.version
        irb_approved = stored.artifact in IRB_APPROVED
        after = transition(before, to, on=on, approval=approval, reason=reason, irb_approved=irb_approved)
        if str(after.status) == "approved" and not await signatures_store.signed_for(stored.id, "approval"):
            raise invalid(
                f"approving version {label} needs an electronic signature with the meaning approval on it;"
                " sign it first",
                field="status",
            )
        if approval is not None and await store.approval_letter(key.study, approval.letter_sha256) is None:
            raise invalid(
                f"no IRB/IEC approval (TMF 04.01.02) of study {key.study} has the SHA-256"
                f" {approval.letter_sha256}; store the approval letter first",
                field="approval_letter_sha256",
            )
        changes = []
        if str(after.status) == "effective":  # one effective version per document: the one before is superseded
            for other in await store.effective_versions(stored.document_id):
                older = transition(
                    store.version_of(other, key),
                    "superseded",
                    on=on,
                    reason=f"superseded by version {label}",
                    irb_approved=irb_approved,
                )
                await store.update_status(other["id"], older)
                changes.append(
                    Change(
                        "update",
                        "document_version",
                        record_id(key, other["label"]),
                        {"status": "effective"},
                        {"status": "superseded", "on": on},
                        older.history[-1].reason,
                    )
                )
        await store.update_status(stored.id, after)
        new: dict[str, object] = {"status": str(after.status), "on": on}
        if approval:
            new["approval"] = {
                "reference": approval.reference,
                "approved_on": approval.approved_on.isoformat(),
                "letter_sha256": approval.letter_sha256,
            }
        await audit_log.record(
            actor,
            Change("update", "document_version", record_id(key, label), {"status": str(before.status)}, new, reason),
            *changes,
        )
    return _filed(after, stored.file_name, stored.artifact, stored.person, stored.expires_on)


async def list_documents(study: str, site: str | None = None, reader: Reader | None = None) -> list[FiledVersion]:
    """Every version of the study's documents (and the site's, given one), by site, name and age; those the
    `reader` sees, given one."""
    async with read():
        if await lookups.find_study(study) is None:
            raise NotFound(f"study {study} does not exist")
        found = await versions_in(study, site, reader)
    return [_filed(s.version, s.file_name, s.artifact, s.person, s.expires_on) for s in found]


@dataclass(frozen=True, slots=True)
class VersionFilter:
    """What a list of versions is narrowed to: a status, an artifact (unique ID), a site (STUDY_LEVEL: study-level
    documents), a piece of the document's name. None: any."""

    status: str | None = None
    artifact: str | None = None
    site: str | None = None
    text: str | None = None

    def checked(self) -> dict[str, str | None]:
        """The filter as the store takes it; an unknown status or artifact is refused naming it."""
        if self.status is not None and self.status not in set(DocumentStatus):
            raise invalid(f"unknown status '{self.status}'; choose one of {', '.join(DocumentStatus)}", field="status")
        return {
            "status": self.status,
            "artifact": tmf_artifact(self.artifact).unique_id if self.artifact else None,
            "site": ("" if self.site == STUDY_LEVEL else self.site) if self.site else None,
            "text": self.text.strip() if self.text and self.text.strip() else None,
        }


STUDY_LEVEL = "/"  # no site code holds a '/' (record_id), so it stands for "filed at study level"
SORTS = tuple(store.SORT_KEYS)


async def page_of_versions(
    study: str,
    request: PageRequest,
    filters: VersionFilter,
    reader: Reader | None = None,
    shown: Callable[[FiledVersion], bool] | None = None,
) -> Page[FiledVersion]:
    """A keyset page of the study's versions in the order `request` asks, narrowed by `filters`, of those the
    `reader` sees and `shown` keeps (the caller's own limits: sites, personal data). Rows are read past the cursor
    in chunks until a page's worth (and one more) is kept, so hidden versions never shorten or end a page."""
    wanted, chunk, after = filters.checked(), max(2 * (request.size + 1), 100), _cursor(request)
    kept: list[tuple[tuple[Any, ...], FiledVersion]] = []
    async with read():
        if await lookups.find_study(study) is None:
            raise NotFound(f"study {study} does not exist")
        while len(kept) <= request.size:
            rows = await store.version_page(study, request.sort, request.descending, after, chunk, wanted)
            for row in rows:
                key = DocumentKey(study, row["site"] or None, row["name"])
                stored = _stored(row, key, row["document"], row["artifact"], row["person"])
                filed = _filed(stored.version, stored.file_name, stored.artifact, stored.person, stored.expires_on)
                if (reader is None or reader.sees(key, stored.version.status)) and (shown is None or shown(filed)):
                    kept.append((store.page_key(row), filed))
            if len(rows) < chunk:
                break
            after = store.page_key(rows[-1])
    page = page_of(kept, request, lambda pair: pair[0])
    return Page([filed for _, filed in page.rows], page.request, page.next_after, page.first)


def _cursor(request: PageRequest) -> tuple[Any, ...] | None:
    """The cursor as the store compares it: text, text, the version's ID (anything else was not made here)."""
    if request.after is None:
        return None
    *texts, last = request.after
    if not isinstance(last, int) or isinstance(last, bool) or not all(isinstance(t, str) for t in texts):
        raise invalid("not a cursor of this list (follow the page's Next link)", field="after")
    return request.after


async def approval_letters(study: str, reader: Reader | None = None) -> list[FiledVersion]:
    """The study's stored IRB/IEC approval decisions (TMF 04.01.02), which an approval names by their letter's
    SHA-256; those the `reader` (given one) sees."""
    async with read():
        rows = await store.list_documents(study, None, IRB_APPROVAL)
    found = [
        _stored(
            row, DocumentKey(study, row["site"] or None, row["name"]), row["document"], row["artifact"], row["person"]
        )
        for row in rows
    ]
    return [
        _filed(s.version, s.file_name, s.artifact, s.person, s.expires_on)
        for s in found
        if reader is None or reader.sees(s.version.key, s.version.status)
    ]


async def versions_in(study: str, site: str | None, reader: Reader | None = None) -> list[StoredVersion]:
    """Every version of the study's documents (and the site's, given one), by site, name and age; those the
    `reader` sees, given one; in the caller's transaction."""
    found = [
        _stored(
            row, DocumentKey(study, row["site"] or None, row["name"]), row["document"], row["artifact"], row["person"]
        )
        for row in await store.list_documents(study, site)
    ]
    return [s for s in found if reader is None or reader.sees(s.version.key, s.version.status)]


async def get_version(key: DocumentKey, label: str, reader: Reader | None = None) -> FiledVersion:
    """The version; NotFound when it does not exist, or when the `reader` (given one) may not see it."""
    async with read():
        stored = await version_row(key, label, reader)
    return _filed(stored.version, stored.file_name, stored.artifact, stored.person, stored.expires_on)


async def version_bytes(key: DocumentKey, label: str, reader: Reader | None = None) -> bytes:
    """The version's bytes, checked against its SHA-256: altered bytes are never handed out; NotFound as
    `get_version`."""
    async with read():
        sha256 = (await version_row(key, label, reader)).version.sha256
        data = await store.blob(sha256)
    if data is None or hashlib.sha256(data).hexdigest() != sha256:
        raise Conflict(
            f"document {key.name} version {label}: the stored bytes do not match their SHA-256"
            f" {sha256}; restore them from a backup"
        )
    return data


async def verify_stored() -> tuple[int, list[str]]:
    """(items checked, problems): every stored content against the SHA-256 that names it, and every version
    against its content and against the SHA-256 the audit trail recorded when it was created."""
    async with read():
        blobs = await store.all_blobs()
        versions = await store.all_versions()
    created = {
        e.record_id: (e.new or {}).get("sha256")
        for e in await audit_log.export_rows(
            audit_log.AuditFilter(record_type="document_version", action="create"), 10_000_000
        )
    }
    problems = []
    for sha256, size, text in blobs:
        try:
            data = base64.b64decode(text, validate=True)
        except ValueError:
            problems.append(f"content {sha256}: the stored text is not base64")
            continue
        if hashlib.sha256(data).hexdigest() != sha256 or len(data) != size:
            problems.append(f"content {sha256}: its bytes do not match their SHA-256 (altered or damaged)")
    for row in versions:
        key = DocumentKey(row["study"], row["site"] or None, row["name"])
        where = f"document {key.name}" + (f" at site {key.site}" if key.site else "") + f" version {row['label']}"
        if row["blob_size"] is None or row["blob_size"] != row["size"]:
            problems.append(f"{where}: its content {row['sha256']} is missing or of another size")
        if created.get(record_id(key, row["label"])) != row["sha256"]:
            problems.append(f"{where}: its SHA-256 is not the one recorded in the audit trail when it was created")
    return len(blobs) + len(versions), problems


def _check_word(data: bytes, file_name: str) -> None:
    """A ZIP holding word/document.xml is not yet a document: python-docx must read it, or its signature
    page could never be appended. Its parts are bounded first (a "zip bomb" is refused unread), then it is read
    in the memory-capped worker: a file that needs more is refused there, not by the server running out."""
    import io

    from trialcoord.kernel import isolation
    from trialcoord.kernel.archives import WORD, BoundedZip
    from trialcoord.kernel.render.docx_documents import read_docx

    def refused(problems: list[Problem]) -> InvalidInput:
        return InvalidInput([Problem(p.message, file=file_name, field="file") for p in problems])

    try:
        with BoundedZip(io.BytesIO(data), file_name, WORD) as archive:  # check_upload opened it already
            archive.check()
        isolation.run_isolated(read_docx, data, file=file_name, limit=isolation.MEMORY_LIMIT)
    except InvalidInput as error:
        raise refused(error.problems) from None
    except isolation.ReadFailed as error:  # python-docx raises KeyError, ValueError, lxml errors...
        name = str(error).split(":", 1)[0]
        raise refused([Problem(f"the Word document cannot be read ({name})")]) from None


def _check_text(value: str, field: str, longest: int) -> None:
    if not value.strip() or len(value) > longest or any(ord(c) < 32 or c in "/\\\x7f" for c in value):
        raise invalid(
            f"the {field.replace('_', ' ')} is 1 to {longest} characters, without '/', '\\' or control characters",
            field=field,
        )


def _check_date(day: date, field: str) -> None:
    if not EARLIEST_YEAR <= day.year <= LATEST_YEAR:
        raise invalid(f"{day} is not a plausible date (years {EARLIEST_YEAR} to {LATEST_YEAR})", field=field)


async def _check_holder(person: str) -> None:
    try:
        await users.get_user(person)
    except NotFound:
        raise invalid(f"no user {person}: name whose document it is by their user ID", field="person") from None


def _check_past(day: date, field: str, today: date | None, what: str) -> None:
    latest = today or (audit_log.clock() + LATEST_OFFSET).date()
    if day > latest:
        raise invalid(
            f"{what} ({day}) is after today ({latest}); a status step records what has happened, on or before"
            " the day it is recorded",
            field=field,
        )


async def _check_scope(key: DocumentKey) -> None:
    study = await lookups.find_study(key.study)
    if study is None:
        raise NotFound(f"study {key.study} does not exist")
    if key.site is not None and await lookups.find_site(study["id"], key.site) is None:
        raise invalid(f"study {key.study} has no site {key.site}", field="site")
    if not key.name.strip() or len(key.name) > 200 or "/" in key.name:
        raise invalid("a document name is 1 to 200 characters, without '/'", field="name")


async def version_row(key: DocumentKey, label: str, reader: Reader | None = None) -> StoredVersion:
    """The stored version, in the caller's transaction. A version the `reader` (given one) may not see is not
    found, with the answer a missing one gets; so is a document with no version they see."""
    document = await store.find_document(key.study, key.site, key.name)
    if document is None or (
        reader is not None and not any(reader.sees(key, status) for status in await store.statuses(document["id"]))
    ):
        raise NotFound(f"study {key.study} has no document {key.name}" + (f" at site {key.site}" if key.site else ""))
    row = await store.find_version(document["id"], label)
    if row is None or (reader is not None and not reader.sees(key, row["status"])):
        raise NotFound(f"document {key.name} has no version {label}")
    return _stored(row, key, document["id"], document["artifact"], document["person"])


def _stored(
    row: dict[str, Any], key: DocumentKey, document_id: int, artifact: str, person: str | None
) -> StoredVersion:
    expires_on = row["expires_on"]
    return StoredVersion(
        row["id"],
        document_id,
        artifact,
        person,
        store.version_of(row, key),
        row["file_name"],
        date.fromisoformat(expires_on) if isinstance(expires_on, str) else expires_on,
    )


def _filed(
    version: DocumentVersion,
    file_name: str,
    artifact_id: str,
    person: str | None = None,
    expires_on: date | None = None,
) -> FiledVersion:
    found = tmf_artifact(artifact_id)
    return FiledVersion(
        study=version.key.study,
        site=version.key.site,
        name=version.key.name,
        artifact=ArtifactRef(found.unique_id, found.number, found.name),
        label=version.label,
        sha256=version.sha256,
        size=version.size,
        media_type=version.media_type,
        file_name=file_name,
        author=version.author,
        change_summary=version.change_summary,
        created_at=version.created_at,
        status=str(version.status),
        status_date=version.status_date,
        approval=version.approval,
        person=person,
        expires_on=expires_on,
        history=tuple(StatusStep(str(c.status), c.on, c.reason) for c in version.history),
    )
