"""Pages: the same review step on the deviations checked in the queue: the site's response, a classification, a
closure (`bulk_review`). All or none: a refusal lists each deviation that cannot take the step and why, and the
queue comes back with the same rows checked. A classification or closure asks for the password once (the signing
ceremony) and signs each deviation. The guard checks the step's action at one of the reader's sites; each
deviation is checked at its own site.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from trialcoord.accounts.signing import signing_ceremony
from trialcoord.accounts.users import AccountRules
from trialcoord.deviations import bulk_review
from trialcoord.deviations.api.deviations import signed_in
from trialcoord.deviations.deviation_review import StepFields
from trialcoord.deviations.pages.queue import Form, chosen_ids, queue_context, queue_url, visible_sites
from trialcoord.deviations.pages.review import SIGNED_REVIEW
from trialcoord.deviations.rules.deviation_review import TRANSITIONS, Step
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import Conflict, InvalidInput
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import FormReader, whole_number
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, InstallationDep, StudyPath, Today
from trialcoord.scheduling.sites import list_sites

RESPOND = needs(Action.RESPOND_DEVIATION, across_sites=True)


class BulkPages(Controller):
    path = "/studies/{study:str}/deviations/bulk"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    include_in_schema = False

    @post("/respond", opt=RESPOND)
    async def respond(
        self,
        study: StudyPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> Template | Redirect:
        return await _bulk(study, Step.RESPOND, data, access, today, account_rules, installation)

    @post("/classify", opt=SIGNED_REVIEW)
    async def classify(
        self,
        study: StudyPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> Template | Redirect:
        return await _bulk(study, Step.CLASSIFY, data, access, today, account_rules, installation)

    @post("/close", opt=SIGNED_REVIEW)
    async def close(
        self,
        study: StudyPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> Template | Redirect:
        return await _bulk(study, Step.CLOSE, data, access, today, account_rules, installation)


async def _bulk(
    study: str,
    step: Step,
    data: dict[str, Any],
    access: Access,
    today: date,
    rules: AccountRules,
    installation: Installation,
) -> Template | Redirect:
    chosen = chosen_ids(data)
    form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
    numbers = [whole_number(raw) for raw in chosen]
    refused: list[str] = [
        f"'{raw}' is not a deviation number" for raw, n in zip(chosen, numbers, strict=True) if n is None
    ]
    items = [(n, form.integer(f"row_version_{n}")) for n in numbers if n is not None]
    fields = _fields(step, form)
    errors = dict(form.errors)
    if not chosen:
        errors["ids"] = "Choose at least one deviation."
    if not errors and not refused:
        sites = [row.code for row in await list_sites(study) if access.shows(row.code)]
        permitted = [s for s in sites if all(access.may(a, study, s, today) for a in TRANSITIONS[step].needs)]
        scope = {"visible": visible_sites(access), "permitted": permitted}
        try:
            await bulk_review.check_steps(study, step, items, fields, **scope)  # before any password is asked
            signing = None
            if TRANSITIONS[step].meaning is not None:
                password = data.get("password")
                signing = await signing_ceremony(
                    signed_in(access),
                    str(TRANSITIONS[step].meaning),
                    password if isinstance(password, str) else "",
                    form.data.get("user_id") or None,
                    rules=rules,
                )
            done = await bulk_review.take_steps(
                study, step, items, access.user_id, fields, signing=signing, installation=installation, **scope
            )
            return Redirect(f"{queue_url(study)}?done={step}-{len(done)}", status_code=303)
        except InvalidInput as error:
            refused += [p.message for p in error.problems if p.field == "ids"]
            errors.update({k: v for k, v in field_messages(error).items() if k != "ids"})
        except Conflict as error:
            refused += str(error).split("; ")
    context = await queue_context(study, access, today)
    values = {k: v for k, v in form.data.items() if k != "password"}  # a password is never sent back
    context["bulk"] = {"step": str(step), "errors": errors, "refused": refused, "form": values, "chosen": chosen}
    return Template("deviations.html", context=context, status_code=422)


def _fields(step: Step, form: FormReader) -> StepFields:
    """The step's own fields from the form (a missing one is an error at its field)."""
    if step is Step.RESPOND:
        return StepFields(
            response=form.text("response", "reason the deviations happened"),
            corrective_action=form.text("corrective_action", "corrective action", required=False),
        )
    form.text("password", "password")  # never an empty attempt: a failed one counts towards lock-out
    if step is Step.CLASSIFY:
        return StepFields(
            classification=form.text("classification", "classification", choice=True),
            category=form.text("category", "category", choice=True),
            subcategory=form.text("subcategory", "subcategory", required=False, choice=True),
        )
    return StepFields()
