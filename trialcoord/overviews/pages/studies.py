"""Pages: the list of studies, and a study's page: its lists (the worklists and the participants, one tab at a
time, each a keyset page sorted by its columns and filtered), consent work and the enrolment form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from litestar import Controller, get, post
from litestar.exceptions import NotAuthorizedException, ValidationException
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from trialcoord.kernel.problems import Conflict, InvalidInput
from trialcoord.kernel.rules.access import Action, visible_sites
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader, participant_url
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.paging import Page, page_of, page_request
from trialcoord.kernel.web.params import AccessDep, AsOf, QueryStr, StudyPath, Today, as_of_or_today
from trialcoord.overviews.pages.consent import consent_lists
from trialcoord.overviews.pages.participants import required
from trialcoord.scheduling import participants, protocols, sites, worklists
from trialcoord.scheduling.visit_rows import visit_row

TABS = (  # the worklists (WorklistKind values), then the participants, as tab labels
    ("today", "Today"),
    ("week", "This week"),
    ("overdue", "Overdue"),
    ("missed_or_out_of_window", "Missed or out of window"),
    ("participants", "Participants"),
)
CONSENT_SHOWN = 10
StudyTab = Literal["today", "week", "overdue", "missed_or_out_of_window", "participants"]
# The status filter where a list has one: a participant's, or how a visit fell outside its window.
STATUS_FILTERS = {
    "participants": participants.PARTICIPANT_STATUSES,
    "missed_or_out_of_window": tuple(worklists.OUT_OF_WINDOW),
}


class StudyPages(Controller):
    include_in_schema = False

    @get("/studies/{study:str}", opt=needs(Action.VIEW_SCHEDULE, across_sites=True))
    async def study(
        self,
        study: StudyPath,
        today: Today,
        access: AccessDep,
        tab: FromQuery[StudyTab] = "today",
        site: QueryStr = None,
        as_of: AsOf = None,
        status: QueryStr = None,
        q: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: FromQuery[int | None] = None,
    ) -> Template:
        shown = Shown(tab, site or None, as_of_or_today(as_of, today), status or None, (q or "").strip() or None)
        context = await study_context(study, shown, access, today, (sort, order, after, size))
        return Template("study.html", context=context, status_code=400 if context["list_errors"] else 200)

    @post("/studies/{study:str}/participants", opt=needs(Action.ENROLL_PARTICIPANT, across_sites=True))
    async def enrol(self, study: StudyPath, data: Form, today: Today, access: AccessDep) -> Template | Redirect:
        form = FormReader(data)
        subject_id = form.text("subject_id", "subject ID")
        site = form.text("site", "site", choice=True)
        arm = form.text("arm", "arm", required=False, choice=True)
        enrolled_on = form.date("enrolled_on", "enrolment date", required=False)
        errors = form.errors
        if not errors:
            subject_id, site = required(subject_id), required(site)
            access.require_site(site, "enrol participants")
            try:
                allocation = await participants.allocation_scope(study, access.signed_in.grants, today)
                await participants.enroll_participant(
                    study,
                    subject_id,
                    site,
                    arm=arm,
                    enrolled_on=enrolled_on,
                    today=today,
                    actor=access.user_id,
                    allocation=allocation,
                )
                return Redirect(participant_url(study, subject_id), status_code=303)
            except (InvalidInput, Conflict) as error:
                errors = field_messages(error)
        shown = Shown("today", None, today, None, None)
        context = await study_context(study, shown, access, today, errors=errors, form=form.data)
        return Template("study.html", context=context, status_code=422)


@dataclass(frozen=True, slots=True)
class Shown:
    """What the study page's list shows: a tab, narrowed to a site, as of a day, to a status, to subject IDs
    holding a text; the filters every link of the list carries."""

    tab: str
    site: str | None
    as_of: date
    status: str | None
    text: str | None

    @property
    def params(self) -> dict[str, str | None]:
        return {
            "tab": self.tab,
            "site": self.site,
            "as_of": self.as_of.isoformat(),
            "status": self.status,
            "q": self.text,
        }


async def study_context(
    study: str,
    shown: Shown,
    access: Access,
    today: date,
    paging: tuple[str | None, str | None, str | None, int | None] = (None, None, None, None),
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> dict[str, Any]:
    if access.viewer is None:  # the guard lets only a signed-in viewer reach a study's page
        raise NotAuthorizedException("Sign in to continue.")
    audit = visible_sites(access.viewer.grants, Action.VIEW_AUDIT, study, today)
    export = visible_sites(access.viewer.grants, Action.EXPORT, study, today)
    # The enrolment form, only where its action is allowed: never a form that ends in a 403.
    enrol = visible_sites(access.viewer.grants, Action.ENROLL_PARTICIPANT, study, today)
    site_rows = [row for row in await sites.list_sites(study) if access.shows(row.code)]
    details = await protocols.get_study(study)
    protocol = await protocols.get_protocol(study)
    site = shown.site
    # A site's holidays and closures of the coming two weeks, beside its worklist (they move business-day windows).
    calendar = (
        await sites.site_calendar_days(study, site, shown.as_of, shown.as_of + timedelta(days=13)) if site else None
    )
    allocation = await participants.allocation_scope(study, access.viewer.grants, today)
    listed, list_errors = await _listed(study, shown, access, paging)
    return {
        "site_calendar": calendar,
        "study": details,
        # A blinded study's enrolment form offers arms only to who may see every enrolling site's allocation.
        "arms": [(arm.code, f"{arm.code} – {arm.name}") for arm in protocol.arms] if allocation.all_sites else [],
        "show_arms": bool(allocation.all_sites or allocation.sites),
        "site_options": [(row.code, f"{row.code} – {row.name}") for row in site_rows],
        "enrol_sites": [(row.code, f"{row.code} – {row.name}") for row in site_rows if enrol.includes(row.code)],
        # The first rows of each consent list; the consent page has them all, a page at a time.
        "consent": await consent_lists(study, access, today),
        "consent_shown": CONSENT_SHOWN,
        "page": listed,
        "rows": _rows(listed, shown.tab, allocation) if listed is not None else [],
        "list_errors": list_errors,
        "params": shown.params,
        "status_options": [(s, s.replace("_", " ")) for s in STATUS_FILTERS.get(shown.tab, ())],
        "can_audit": audit.all_sites or bool(audit.sites),
        "can_export": export.all_sites or bool(export.sites),
        "can_subscribe": site is not None and export.includes(site),  # a calendar feed of the site shown
        "audit_site": None if audit.all_sites or len(audit.sites) != 1 else next(iter(audit.sites)),
        "tabs": TABS,
        "tab": shown.tab,
        "tab_label": dict(TABS)[shown.tab],
        "site": site,
        "status": shown.status,
        "q": shown.text or "",
        "as_of": shown.as_of,
        "errors": errors or {},
        "form": form or {},
    }


async def _listed(
    study: str, shown: Shown, access: Access, paging: tuple[str | None, str | None, str | None, int | None]
) -> tuple[Page | None, dict[str, str]]:
    """The tab's page of rows (key, row), read in SQL past the cursor; a bad filter or cursor is named by its field."""
    sorts = participants.PARTICIPANT_SORTS if shown.tab == "participants" else worklists.WORKLIST_SORTS
    sort, order, after, size = paging
    within = None if access.sites is None or access.sites.all_sites else access.sites.sites
    try:
        request = page_request(
            sort,
            order,
            after,
            size,
            sorts=tuple(sorts),
            default="participant",
            key_width=len(sorts.get(sort or "participant", ())),
        )
        arguments = (shown.site, within, shown.status, shown.text, request.sort, request.descending, request.after)
        if shown.tab == "participants":
            rows: list = await participants.participants_page(study, *arguments, limit=request.size + 1)
        else:
            rows = await worklists.worklist_page(study, shown.as_of, shown.tab, *arguments, limit=request.size + 1)
    except (InvalidInput, ValidationException) as error:
        return None, field_messages(error)
    return page_of(rows, request, key=lambda pair: pair[0]), {}


def _rows(page: Page, tab: str, allocation) -> list:
    if tab == "participants":
        return [participants.masked(row, allocation) for _, row in page.rows]
    return [visit_row(row) for _, row in page.rows]
