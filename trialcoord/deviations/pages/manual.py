"""Pages: a deviation someone found (a monitor at a visit, a coordinator reviewing a chart), recorded by hand at a
site or for one of its participants: any category, with its subcategory and classification. Needs
`record_deviation` at the chosen site; the form offers only those sites."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect, Template

from trialcoord.deviations import manual
from trialcoord.deviations.pages.queue import CLASSIFICATIONS, RECORD, Form, queue_url
from trialcoord.deviations.rules.deviation_review import CATEGORIES, SUBCATEGORIES
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import FormReader
from trialcoord.kernel.web.guard import Access
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols
from trialcoord.scheduling.sites import list_sites


class ManualDeviationPages(Controller):
    path = "/studies/{study:str}/deviations/found"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    include_in_schema = False

    @get("/", opt=RECORD)
    async def form(
        self, study: StudyPath, access: AccessDep, today: Today, participant: QueryStr = None, visit: QueryStr = None
    ) -> Template:
        values = {"subject_id": participant or "", "visit": visit or "", "occurred_on": today.isoformat()}
        return Template("deviation_new.html", context=await _context(study, access, today, values, {}))

    @post("/", opt=RECORD)
    async def record(self, study: StudyPath, data: Form, access: AccessDep, today: Today) -> Template | Redirect:
        form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
        site = form.text("site", "site", choice=True)
        category = form.text("category", "category", choice=True)
        subcategory = form.text("subcategory", "subcategory", required=False, choice=True)
        classification = form.text("classification", "classification", choice=True)
        occurred_on = form.date("occurred_on", "date it happened")
        description = form.text("description", "description of what happened")
        subject = form.text("subject_id", "participant", required=False)
        visit = form.text("visit", "visit", required=False)
        if site is not None and site not in await _sites(study, access, today):
            raise PermissionDeniedException(f"{access.user_id} may not record deviations at site {site}")
        if visit and not subject:
            form.errors["visit"] = "A visit belongs to a participant: enter the participant too."
        if not form.errors:
            try:
                row = await manual.record_manual(
                    study,
                    site or "",
                    category or "",
                    description or "",
                    occurred_on or today,
                    access.user_id,
                    subject_id=subject,
                    visit=visit,
                    subcategory=subcategory,
                    classification=classification or "",
                    today=today,
                )
                return Redirect(f"{queue_url(study)}/{row.id}?saved=recorded", status_code=303)
            except NotFound as error:  # the participant or visit named
                form.errors["visit" if subject and "visit" in str(error) else "subject_id"] = str(error)
            except (InvalidInput, Conflict) as error:
                form.errors.update(field_messages(error))
        context = await _context(study, access, today, form.data, form.errors)
        return Template("deviation_new.html", context=context, status_code=422)


async def _sites(study: str, access: Access, today: date) -> list[str]:
    """The sites where the reader records deviations."""
    return [
        row.code
        for row in await list_sites(study)
        if access.shows(row.code) and access.may(Action.RECORD_DEVIATION, study, row.code, today)
    ]


async def _context(
    study: str, access: Access, today: date, values: dict[str, str], errors: dict[str, str]
) -> dict[str, Any]:
    sites = await _sites(study, access, today)
    return {
        "study": await protocols.get_study(study),
        "sites": [(code, f"site {code}") for code in sites],
        "categories": [(c, c) for c in CATEGORIES],
        "subcategories": SUBCATEGORIES,
        "classifications": CLASSIFICATIONS,
        "form": {"site": sites[0] if len(sites) == 1 else "", "classification": "non_important", **values},
        "errors": errors,
        "today": today,
    }
