"""Document versions: the status lifecycle (Part 11 11.10(f)) and the content check of uploads.

A version is immutable: `transition` returns a new state, refusing any step the one table
`PERMITTED` does not list; `Reader` says who sees a version before it is released (approved). Every rule
takes the date it applies on; none reads the clock, a database or a file. Uploads are typed by their bytes,
never by their name.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.rules.access import Action, Grant, authorize, visible_sites

_SHA256 = re.compile(r"[0-9a-f]{64}")
_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")  # the audit trail's `utc_instant` form


class DocumentStatus(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    EFFECTIVE = "effective"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"


_S = DocumentStatus
# The only place that says which step may follow which; a returned review goes back to draft.
PERMITTED: dict[DocumentStatus, frozenset[DocumentStatus]] = {
    _S.DRAFT: frozenset({_S.IN_REVIEW}),
    _S.IN_REVIEW: frozenset({_S.DRAFT, _S.APPROVED}),
    _S.APPROVED: frozenset({_S.EFFECTIVE}),
    _S.EFFECTIVE: frozenset({_S.SUPERSEDED, _S.EXPIRED}),
    _S.SUPERSEDED: frozenset(),
    _S.EXPIRED: frozenset(),
}

# Released: approved once. Superseded and expired versions were effective (nothing else leads to them), so
# they stay readable as history: the version in force on a date is what source document verification checks.
RELEASED = frozenset({_S.APPROVED, _S.EFFECTIVE, _S.SUPERSEDED, _S.EXPIRED})


@dataclass(frozen=True, slots=True)
class DocumentKey:
    """Which document: its name within the study, and the site (None: a study-level document)."""

    study: str
    site: str | None
    name: str


def record_id(key: DocumentKey, label: str | None = None) -> str:
    """`STUDY/SITE/documents/NAME[/LABEL]` (study level: `STUDY/documents/...`): how the audit trail and a
    signature's statement name a document (version)."""
    parts = [key.study, *([key.site] if key.site else []), "documents", key.name, *([label] if label else [])]
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class IrbApproval:
    """The IRB/IEC approval a version rests on; the letter itself is filed as a binder document."""

    reference: str
    approved_on: date
    letter_sha256: str

    def __post_init__(self) -> None:
        problems = [
            Problem(m, field=f)
            for bad, m, f in [
                (not self.reference.strip(), "the IRB/IEC approval needs its reference", "approval.reference"),
                (
                    not _is_sha256(self.letter_sha256),
                    "the approval letter's SHA-256 is 64 lower-case hex digits",
                    "approval.letter_sha256",
                ),
            ]
            if bad
        ]
        if problems:
            raise InvalidInput(problems)


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: DocumentStatus
    on: date
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentVersion:
    """One version of a document. Bytes live elsewhere; `sha256` names them. `history` holds each
    status entered after draft, with its date."""

    key: DocumentKey
    label: str  # e.g. "2.0"
    sha256: str
    author: str
    change_summary: str
    created_at: str  # UTC instant, `utc_instant` form: 2026-11-27T09:30:00.000000Z
    size: int
    media_type: str
    status: DocumentStatus = DocumentStatus.DRAFT
    history: tuple[StatusChange, ...] = ()
    approval: IrbApproval | None = None

    def __post_init__(self) -> None:
        problems = [
            Problem(m, field=f)
            for bad, m, f in [
                (not self.label.strip(), "a version needs its label", "label"),
                (not _is_sha256(self.sha256), "the SHA-256 is 64 lower-case hex digits", "sha256"),
                (not self.author.strip(), "a version needs its author", "author"),
                (
                    not _is_instant(self.created_at),
                    "created_at is a UTC instant like 2026-11-27T09:30:00.000000Z",
                    "created_at",
                ),
                (self.size < 0, "the size cannot be negative", "size"),
                (self.status not in set(DocumentStatus), f"the status is one of {', '.join(DocumentStatus)}", "status"),
            ]
            if bad
        ]
        if problems:
            raise InvalidInput(problems)
        object.__setattr__(self, "status", DocumentStatus(self.status))

    def entered(self, status: DocumentStatus) -> date | None:
        """The date the version last entered `status` (None: never)."""
        return next((c.on for c in reversed(self.history) if c.status is status), None)

    @property
    def status_date(self) -> date | None:
        return self.history[-1].on if self.history else None


def transition(
    version: DocumentVersion,
    to: DocumentStatus | str,
    *,
    on: date,
    approval: IrbApproval | None = None,
    reason: str | None = None,
    irb_approved: bool = True,
) -> DocumentVersion:
    """The version after moving to `to` on `on`, or InvalidInput naming every rule broken.

    `irb_approved`: the document is one an IRB/IEC approves (protocol, amendment, consent form), so
    approving it rests on that approval; a CV or a licence is approved by the site without one."""
    to = _status(to)
    problems = _order_problems(version, to) or _date_problems(version, to, on, approval, irb_approved) + [
        Problem(m, field=f)
        for bad, m, f in [
            (
                to is _S.APPROVED and irb_approved and approval is None,
                "approving needs the IRB/IEC approval it rests on",
                "approval",
            ),
            (
                not irb_approved and approval is not None,
                "this kind of document is not approved by an IRB/IEC: record no approval",
                "approval",
            ),
            (
                to is not _S.APPROVED and approval is not None,
                "an IRB/IEC approval is recorded only when approving",
                "approval",
            ),
            (
                version.status is _S.IN_REVIEW and to is _S.DRAFT and not (reason or "").strip(),
                "returning a version to draft needs the reason",
                "reason",
            ),
        ]
        if bad
    ]
    if problems:
        raise InvalidInput(problems)
    return replace(
        version,
        status=to,
        history=(*version.history, StatusChange(to, on, reason)),
        approval=approval if to is _S.APPROVED else version.approval,
    )


def _status(text: DocumentStatus | str) -> DocumentStatus:
    try:
        return DocumentStatus(text)
    except ValueError:
        raise InvalidInput(
            [Problem(f"unknown status '{text}'; expected one of {', '.join(DocumentStatus)}", field="status")]
        ) from None


def _order_problems(version: DocumentVersion, to: DocumentStatus) -> list[Problem]:
    allowed = PERMITTED[version.status]
    if to in allowed:
        return []
    following = (
        f"the permitted next states are {', '.join(sorted(allowed))}"
        if allowed
        else f"nothing follows {version.status}"
    )
    return [Problem(f"a version cannot go from {version.status} to {to}; {following}", field="status")]


def _date_problems(
    version: DocumentVersion, to: DocumentStatus, on: date, approval: IrbApproval | None, irb_approved: bool
) -> list[Problem]:
    """The first date rule `on` breaks: dates of the lifecycle never go backwards."""
    if not isinstance(on, date) or isinstance(on, datetime):
        return [Problem(f"the date of becoming {to} is a calendar date", field="on")]
    since, approved = version.status_date, version.approval
    if to is _S.APPROVED and approval is not None and approval.approved_on > on:
        message = f"the IRB/IEC approval ({approval.approved_on}) is dated after the version's approval ({on})"
        field = "approval"
    elif to is _S.EFFECTIVE and approved is None and irb_approved:
        message, field = "the version has no IRB/IEC approval to be effective on", "approval"
    elif to is _S.EFFECTIVE and approved is not None and on < approved.approved_on:
        message = f"a version cannot be effective ({on}) before its IRB/IEC approval ({approved.approved_on})"
        field = "on"
    elif since is not None and on < since:
        message = f"the date of becoming {to} ({on}) is before the version became {version.status} ({since})"
        field = "on"
    else:
        return []
    return [Problem(message, field=field)]


def _is_sha256(text: object) -> bool:
    return isinstance(text, str) and bool(_SHA256.fullmatch(text))


def _is_instant(text: object) -> bool:
    return isinstance(text, str) and bool(_INSTANT.fullmatch(text))


# --- uploads: scanned approvals, CVs, licences, certificates ---

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_EOF_WINDOW = 1024  # readers accept trailing bytes after %%EOF; Acrobat looks this far back


def check_upload(data: bytes, declared_name: str, max_bytes: int) -> str:
    """The media type of an upload, told by its bytes. The name is only quoted in errors: a PNG
    called cv.pdf is a PNG. Refused: empty, over `max_bytes`, a truncated PDF, any other type."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")

    def refuse(message: str) -> InvalidInput:
        return InvalidInput([Problem(message, file=declared_name, field="file")])

    if not data:
        raise refuse("the file is empty")
    if len(data) > max_bytes:
        raise refuse(f"the file is {len(data)} bytes; the limit is {max_bytes}")
    if data.startswith(b"%PDF-"):
        if b"%%EOF" not in data[-_EOF_WINDOW:]:
            raise refuse("the PDF is truncated: it has no %%EOF at its end")
        return PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"PK\x03\x04") and _is_word_document(data):
        return DOCX
    raise refuse("the file is not a PDF, PNG, JPEG or Word (.docx) document")


def _is_word_document(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, OSError, RuntimeError):
        return False  # any archive zipfile cannot read is not a document we accept


@dataclass(frozen=True, slots=True)
class Reader:
    """Someone reading the binder on a day, with their grants. A draft or a version in review is work in
    progress of those who manage documents: at its site for a site's document, at any site of the study for
    a study-level one (site staff, administrators). Everyone else who sees the study (monitors, sponsors)
    reads released versions only, and learns nothing of the others."""

    grants: tuple[Grant, ...]
    today: date

    def sees_unreleased(self, study: str, site: str | None) -> bool:
        if site is not None:
            return bool(authorize(self.grants, Action.MANAGE_DOCUMENTS, study, site, self.today))
        scope = visible_sites(self.grants, Action.MANAGE_DOCUMENTS, study, self.today)
        return scope.all_sites or bool(scope.sites)

    def sees(self, key: DocumentKey, status: DocumentStatus | str) -> bool:
        return DocumentStatus(status) in RELEASED or self.sees_unreleased(key.study, key.site)
