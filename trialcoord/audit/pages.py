"""Pages: the audit trail, filtered by record, user, action and date, a keyset page at a time, with CSV and PDF
copies.

The filter form submits every field, empty or not: an empty field filters nothing (an empty From or To is no
bound). A bad value is shown next to its field (400) and lists nothing. Pages follow `kernel/web/paging.py`: the
one sort is the sequence number, newest first by default; the cursor is the last sequence number shown.
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlencode

from litestar import Controller, get
from litestar.exceptions import ValidationException
from litestar.params import FromQuery
from litestar.response import Template

from trialcoord.audit.api import audit_filter, study_scope
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_store import AuditFilter, TrailEntry
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.forms import FormReader
from trialcoord.kernel.web.guard import needs
from trialcoord.kernel.web.paging import Page, PageRequest, page_of, page_request
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath

WORDS = {"record_type": "record type", "record_id": "record", "actor": "user", "action": "action"}
DAYS = {"since": "From date", "until": "To date"}
WORD_LENGTH = 200  # as the API's filters
Size = FromQuery[Optional[int]]  # noqa: UP045 (see params.py)


class AuditPages(Controller):
    include_in_schema = False

    @get("/audit", opt=needs(Action.VIEW_AUDIT))
    async def system_trail(
        self,
        record_type: QueryStr = None,
        record_id: QueryStr = None,
        actor: QueryStr = None,
        action: QueryStr = None,
        since: QueryStr = None,
        until: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: Size = None,
    ) -> Template:
        given = dict(record_type=record_type, record_id=record_id, actor=actor, action=action, since=since, until=until)
        context = await _trail(given, None, _request(sort, order, after, size), "/audit", "/api/audit/export")
        return _template({**context, "heading": "Audit trail"})

    @get("/studies/{study:str}/audit", opt=needs(Action.VIEW_AUDIT, across_sites=True))
    async def study_trail(
        self,
        study: StudyPath,
        access: AccessDep,
        site: QueryStr = None,
        record_type: QueryStr = None,
        record_id: QueryStr = None,
        actor: QueryStr = None,
        action: QueryStr = None,
        since: QueryStr = None,
        until: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: Size = None,
    ) -> Template:
        request = _request(sort, order, after, size)
        scope = study_scope(access, study, (site or "").strip() or None)
        given = dict(
            site=site,
            record_type=record_type,
            record_id=record_id,
            actor=actor,
            action=action,
            since=since,
            until=until,
        )
        base, export = f"/studies/{study}/audit", f"/api/studies/{study}/audit/export"
        context = await _trail(given, scope, request, base, export)
        return _template({**context, "heading": f"Audit trail of {study}", "study": study})


def _request(sort: str | None, order: str | None, after: str | None, size: int | None) -> PageRequest:
    return page_request(
        sort, order, after, size, sorts=("sequence",), default="sequence", key_width=1, descending_default=True
    )


def _template(context: dict[str, Any]) -> Template:
    return Template("audit.html", context=context, status_code=400 if context["errors"] else 200)


async def _trail(
    given: dict[str, str | None], scope: str | None, request: PageRequest, base: str, export: str
) -> dict[str, Any]:
    form = FormReader({name: value or "" for name, value in given.items()})
    words = {name: form.text(name, label, required=False) for name, label in WORDS.items()}
    for name, label in WORDS.items():
        if words[name] and len(words[name] or "") > WORD_LENGTH:
            form.errors[name] = f"The {label} is longer than {WORD_LENGTH} characters."
    since, until = (form.date(name, label, required=False) for name, label in DAYS.items())
    filters = {name: form.data.get(name, "") for name in given}
    page: Page[TrailEntry] = Page([], request, None, request.after is None)
    if not form.errors:
        where = audit_filter(
            words["record_type"], words["record_id"], words["actor"], words["action"], since, until, scope
        )
        page = await _read(where, request)
    kept = {name: value for name, value in filters.items() if value}
    query = urlencode(kept)
    return {
        "page": page,
        "rows": page.rows,
        "filters": filters,
        "params": kept,
        "errors": form.errors,
        "base": base,
        "csv": f"{export}?{query}&format=csv",
        "pdf": f"{export}?{query}&format=pdf",
    }


async def _read(where: AuditFilter, request: PageRequest) -> Page[TrailEntry]:
    """`size + 1` entries past the cursor's sequence number, in the page's direction."""
    bound = request.after[0] if request.after else None
    if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
        message = "after: not a cursor of this list (follow the page's Next link)"  # it holds a sequence number
        raise ValidationException(message, extra=[{"key": "after", "message": message}])
    if request.descending:
        rows = await audit_log.browse(where, bound, request.size + 1)
    else:
        rows = await audit_log.browse(where, None, request.size + 1, after=bound or 0, newest_first=False)
    return page_of(rows, request, lambda entry: (entry.sequence,))
