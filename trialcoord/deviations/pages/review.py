"""Pages: one deviation with its participant's timeline and review steps.

Reading needs `view_schedule`; a deviation the reader may not see answers 404 with the words of a missing one,
as the API does. Each review step has its own route guarded by the step's action, checked again at the
deviation's site; classification and closure run the signing ceremony (password, and the user ID at the first
signing). A form is shown only to a reader who may use it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from trialcoord.accounts.signing import signing_ceremony
from trialcoord.accounts.users import AccountRules
from trialcoord.deviations import deviation_review, queue
from trialcoord.deviations.api.deviations import signed_in
from trialcoord.deviations.pages.queue import (
    CLASSIFICATIONS,
    NOTICES,
    REVIEW,
    VIEW,
    Form,
    queue_url,
    renamed,
    visible_deviation,
)
from trialcoord.deviations.queue import DeviationReview
from trialcoord.deviations.rules.deviation_review import CATEGORIES, SUBCATEGORIES, TRANSITIONS, Step, check_step
from trialcoord.documents.rules.signatures import local_time
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import FormReader
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, InstallationDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols, worklists
from trialcoord.scheduling.sites import list_sites
from trialcoord.scheduling.timeline import build_timeline
from trialcoord.scheduling.visit_rows import visit_row

SIGNED_REVIEW = needs(Action.REVIEW_DEVIATION, Action.SIGN, across_sites=True)  # SIGN checked at the site below
DeviationPath = Annotated[int, PathParameter(description="Deviation number", ge=1, le=2**31 - 1)]  # int32 column
STEP_FIELDS = {  # the fields each step's form shows; a message for any other goes above the form
    Step.RESPOND: {"reason", "corrective_action"},
    Step.ACKNOWLEDGE: set(),
    Step.REOPEN: {"reason"},
    Step.CLASSIFY: {"classification", "category", "subcategory", "user_id", "password"},
    Step.CLOSE: {"user_id", "password"},
}


class ReviewPages(Controller):
    path = "/studies/{study:str}"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    include_in_schema = False

    @get("/deviations/{deviation_id:int}", opt=VIEW)
    async def deviation(
        self, study: StudyPath, deviation_id: DeviationPath, access: AccessDep, today: Today, saved: QueryStr = None
    ) -> Template:
        row = await visible_deviation(study, deviation_id, access)
        context = await _deviation_context(study, row, access, today)
        context["notice"] = NOTICES.get(saved or "")
        return Template("deviation.html", context=context)

    @post("/deviations/{deviation_id:int}/respond", opt=needs(Action.RESPOND_DEVIATION, across_sites=True))
    async def respond(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.RESPOND, data, access, today, account_rules, installation)

    @post("/deviations/{deviation_id:int}/acknowledge", opt=REVIEW)
    async def acknowledge_one(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.ACKNOWLEDGE, data, access, today, account_rules, installation)

    @post("/deviations/{deviation_id:int}/classify", opt=SIGNED_REVIEW)
    async def classify(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.CLASSIFY, data, access, today, account_rules, installation)

    @post("/deviations/{deviation_id:int}/close", opt=SIGNED_REVIEW)
    async def close(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.CLOSE, data, access, today, account_rules, installation)

    @post("/deviations/{deviation_id:int}/reopen", opt=REVIEW)
    async def reopen(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.REOPEN, data, access, today, account_rules, installation)


def _offered(study: str, row: DeviationReview, access: Access, today: date) -> list[str]:
    """The steps the reader may take now: the state allows them and their grants at the site do."""
    offered = []
    for step, transition in TRANSITIONS.items():
        if row.state in transition.sources and all(access.may(a, study, row.site, today) for a in transition.needs):
            offered.append(str(step))
    return offered


async def _take(
    study: str,
    deviation_id: int,
    step: Step,
    data: dict[str, Any],
    access: Access,
    today: date,
    rules: AccountRules,
    installation: Installation,
) -> Template | Redirect:
    row = await visible_deviation(study, deviation_id, access)
    transition = TRANSITIONS[step]
    for action in transition.needs:
        if not access.may(action, study, row.site, today):  # the guard could only check the study
            raise PermissionDeniedException(
                f"{access.user_id} may not {step} deviations at site {row.site} ({str(action).replace('_', ' ')})"
            )
    form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
    values = _step_values(step, form)
    errors = form.errors
    if not errors:
        try:
            check_step(step, row.state, **{k: v for k, v in values.items() if k != "corrective_action"})
            signing = None
            if transition.meaning is not None:
                password = data.get("password")
                signing = await signing_ceremony(
                    signed_in(access),
                    str(transition.meaning),
                    password if isinstance(password, str) else "",
                    form.data.get("user_id") or None,
                    rules=rules,
                )
            await deviation_review.take_step(
                study,
                deviation_id,
                step,
                access.user_id,
                row_version=form.integer("row_version"),
                signing=signing,
                installation=installation,
                **values,
            )
            return Redirect(f"{queue_url(study)}/{deviation_id}?saved={step}", status_code=303)
        except (InvalidInput, Conflict, NotFound) as error:
            errors = renamed(field_messages(error), {"response": "reason"})
    errors = {(k if k in STEP_FIELDS[step] else ""): v for k, v in errors.items()}
    context = await _deviation_context(study, await queue.get(study, deviation_id), access, today)
    values = {k: v for k, v in form.data.items() if k != "password"}  # a password is never sent back
    context["failed"] = {"step": str(step), "errors": errors, "form": values}
    return Template("deviation.html", context=context, status_code=422)


def _step_values(step: Step, form: FormReader) -> dict[str, Any]:
    if step is Step.RESPOND:
        return {
            "response": form.text("reason", "reason the deviation happened"),
            "corrective_action": form.text("corrective_action", "corrective action", required=False),
        }
    if step is Step.REOPEN:
        return {"reason": form.text("reason", "reason for reopening")}
    if step in (Step.CLASSIFY, Step.CLOSE):
        form.text("password", "password")  # never an empty attempt: a failed one counts towards lock-out
    if step is Step.CLASSIFY:
        return {
            "classification": form.text("classification", "classification", choice=True),
            "category": form.text("category", "category", choice=True),
            "subcategory": form.text("subcategory", "subcategory", required=False, choice=True),
        }
    return {}


async def _deviation_context(study: str, row: DeviationReview, access: Access, today: date) -> dict[str, Any]:
    zone = next((s.time_zone for s in await list_sites(study) if s.code == row.site), "UTC")
    signatures = [  # as the template shows them: with the instant at the site's time zone
        {**asdict(s), "local_time": _local(s.instant, zone)}
        for s in await deviation_review.verify_signatures(study, row.id)
    ]
    steps = [{**asdict(s), "local_time": _local(s.at, zone)} for s in row.steps]
    timeline = None
    if row.participant:
        visits = [visit_row(v) for v in await worklists.participant_schedule(study, row.participant, today)]
        timeline = build_timeline(visits, today, highlight=row.visit)
    return {
        "study": await protocols.get_study(study),
        "row": row,
        "steps": steps,
        "signatures": signatures,
        "timeline": timeline,
        "offered": _offered(study, row, access, today),
        "today": today,
        "age": queue.age_days(row, today),
        "detected_at": _local(row.detected_at, zone),
        "closed_at": _local(row.closed_at, zone) if row.closed_at else None,
        "classifications": CLASSIFICATIONS,
        "categories": [(c, c) for c in CATEGORIES],
        "subcategories": SUBCATEGORIES,
        "notice": None,
        "failed": {"step": "", "errors": {}, "form": {}},
    }


def _local(instant: str, zone: str) -> str:
    try:
        return local_time(instant, zone, ZoneInfo(zone))
    except ValueError:  # an instant in another format: shown as stored
        return instant
