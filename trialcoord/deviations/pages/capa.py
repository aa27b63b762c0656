"""Pages: CAPA records (the study's records, filtered by state or text, sorted and read a keyset page at a time,
with the form creating one; one record with its deviations and the form closing it).

Reading needs `view_schedule`, filtered to the reader's sites; a CAPA record the reader may not see answers 403
in the words it gives a missing one, as the API does. Creating and closing a record need `record_deviation`. A form
is shown only to a reader who may use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Optional
from urllib.parse import quote

from litestar import Controller, get, post
from litestar.params import FromQuery, PathParameter, QueryParameter
from litestar.response import Redirect, Template

from trialcoord.deviations import deviation_review, queue
from trialcoord.deviations.deviation_review import CapaRecord
from trialcoord.deviations.pages.queue import NOTICES, RECORD, VIEW, Form, check_cursor, renamed, visible_sites
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import FormReader, whole_number
from trialcoord.kernel.web.guard import Access
from trialcoord.kernel.web.paging import PageRequest, page_in_memory, page_request
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols
from trialcoord.scheduling.sites import list_sites

CapaPath = Annotated[int, PathParameter(description="CAPA record number", ge=1, le=2**31 - 1)]
OWNER_LENGTH = 64  # as the API's owner (a code)
CAPA_STATES = ("open", "closed")
Size = FromQuery[Optional[int]]  # noqa: UP045 (see params.py)
StateParam = Annotated[Optional[str], QueryParameter(name="state", required=False)]  # noqa: UP045


class CapaPages(Controller):
    path = "/studies/{study:str}"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    include_in_schema = False

    @get("/capas", opt=VIEW)
    async def capas(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        chosen: StateParam = None,
        q: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: Size = None,
    ) -> Template:
        request = page_request(sort, order, after, size, sorts=tuple(SORTS), default="id", key_width=2)
        check_cursor(request, numeric={"id", "deviations"})
        context = await _capas_context(study, access, today, CapaFilters(chosen, q), request)
        return Template("capas.html", context=context, status_code=400 if context["filter_errors"] else 200)

    @post("/capas", opt=RECORD)
    async def create_capa(self, study: StudyPath, data: Form, access: AccessDep, today: Today) -> Template | Redirect:
        form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
        fields = {
            name: form.text(name, label)
            for name, label in (
                ("title", "title"),
                ("root_cause", "root cause"),
                ("corrective", "corrective action"),
                ("preventive", "preventive action"),
                ("owner", "owner"),
            )
        }
        if fields["owner"] and len(fields["owner"]) > OWNER_LENGTH:
            form.errors["owner"] = f"The owner is longer than {OWNER_LENGTH} characters."
        due_on = form.date("due_on", "due date", required=False)
        raw_ids = form.text("deviation_ids", "deviation numbers", required=False) or ""
        parts = [part for part in re.split(r"[\s,;]+", raw_ids) if part]
        ids = [n for n in map(whole_number, parts) if n is not None]
        if len(ids) != len(parts):
            form.errors["deviation_ids"] = "Enter deviation numbers such as 12, 15 (digits, separated by commas)."
        if not form.errors:  # every text field was given
            try:
                made = await deviation_review.create_capa(
                    study,
                    title=fields["title"] or "",
                    root_cause=fields["root_cause"] or "",
                    corrective=fields["corrective"] or "",
                    preventive=fields["preventive"] or "",
                    owner=fields["owner"] or "",
                    due_on=due_on,
                    deviation_ids=ids,
                    actor=access.user_id,
                    sites=visible_sites(access),
                )
                return Redirect(f"/studies/{quote(study, safe='')}/capas/{made.id}?saved=created", status_code=303)
            except (NotFound, Conflict) as error:  # unseen, or already grouped under another record
                form.errors["deviation_ids"] = str(error)
            except InvalidInput as error:
                form.errors.update(
                    renamed(
                        field_messages(error), {"corrective_action": "corrective", "preventive_action": "preventive"}
                    )
                )
        context = await _capas_context(study, access, today)
        context.update(errors=form.errors, form=form.data)
        return Template("capas.html", context=context, status_code=422)

    @get("/capas/{capa_id:int}", opt=VIEW)
    async def capa(
        self, study: StudyPath, capa_id: CapaPath, access: AccessDep, today: Today, saved: QueryStr = None
    ) -> Template:
        context = await _capa_context(study, capa_id, access, today)
        context["notice"] = NOTICES.get(saved or "")
        return Template("capa.html", context=context)

    @post("/capas/{capa_id:int}/close", opt=RECORD)
    async def close_capa(
        self, study: StudyPath, capa_id: CapaPath, data: Form, access: AccessDep, today: Today
    ) -> Template | Redirect:
        context = await _capa_context(study, capa_id, access, today)  # 403 (or 404) before anything else
        form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
        reason = form.text("reason", "effectiveness check")
        if reason is not None and not form.errors:
            try:
                await deviation_review.close_capa(study, capa_id, access.user_id, reason, sites=visible_sites(access))
                return Redirect(f"/studies/{quote(study, safe='')}/capas/{capa_id}?saved=closed", status_code=303)
            except (InvalidInput, Conflict) as error:
                form.errors.update(field_messages(error))
        context.update(errors=form.errors, form=form.data)
        return Template("capa.html", context=context, status_code=422)


@dataclass(frozen=True)
class CapaFilters:
    state: str | None = None
    q: str | None = None  # a record number, or part of its title or owner

    def params(self) -> dict[str, str]:
        return {k: v for k, v in (("state", self.state), ("q", self.q)) if v}

    def keeps(self, capa: CapaRecord) -> bool:
        text = (self.q or "").strip().lower()
        matches = not text or text == str(capa.id) or text in capa.title.lower() or text in capa.owner.lower()
        return matches and (not self.state or capa.state == self.state)


SORTS: dict[str, Callable[[CapaRecord], Any]] = {
    "id": lambda c: c.id,
    "title": lambda c: c.title.lower(),
    "owner": lambda c: c.owner.lower(),
    "due_on": lambda c: c.due_on,
    "state": lambda c: c.state,
    "deviations": lambda c: len(c.deviations),
}


async def _capas_context(
    study: str, access: Access, today: date, filters: CapaFilters | None = None, request: PageRequest | None = None
) -> dict[str, Any]:
    filters = filters or CapaFilters()
    request = request or page_request(None, None, None, None, sorts=tuple(SORTS), default="id", key_width=2)
    errors: dict[str, str] = {}
    if filters.state and filters.state not in CAPA_STATES:
        errors["state"] = f"Choose a state from the list ({', '.join(CAPA_STATES)})."
    capas = [] if errors else await deviation_review.list_capas(study, visible_sites(access), access.user_id)
    value = SORTS[request.sort]  # list_capas reads a study's records at once: a few hundred at most
    page = page_in_memory([c for c in capas if filters.keeps(c)], request, lambda c: (value(c), c.id))
    return {
        "study": await protocols.get_study(study),
        "capas": page.rows,
        "page": page,
        "base": f"/studies/{quote(study, safe='')}/capas",
        "params": filters.params(),
        "filters": filters,
        "capa_states": [(s, s) for s in CAPA_STATES],
        "filter_errors": errors,
        "errors": {},
        "form": {},
        "notice": None,
        "can_record": await _may_record(study, access, today),
    }


async def _capa_context(study: str, capa_id: int, access: Access, today: date) -> dict[str, Any]:
    capa = await deviation_review.get_capa(
        study, capa_id, visible_sites(access), access.user_id
    )  # NotFound if unseen: 403 to a reader of some sites
    members = [await queue.get(study, i) for i in capa.deviations]
    return {
        "study": await protocols.get_study(study),
        "capa": capa,
        "members": members,
        "errors": {},
        "form": {},
        "notice": None,
        "can_record": await _may_record(study, access, today),
    }


async def _may_record(study: str, access: Access, today: date) -> bool:
    """CAPA forms are for those who record deviations at one of the sites they see."""
    return any(
        access.may(Action.RECORD_DEVIATION, study, row.code, today)
        for row in await list_sites(study)
        if access.shows(row.code)
    )
