"""Binder documents of a study and its sites: list, add a version, move it along the lifecycle, download.

A document is named by its `name` and `site` (none: a study-level document); the `site` query parameter
is also what the guard scopes the request to. Study-level documents are seen by everyone working on the
study and managed by whoever holds the action for the whole study. A draft or a version in review is seen by
those who manage documents where it is filed (site staff, administrators): to monitors and sponsors it does
not exist (404, as for a version that was never stored).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import date
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.params import FromQuery, JSONBody

from trialcoord.documents import documents
from trialcoord.documents.rules.documents import DOCX, JPEG, PDF, PNG, DocumentKey, IrbApproval, Reader
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.downloads import attachment
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.openapi import files
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.kernel.web.schemas import Code, Text

VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
MANAGE = needs(Action.MANAGE_DOCUMENTS, across_sites=True)
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^/\x00-\x1f\x7f]+$")]
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_BODY = documents.MAX_BYTES * 4 // 3 + 64 * 1024  # the file in base64, and the rest of the JSON


class ArtifactOut(msgspec.Struct):
    unique_id: str
    number: str
    name: str


class ApprovalOut(msgspec.Struct):
    reference: str
    approved_on: date
    letter_sha256: str


class DocumentVersionOut(msgspec.Struct):
    study: str
    site: str | None
    name: str
    artifact: ArtifactOut
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
    approval: ApprovalOut | None
    person: str | None = None  # whose document it is (user ID), for the binder checklist
    expires_on: date | None = None


class VersionIn(msgspec.Struct):
    name: Name
    artifact: Annotated[str, msgspec.Meta(min_length=1, max_length=8)]
    label: Code
    file_name: Name
    content: Annotated[str, msgspec.Meta(min_length=1, description="the file, base64")]
    site: Code | None = None
    change_summary: Text = ""
    person: Code | None = None
    expires_on: date | None = None


class StatusIn(msgspec.Struct):
    name: Name
    label: Code
    status: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    on: date
    site: Code | None = None
    reason: Text | None = None
    approval_reference: Code | None = None
    approval_date: date | None = None
    approval_letter_sha256: Annotated[str, msgspec.Meta(max_length=200)] | None = None


def approval_of(reference: str | None, approved_on: date | None, letter_sha256: str | None) -> IrbApproval | None:
    """The IRB/IEC approval a step names: all three parts or none, each missing or malformed one named (422)."""
    if not (reference or approved_on or letter_sha256):
        return None
    letter = (letter_sha256 or "").strip().lower()
    problems = [
        Problem(message, field=field)
        for missing, message, field in (
            (not reference, "an approval needs the IRB/IEC's reference", "approval_reference"),
            (not approved_on, "an approval needs the date of the IRB/IEC's decision", "approval_date"),
            (
                not letter,
                "an approval needs the SHA-256 of its letter, stored as TMF 04.01.02",
                "approval_letter_sha256",
            ),
            (
                bool(letter) and not SHA256.fullmatch(letter),
                f"'{letter_sha256}' is not a SHA-256 (64 hex digits)",
                "approval_letter_sha256",
            ),
        )
        if missing
    ]
    if problems or reference is None or approved_on is None:
        raise InvalidInput(problems)
    return IrbApproval(reference, approved_on, letter)


def _out(version: documents.FiledVersion) -> DocumentVersionOut:
    return msgspec.convert(version, DocumentVersionOut, from_attributes=True)


def reader(access: Access, today: date) -> Reader:
    """The signed-in viewer as a reader of the binder: which versions they see (`Reader`)."""
    return Reader(access.signed_in.grants, today)


def visible(access: Access, study: str, version: documents.FiledVersion, today: date) -> bool:
    """Study-level documents and the viewer's sites'; subject logs (personal data) only with that permission."""
    if version.site is not None and not access.shows(version.site):
        return False
    return not documents.holds_personal_data(version) or access.may(
        Action.VIEW_PERSONAL_DATA, study, version.site, today
    )


def may_manage(access: Access, site: str | None, study: str) -> None:
    """A site's documents at that site; study-level documents with a grant for the whole study."""
    if site is not None:
        access.require_site(site, "manage documents")
    elif access.sites is not None and not access.sites.all_sites:
        raise PermissionDeniedException(f"{access.user_id} may not manage the study-level documents of {study}")


class DocumentController(Controller):
    path = "/api/studies/{study:str}/documents"
    tags = ["documents"]

    @get("/", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def list_documents(
        self, study: StudyPath, access: AccessDep, today: Today, site: QueryStr = None
    ) -> list[DocumentVersionOut]:
        """Every version of the study's documents and of the sites the viewer works at (monitors and sponsors:
        released versions only, those approved, effective, superseded or expired)."""
        rows = await documents.list_documents(study, site or None, reader(access, today))
        return [_out(row) for row in rows if visible(access, study, row, today)]

    @post(
        "/",
        opt=MANAGE,
        status_code=201,
        request_max_body_size=MAX_BODY,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def add_version(self, study: StudyPath, data: JSONBody[VersionIn], access: AccessDep) -> DocumentVersionOut:
        """Store a new version (a draft); its type is checked by content, its SHA-256 computed on arrival."""
        may_manage(access, data.site, study)
        try:
            content = base64.b64decode(data.content, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationException(
                "`content` is not base64", extra=[{"key": "content", "message": "not base64"}]
            ) from None
        row = await documents.add_version(
            DocumentKey(study, data.site, data.name),
            data.artifact,
            data.label,
            content,
            data.file_name,
            data.change_summary,
            actor=access.user_id,
            person=data.person,
            expires_on=data.expires_on,
        )
        return _out(row)

    @post("/status", opt=MANAGE, status_code=200, responses=problem_responses(400, 401, 403, 404, 422))
    async def change_status(
        self, study: StudyPath, data: JSONBody[StatusIn], access: AccessDep, today: Today
    ) -> DocumentVersionOut:
        """Move a version along draft -> in review -> approved -> effective -> superseded or expired, on a day
        no later than today. Approving an IRB/IEC-approved document names the approval: its reference, date and
        the SHA-256 of its letter, stored in the study as an IRB/IEC approval decision (TMF 04.01.02)."""
        may_manage(access, data.site, study)
        row = await documents.change_status(
            DocumentKey(study, data.site, data.name),
            data.label,
            data.status,
            data.on,
            data.reason,
            approval_of(data.approval_reference, data.approval_date, data.approval_letter_sha256),
            actor=access.user_id,
            today=today,
        )
        return _out(row)

    @get(
        "/content",
        opt=VIEW,
        media_type="application/octet-stream",
        operation_class=files(PDF, DOCX, PNG, JPEG),  # what an upload may be (rules/documents.py check_upload)
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def content(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        name: FromQuery[Name],
        label: FromQuery[Code],
        site: QueryStr = None,
        inline: FromQuery[bool] = False,
    ) -> Response[bytes]:
        """The version's bytes, checked against their SHA-256 first; the download (or, with `inline`, the
        preview in the browser) is audited. A version the viewer may not read is not found."""
        key = DocumentKey(study, site or None, name)
        version = await documents.get_version(key, label, reader(access, today))
        if not visible(access, study, version, today):
            raise PermissionDeniedException(f"{access.user_id} may not see {name}: it holds personal data")
        data = await documents.version_bytes(key, label, reader(access, today))
        response = Response(
            data, media_type=version.media_type, headers={"Content-Disposition": attachment(version.file_name, inline)}
        )
        await audit_log.record_alone(
            access.user_id,
            Change(
                "view" if inline else "export",
                "document_version",
                documents.record_id(key, label),
                None,
                {"sha256": version.sha256},
            ),
        )
        return response
