"""Pages: window extensions. The study's requests (filtered by state, a keyset page at a time) and its approved
window exceptions, with the form a coordinator requests one with; one request with the forms an investigator
approves or declines it with.

Reading needs `view_schedule`, filtered to the reader's sites; a request the reader may not see answers 403 in
the words it gives a missing one. Requesting needs `record_visit` at the participant's site, deciding
`approve_exception` at the request's. A form is shown only to a reader who may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Optional

from litestar import Controller, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromQuery, PathParameter, QueryParameter
from litestar.response import Redirect, Template

from trialcoord.deviations import manual, window_extensions
from trialcoord.deviations.pages.queue import VIEW, Form, check_cursor, visible_sites
from trialcoord.deviations.rules.window_extensions import MAX_DAYS, RequestState
from trialcoord.deviations.window_extensions import ExtensionRequest, request_path
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import FormReader, whole_number
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.paging import Page, PageRequest, page_in_memory, page_request
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import participants, protocols, worklists
from trialcoord.scheduling.schedules import widened
from trialcoord.scheduling.sites import list_sites
from trialcoord.scheduling.visit_rows import visit_row

ExtensionPath = Annotated[int, PathParameter(description="Window extension request number", ge=1, le=2**31 - 1)]
Size = FromQuery[Optional[int]]  # noqa: UP045 (see params.py)
StateParam = Annotated[Optional[str], QueryParameter(name="state", required=False)]  # noqa: UP045
REQUEST = needs(Action.RECORD_VISIT, across_sites=True)
DECIDE = needs(Action.APPROVE_EXCEPTION, across_sites=True)
SORTS = ("id", "participant", "visit", "site", "state")
STATES = [(str(s), str(s)) for s in RequestState]
NOTICES = {"requested": "Extension requested.", "approved": "Extension approved.", "declined": "Extension declined."}


class ExtensionPages(Controller):
    path = "/studies/{study:str}/extensions"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    include_in_schema = False

    @get("/", opt=VIEW)
    async def extensions(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        chosen: StateParam = None,
        participant: QueryStr = None,
        visit: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: Size = None,
    ) -> Template:
        request = page_request(sort, order, after, size, sorts=SORTS, default="id", key_width=2)
        check_cursor(request, numeric={"id"})
        form = {"participant": participant or "", "visit": visit or ""}  # a link from a schedule fills them in
        context = await _list_context(study, access, today, chosen, request, form)
        return Template("extensions.html", context=context, status_code=400 if context["errors"] else 200)

    @post("/", opt=REQUEST)
    async def request_extension(
        self, study: StudyPath, data: Form, access: AccessDep, today: Today
    ) -> Template | Redirect:
        form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
        subject = form.text("participant", "participant")
        visit = form.text("visit", "visit")
        days = {
            name: _days(form, name, label)
            for name, label in (("earlier_days", "days earlier"), ("later_days", "days later"))
        }
        reason = form.text("reason", "reason")
        if subject and "participant" not in form.errors:
            site = await participants.participant_site(study, subject)
            if site is None or not access.shows(site):  # a participant elsewhere reads as a missing one
                form.errors["participant"] = f"Study {study} has no participant {subject}."
            elif not access.may(Action.RECORD_VISIT, study, site, today):
                form.errors["participant"] = f"You may not request extensions at site {site}."
        if not form.errors:
            try:
                made = await window_extensions.request_extension(
                    study,
                    subject or "",
                    visit or "",
                    days["earlier_days"] or 0,
                    days["later_days"] or 0,
                    reason or "",
                    access.user_id,
                )
                return Redirect(f"{made.path}?saved=requested", status_code=303)
            except (InvalidInput, Conflict, NotFound) as error:
                form.errors.update(field_messages(error))
        request = page_request(None, None, None, None, sorts=SORTS, default="id", key_width=2)
        context = await _list_context(study, access, today, None, request, form.data)
        context["errors"] = form.errors
        return Template("extensions.html", context=context, status_code=422)

    @get("/{extension_id:int}", opt=VIEW)
    async def extension(
        self, study: StudyPath, extension_id: ExtensionPath, access: AccessDep, today: Today, saved: QueryStr = None
    ) -> Template:
        row = await window_extensions.get_request(study, extension_id, visible_sites(access))
        context = await _request_context(study, row, access, today)
        context["notice"] = NOTICES.get(saved or "")
        return Template("extension.html", context=context)

    @post("/{extension_id:int}/approve", opt=DECIDE)
    async def approve(
        self, study: StudyPath, extension_id: ExtensionPath, data: Form, access: AccessDep, today: Today
    ) -> Template | Redirect:
        return await _decide(study, extension_id, True, data, access, today)

    @post("/{extension_id:int}/decline", opt=DECIDE)
    async def decline(
        self, study: StudyPath, extension_id: ExtensionPath, data: Form, access: AccessDep, today: Today
    ) -> Template | Redirect:
        return await _decide(study, extension_id, False, data, access, today)


def _days(form: FormReader, name: str, label: str) -> int | None:
    raw = form.text(name, label, required=False) or "0"
    number = whole_number(raw, 4)
    if number is None or number > MAX_DAYS:
        form.errors[name] = f"Enter the {label} as a whole number from 0 to {MAX_DAYS}."
    return number


async def _decide(
    study: str, extension_id: int, approve: bool, data: dict[str, Any], access: Access, today: date
) -> Template | Redirect:
    row = await window_extensions.get_request(study, extension_id, visible_sites(access))
    if not access.may(Action.APPROVE_EXCEPTION, study, row.site, today):  # the guard could only check the study
        raise PermissionDeniedException(f"{access.user_id} may not decide window extensions at site {row.site}")
    form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
    reason = form.text("reason", "reason", required=not approve)
    if not form.errors:
        try:
            decided = await window_extensions.decide_extension(
                study,
                extension_id,
                approve,
                access.user_id,
                today,
                reason=reason,
                row_version=form.integer("row_version"),
                sites=visible_sites(access),
            )
            return Redirect(f"{decided.path}?saved={decided.state}", status_code=303)
        except (InvalidInput, Conflict) as error:
            form.errors.update(field_messages(error))
    context = await _request_context(study, await window_extensions.get_request(study, extension_id), access, today)
    step = "approve" if approve else "decline"
    errors = {(k if k == "reason" else ""): v for k, v in form.errors.items()}  # the others above the form
    context["failed"] = {"step": step, "errors": errors, "form": form.data}
    return Template("extension.html", context=context, status_code=422)


async def _list_context(
    study: str, access: Access, today: date, state: str | None, request: PageRequest, form: dict[str, str]
) -> dict[str, Any]:
    errors: dict[str, str] = {}
    chosen = state if state is not None else str(RequestState.REQUESTED)  # the default: those waiting
    if chosen and chosen not in {str(s) for s in RequestState}:
        errors["state"] = f"Choose a state from the list ({', '.join(RequestState)})."
    sites = visible_sites(access)
    rows = [] if errors else await window_extensions.extension_requests(study, sites, [chosen] if chosen else None)
    page: Page[ExtensionRequest] = page_in_memory(rows, request, _key(request.sort))
    shown = [code.code for code in await list_sites(study) if access.shows(code.code)]
    return {
        "study": await protocols.get_study(study),
        "page": page,
        "rows": page.rows,
        "params": {"state": chosen} if chosen else {"state": ""},
        "state": chosen,
        "states": STATES,
        "exceptions": [e for e in await manual.exceptions_of(study) if sites is None or e.site in sites],
        "form": form,
        "errors": errors,
        "notice": None,
        "can_request": any(access.may(Action.RECORD_VISIT, study, s, today) for s in shown),
    }


def _key(sort: str) -> Callable[[ExtensionRequest], tuple[Any, int]]:
    """A row's cursor in the list sorted by `sort` (one of `SORTS`, the request's attributes)."""
    return lambda row: (getattr(row, sort), row.id)


async def _request_context(study: str, row: ExtensionRequest, access: Access, today: date) -> dict[str, Any]:
    schedule = await worklists.participant_schedule(study, row.participant, today)
    visit = next((visit_row(v) for v in schedule if v.visit.visit == row.visit), None)
    proposed = widened(visit.earliest, visit.latest, (row.earlier_days, row.later_days)) if visit else None
    may_decide = row.state == RequestState.REQUESTED and access.may(Action.APPROVE_EXCEPTION, study, row.site, today)
    return {
        "study": await protocols.get_study(study),
        "row": row,
        "visit": visit,
        "proposed": proposed,
        "may_decide": may_decide,
        "notice": None,
        "failed": {"step": "", "errors": {}, "form": {}},
        "list_url": request_path(study, row.id).rsplit("/", 1)[0],
    }
