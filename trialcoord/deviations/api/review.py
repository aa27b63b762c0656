"""Deviations over the API: one deviation with its review steps and signatures, a review step, several
deviations acknowledged at once, one step on several deviations (all or none, one signing ceremony).

Review steps are checked per step at the deviation's site (`TRANSITIONS` names the action; classification and
closure also need SIGN) before any password is asked. A deviation at a site the reader may not see answers 403
in the words it gives a missing one, to a reader of some sites (`kernel.web.denials`: IDs tell nothing).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody, PathParameter

from trialcoord.accounts.signing import signing_ceremony
from trialcoord.accounts.users import AccountRules
from trialcoord.deviations import bulk_review, deviation_review, queue
from trialcoord.deviations.api.deviations import (
    READ,
    RECORD,
    VIEW,
    AcknowledgedOut,
    DeviationDetail,
    DeviationOut,
    IdsIn,
    Refusal,
    StepIn,
    StepOut,
    StepSignatureOut,
    StepsIn,
    signed_in,
    visible_sites,
)
from trialcoord.deviations.deviation_review import Acknowledgement, JudgedSignature, StepFields
from trialcoord.deviations.queue import DeviationReview
from trialcoord.deviations.rules.deviation_review import TRANSITIONS, Transition, check_step
from trialcoord.kernel.problems import InvalidInput, NotFound, Problem, row_version_required
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, InstallationDep, StudyPath, Today
from trialcoord.scheduling.sites import list_sites

DeviationPath = Annotated[int, PathParameter(description="Deviation number", ge=1, le=2**31 - 1)]
_TRANSITION_OF: dict[str, Transition] = {str(step): transition for step, transition in TRANSITIONS.items()}


# Helpers ------------------------------------------------------------------------------------------


async def visible_deviation(access: Access, study: str, deviation_id: int) -> DeviationReview:
    row = await queue.get(study, deviation_id)
    if not access.shows(row.site):
        raise NotFound(f"study {study} has no deviation {deviation_id}")
    return row


def detail(row: DeviationReview, judged: list[JudgedSignature]) -> DeviationDetail:
    listed = {
        name: getattr(row, name) for name in DeviationDetail.__struct_fields__ if name not in ("steps", "signatures")
    }
    steps = [
        StepOut(
            s.id,
            s.step,
            s.from_state,
            s.to_state,
            s.actor,
            s.at,
            s.reason,
            msgspec.json.decode(s.detail) if s.detail else None,
        )
        for s in row.steps
    ]
    signatures = [msgspec.convert(s, StepSignatureOut, from_attributes=True) for s in judged]
    return msgspec.convert({**listed, "steps": steps, "signatures": signatures}, DeviationDetail, from_attributes=True)


class ReviewController(Controller):
    path = "/api/studies/{study:str}"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    tags = ["deviations"]

    @get("/deviations/{deviation_id:int}", opt=VIEW, responses=READ)
    async def one(self, study: StudyPath, deviation_id: DeviationPath, access: AccessDep) -> DeviationDetail:
        """A deviation with its review steps and its signatures, each judged now against the signer registry."""
        row = await visible_deviation(access, study, deviation_id)
        return detail(row, await deviation_review.verify_signatures(study, deviation_id))

    @post(
        "/deviations/{deviation_id:int}/steps",
        opt=RECORD,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    )
    async def step(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: JSONBody[StepIn],
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> DeviationDetail:
        """One review step: respond (site staff), acknowledge, classify, close, reopen (monitors). Classify
        and close are electronic signatures (review, approval): the password, and the user ID at the first
        signing of a continuous period. A wrong password changes nothing."""
        row = await visible_deviation(access, study, deviation_id)
        fields = dict(
            reason=data.reason,
            response=data.response,
            classification=data.classification,
            category=data.category,
            subcategory=data.subcategory,
        )
        transition = _TRANSITION_OF.get(data.step) or check_step(data.step, row.state, **fields)  # unknown: 422
        for action in transition.needs:
            if not access.may(action, study, row.site, today):
                raise PermissionDeniedException(
                    f"{access.user_id} may not {data.step} deviations at site"
                    f" {row.site} ({str(action).replace('_', ' ')})"
                )
        check_step(data.step, row.state, **fields)  # a step that cannot be taken asks for no password
        signing = None
        if data.row_version is None:  # never change (or sign) a record one has not seen
            raise row_version_required(f"to {data.step} deviation {deviation_id} (now version {row.row_version})")
        if transition.meaning is not None:
            signing = await signing_ceremony(
                signed_in(access), str(transition.meaning), data.password or "", data.user_id, rules=account_rules
            )
        await deviation_review.take_step(
            study,
            deviation_id,
            data.step,
            access.user_id,
            row_version=data.row_version,
            corrective_action=data.corrective_action,
            signing=signing,
            installation=installation,
            **fields,
        )
        return detail(
            await queue.get(study, deviation_id), await deviation_review.verify_signatures(study, deviation_id)
        )

    @post(
        "/deviations/acknowledge",
        opt=needs(Action.REVIEW_DEVIATION, across_sites=True),
        status_code=200,
        responses=READ,
    )
    async def acknowledge(self, study: StudyPath, data: JSONBody[IdsIn], access: AccessDep) -> AcknowledgedOut:
        """Take several deviations into review at once; each refused one is listed with the reason."""
        shown, refused = [], []
        for deviation_id in dict.fromkeys(data.ids):
            try:
                shown.append((await visible_deviation(access, study, deviation_id)).id)
            except NotFound as exc:
                refused.append(Refusal(deviation_id, str(exc)))
        done = Acknowledgement([], {})
        if shown or not refused:  # no IDs at all: the service names the field
            done = await deviation_review.acknowledge_many(study, shown, access.user_id)
        refused += [Refusal(int(i), reason) for i, reason in done.refused.items()]
        return AcknowledgedOut(done.acknowledged, sorted(refused, key=lambda r: r.id))

    @post(
        "/deviations/steps",
        opt=RECORD,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    )
    async def steps(
        self,
        study: StudyPath,
        data: JSONBody[StepsIn],
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> list[DeviationOut]:
        """One step on several deviations, all or none: respond (site staff), classify or close (monitors, one
        signing ceremony for the batch, one signature and audit entry per deviation; each deviation's
        row_version is required). A refusal names each deviation that cannot take the step, and why."""
        transition = _TRANSITION_OF.get(data.step)
        if transition is None or data.step not in bulk_review.BULK_STEPS:
            raise InvalidInput(
                [Problem(f"'{data.step}' is not a step taken in bulk; choose respond, classify or close", field="step")]
            )
        sites = [row.code for row in await list_sites(study) if access.shows(row.code)]
        permitted = [s for s in sites if all(access.may(a, study, s, today) for a in transition.needs)]
        if not permitted:
            raise PermissionDeniedException(f"{access.user_id} may not {data.step} deviations at any site of {study}")
        items = [(chosen.id, chosen.row_version) for chosen in data.deviations]
        if any(version is None for _, version in items):
            raise row_version_required(f"to {data.step} deviations, for each of them")
        fields = StepFields(
            response=data.response,
            corrective_action=data.corrective_action,
            classification=data.classification,
            category=data.category,
            subcategory=data.subcategory,
        )
        scope = {"visible": visible_sites(access), "permitted": permitted}
        await bulk_review.check_steps(study, data.step, items, fields, **scope)  # before any password is asked
        signing = None
        if transition.meaning is not None:
            signing = await signing_ceremony(
                signed_in(access), str(transition.meaning), data.password or "", data.user_id, rules=account_rules
            )
        done = await bulk_review.take_steps(
            study, data.step, items, access.user_id, fields, signing=signing, installation=installation, **scope
        )
        return [msgspec.convert(row, DeviationOut, from_attributes=True) for row in done]
