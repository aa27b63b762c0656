"""Pages: the list of studies, and a study's worklists, participants and enrolment form."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from litestar import Controller, get, post
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from trialcoord.documents import consent_checks
from trialcoord.kernel.problems import Conflict, InvalidInput
from trialcoord.kernel.rules.access import Action, visible_sites
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader, participant_url
from trialcoord.kernel.web.guard import SIGNED_IN, Access, needs
from trialcoord.kernel.web.params import AccessDep, AsOf, QueryStr, StudyPath, Today, WorklistKind, as_of_or_today
from trialcoord.overviews.pages.participants import required
from trialcoord.scheduling import participants, protocols, sites, worklists
from trialcoord.scheduling.visit_rows import visit_row

TABS = (  # WorklistKind values, as tab labels
    ("today", "Today"),
    ("week", "This week"),
    ("overdue", "Overdue"),
    ("missed_or_out_of_window", "Missed or out of window"),
)


class StudyPages(Controller):
    include_in_schema = False

    @get("/", opt=SIGNED_IN)
    async def index(self, access: AccessDep, today: Today) -> Template:
        studies = [row for row in await protocols.list_studies() if access.may_see_study(row.code, today)]
        return Template("index.html", context={"studies": studies})

    @get("/studies/{study:str}", opt=needs(Action.VIEW_SCHEDULE, across_sites=True))
    async def study(
        self,
        study: StudyPath,
        today: Today,
        access: AccessDep,
        tab: FromQuery[WorklistKind] = "today",
        site: QueryStr = None,
        as_of: AsOf = None,
    ) -> Template:
        context = await study_context(study, tab, site or None, as_of_or_today(as_of, today), access, today)
        return Template("study.html", context=context)

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
        context = await study_context(study, "today", None, today, access, today, errors=errors, form=form.data)
        return Template("study.html", context=context, status_code=422)


async def study_context(
    study: str,
    tab: str,
    site: str | None,
    as_of: date,
    access: Access,
    today: date,
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
    worklist = await worklists.worklist(study, as_of, site=site, kind=tab)
    # A site's holidays and closures of the coming two weeks, beside its worklist (they move business-day windows).
    calendar = await sites.site_calendar_days(study, site, as_of, as_of + timedelta(days=13)) if site else None
    allocation = await participants.allocation_scope(study, access.viewer.grants, today)
    shown = [row for row in await participants.list_participants(study, site) if access.shows(row.site)]
    return {
        "site_calendar": calendar,
        "study": details,
        # A blinded study's enrolment form offers arms only to who may see every enrolling site's allocation.
        "arms": [(arm.code, f"{arm.code} – {arm.name}") for arm in protocol.arms] if allocation.all_sites else [],
        "show_arms": bool(allocation.all_sites or allocation.sites),
        "site_options": [(row.code, f"{row.code} – {row.name}") for row in site_rows],
        "enrol_sites": [(row.code, f"{row.code} – {row.name}") for row in site_rows if enrol.includes(row.code)],
        "participants": [participants.masked(row, allocation) for row in shown],
        "reconsent": [row for row in await consent_checks.reconsent(study, today) if access.shows(row.site)],
        "consent_candidates": [row for row in await consent_checks.candidates(study) if access.shows(row.site)],
        "consent_issues": [row for row in await consent_checks.issues(study) if access.shows(row.site)],
        "worklist": [visit_row(row) for row in worklist if access.shows(row.site)],
        "can_audit": audit.all_sites or bool(audit.sites),
        "can_export": export.all_sites or bool(export.sites),
        "audit_site": None if audit.all_sites or len(audit.sites) != 1 else next(iter(audit.sites)),
        "tabs": TABS,
        "tab": tab,
        "tab_label": dict(TABS)[tab],
        "site": site,
        "as_of": as_of,
        "errors": errors or {},
        "form": form or {},
    }
