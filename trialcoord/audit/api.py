"""Browsing and exporting the audit trail: system-wide (administrators) or one study's records.

A study's trail is the entries whose record ID starts with the study's code; someone who sees only some
sites of a study sees the entries of one of those sites at a time (record IDs are STUDY/SITE/...), by
default their only site.
Every CSV or PDF copy is itself audited as an export.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, Optional

import msgspec
from litestar import Controller, Response, get
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import FromQuery, QueryParameter

from trialcoord.audit.copies import TrailCopy
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_store import AuditFilter, TrailEntry
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.kernel.web.downloads import CSV, PDF
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.openapi import files
from trialcoord.kernel.web.params import AccessDep, StudyPath, plausible

PAGE_SIZE = 100
ExportFormat = Literal["csv", "pdf"]
Word = FromQuery[Optional[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]]]  # noqa: UP045 (see params.py)
Day = FromQuery[Optional[date]]  # noqa: UP045
Before = Annotated[int | None, QueryParameter(ge=1, le=2**62, required=False)]
FormatParam = Annotated[
    ExportFormat, QueryParameter(name="format", description="csv (electronic copy) or pdf (human-readable)")
]


class AuditEntryOut(msgspec.Struct):
    sequence: int
    recorded_at: str
    actor: str
    action: str
    record_type: str
    record_id: str
    old: Any
    new: Any
    reason: str | None
    leaf_hash: str


def _out(entry: TrailEntry) -> AuditEntryOut:
    return msgspec.convert(entry, AuditEntryOut, from_attributes=True)


def audit_filter(
    record_type: str | None,
    record_id: str | None,
    actor: str | None,
    action: str | None,
    since: date | None,
    until: date | None,
    within: str | None = None,
) -> AuditFilter:
    """Dates are whole UTC days, `until` inclusive."""
    since, until = plausible(since, "since"), plausible(until, "until")
    start = utc_instant(datetime.combine(since, time(), UTC)) if since else None
    end = utc_instant(datetime.combine(until + timedelta(days=1), time(), UTC)) if until else None
    return AuditFilter(record_type, record_id, actor, action, start, end, within)


def study_scope(access: Access, study: str, site: str | None) -> str:
    """The record-ID prefix the viewer may browse in `study`."""
    if site:
        if not access.shows(site):
            raise PermissionDeniedException(f"{access.user_id} may not view the audit trail of site {site}")
        return f"{study}/{site}/"
    if access.sites is not None and not access.sites.all_sites and len(access.sites.sites) == 1:
        return f"{study}/{next(iter(access.sites.sites))}/"
    if access.sites is not None and not access.sites.all_sites:
        raise PermissionDeniedException(
            f"{access.user_id} sees some sites of {study} only: choose a site ({', '.join(sorted(access.sites.sites))})"
        )
    return f"{study}/"


async def export(where: AuditFilter, form: str, title: str, filters: dict[str, str], access: Access) -> Response:
    if access.viewer is None:  # the guard lets only a signed-in viewer export
        raise NotAuthorizedException("Sign in to continue.")
    copy = TrailCopy(where, form, title, filters, access.viewer.printed_name + f" ({access.user_id})")
    data = (await copy.take_out(form, access.user_id)).data
    name = "audit-trail-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in filters.get("scope", "all"))
    media = CSV if form == "csv" else "application/pdf"
    return Response(
        data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name.strip("_")}.{form}"'}
    )


def _filters(scope: str, **values: Any) -> dict[str, str]:
    return {"scope": scope, **{key: str(value) for key, value in values.items() if value not in (None, "")}}


class AuditController(Controller):
    path = "/api"
    tags = ["audit"]

    @get("/audit", opt=needs(Action.VIEW_AUDIT), responses=problem_responses(400, 401, 403))
    async def system_trail(
        self,
        record_type: Word = None,
        record_id: Word = None,
        actor: Word = None,
        action: Word = None,
        since: Day = None,
        until: Day = None,
        before: Before = None,
    ) -> list[AuditEntryOut]:
        """Every entry, newest first, a page of 100 at a time (`before`: the last sequence number seen)."""
        where = audit_filter(record_type, record_id, actor, action, since, until)
        return [_out(entry) for entry in await audit_log.browse(where, before, PAGE_SIZE)]

    @get(
        "/audit/export",
        opt=needs(Action.VIEW_AUDIT),
        responses=problem_responses(400, 401, 403, 422),
        media_type="application/octet-stream",
        operation_class=files(CSV, PDF),
    )
    async def system_export(
        self,
        access: AccessDep,
        form: FormatParam = "csv",
        record_type: Word = None,
        record_id: Word = None,
        actor: Word = None,
        action: Word = None,
        since: Day = None,
        until: Day = None,
    ) -> Response:
        where = audit_filter(record_type, record_id, actor, action, since, until)
        filters = _filters(
            "all", record_type=record_type, record_id=record_id, actor=actor, action=action, since=since, until=until
        )
        return await export(where, form, "Audit trail", filters, access)

    @get(
        "/studies/{study:str}/audit",
        opt=needs(Action.VIEW_AUDIT, across_sites=True),
        responses=problem_responses(400, 401, 403),
    )
    async def study_trail(
        self,
        study: StudyPath,
        access: AccessDep,
        site: Word = None,
        record_type: Word = None,
        record_id: Word = None,
        actor: Word = None,
        action: Word = None,
        since: Day = None,
        until: Day = None,
        before: Before = None,
    ) -> list[AuditEntryOut]:
        where = audit_filter(record_type, record_id, actor, action, since, until, study_scope(access, study, site))
        return [_out(entry) for entry in await audit_log.browse(where, before, PAGE_SIZE)]

    @get(
        "/studies/{study:str}/audit/export",
        opt=needs(Action.VIEW_AUDIT, across_sites=True),
        responses=problem_responses(400, 401, 403, 422),
        media_type="application/octet-stream",
        operation_class=files(CSV, PDF),
    )
    async def study_export(
        self,
        study: StudyPath,
        access: AccessDep,
        form: FormatParam = "csv",
        site: Word = None,
        record_type: Word = None,
        record_id: Word = None,
        actor: Word = None,
        action: Word = None,
        since: Day = None,
        until: Day = None,
    ) -> Response:
        scope = study_scope(access, study, site)
        where = audit_filter(record_type, record_id, actor, action, since, until, scope)
        filters = _filters(
            scope.rstrip("/"),
            record_type=record_type,
            record_id=record_id,
            actor=actor,
            action=action,
            since=since,
            until=until,
        )
        return await export(where, form, f"Audit trail of {scope.rstrip('/')}", filters, access)
