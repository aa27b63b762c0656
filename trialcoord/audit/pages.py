"""Pages: the audit trail, filtered by record, user, action and date, with CSV and PDF copies."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from litestar import Controller, get
from litestar.response import Template

from trialcoord.audit.api import PAGE_SIZE, Before, Day, Word, audit_filter, study_scope
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_store import TrailEntry
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.guard import needs
from trialcoord.kernel.web.params import AccessDep, StudyPath


def _context(rows: list[TrailEntry], base: str, export: str, filters: dict, heading: str) -> dict:
    kept = {key: value for key, value in filters.items() if value not in (None, "")}
    older = f"{base}?{urlencode({**kept, 'before': rows[-1].sequence})}" if len(rows) == PAGE_SIZE else None
    query = urlencode(kept)
    return {
        "rows": rows,
        "filters": {k: ("" if v is None else v) for k, v in filters.items()},
        "base": base,
        "older": older,
        "csv": f"{export}?{query}&format=csv",
        "pdf": f"{export}?{query}&format=pdf",
        "heading": heading,
    }


class AuditPages(Controller):
    include_in_schema = False

    @get("/audit", opt=needs(Action.VIEW_AUDIT))
    async def system_trail(
        self,
        record_type: Word = None,
        record_id: Word = None,
        actor: Word = None,
        action: Word = None,
        since: Day = None,
        until: Day = None,
        before: Before = None,
    ) -> Template:
        rows = await audit_log.browse(
            audit_filter(record_type, record_id, actor, action, since, until), before, PAGE_SIZE
        )
        filters = dict(
            record_type=record_type,
            record_id=record_id,
            actor=actor,
            action=action,
            since=_day(since),
            until=_day(until),
        )
        return Template("audit.html", context=_context(rows, "/audit", "/api/audit/export", filters, "Audit trail"))

    @get("/studies/{study:str}/audit", opt=needs(Action.VIEW_AUDIT, across_sites=True))
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
    ) -> Template:
        scope = study_scope(access, study, site)
        rows = await audit_log.browse(
            audit_filter(record_type, record_id, actor, action, since, until, scope), before, PAGE_SIZE
        )
        filters = dict(
            site=site,
            record_type=record_type,
            record_id=record_id,
            actor=actor,
            action=action,
            since=_day(since),
            until=_day(until),
        )
        base = f"/studies/{study}/audit"
        context = _context(rows, base, f"/api/studies/{study}/audit/export", filters, f"Audit trail of {study}")
        return Template("audit.html", context={**context, "study": study})


def _day(day: date | None) -> str | None:
    return day.isoformat() if day else None
