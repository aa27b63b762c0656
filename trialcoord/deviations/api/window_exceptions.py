"""Window exceptions over the API: an investigator's approved window extension of one visit (recorded directly, or
by deciding a coordinator's request), and the study's exceptions and requests (reading needs view_schedule; a
reader sees those of the sites they may see). Requesting needs record_visit at the participant's site, deciding
approve_exception at the request's."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody, PathParameter, QueryParameter

from trialcoord.deviations import manual, window_extensions
from trialcoord.deviations.api.deviations import (
    READ,
    VIEW,
    WRITE,
    ExceptionIn,
    ExceptionOut,
    ExtensionDecisionIn,
    ExtensionRequestIn,
    ExtensionRequestOut,
    visible_sites,
)
from trialcoord.kernel.problems import row_version_required
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.guard import needs
from trialcoord.kernel.web.params import AccessDep, StudyPath, SubjectPath, Today

ExtensionPath = Annotated[int, PathParameter(description="Window extension request number", ge=1, le=2**31 - 1)]
RequestStateParam = Annotated[
    Literal["requested", "approved", "declined"] | None, QueryParameter(name="state", required=False)
]


def _out(row: window_extensions.ExtensionRequest) -> ExtensionRequestOut:
    return msgspec.convert(row, ExtensionRequestOut, from_attributes=True)


class WindowExceptionController(Controller):
    path = "/api/studies/{study:str}"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    tags = ["deviations"]

    @post(
        "/participants/{subject_id:str}/window-exceptions",
        opt=needs(Action.APPROVE_EXCEPTION),
        status_code=201,
        responses=WRITE,
    )
    async def approve_exception(
        self, study: StudyPath, subject_id: SubjectPath, data: JSONBody[ExceptionIn], access: AccessDep, today: Today
    ) -> ExceptionOut:
        """An investigator's approved window extension of one visit: it prevents the early or late deviation
        only if approved on or before the visit day. Audited."""
        row = await manual.approve_exception(
            study,
            subject_id,
            data.visit,
            data.earlier_days,
            data.later_days,
            data.approved_on,
            data.reason,
            access.user_id,
            today=today,
        )
        return msgspec.convert(row, ExceptionOut, from_attributes=True)

    @get("/window-exceptions", opt=VIEW, responses=READ)
    async def exceptions(self, study: StudyPath, access: AccessDep) -> list[ExceptionOut]:
        return [
            ExceptionOut(
                e.subject_id,
                e.site,
                e.visit,
                e.earlier_days,
                e.later_days,
                date.fromisoformat(e.approved_on[:10]),
                e.approved_by,
                e.reason,
            )
            for e in await manual.exceptions_of(study)
            if access.shows(e.site)
        ]

    @post(
        "/participants/{subject_id:str}/window-extension-requests",
        opt=needs(Action.RECORD_VISIT),
        status_code=201,
        responses=WRITE,
    )
    async def request_extension(
        self, study: StudyPath, subject_id: SubjectPath, data: JSONBody[ExtensionRequestIn], access: AccessDep
    ) -> ExtensionRequestOut:
        """A coordinator asks an investigator to extend one visit's window (days earlier, days later, why);
        one open request per visit. Audited."""
        row = await window_extensions.request_extension(
            study, subject_id, data.visit, data.earlier_days, data.later_days, data.reason, access.user_id
        )
        return _out(row)

    @get("/window-extension-requests", opt=VIEW, responses=READ)
    async def extension_requests(
        self, study: StudyPath, access: AccessDep, states: RequestStateParam = None
    ) -> list[ExtensionRequestOut]:
        """The study's requests at the sites the reader sees, oldest first (`state`: only those)."""
        rows = await window_extensions.extension_requests(study, visible_sites(access), [states] if states else None)
        return [_out(row) for row in rows]

    @post(
        "/window-extension-requests/{extension_id:int}/decision",
        opt=needs(Action.APPROVE_EXCEPTION, across_sites=True),
        status_code=200,
        responses=WRITE,
    )
    async def decide(
        self,
        study: StudyPath,
        extension_id: ExtensionPath,
        data: JSONBody[ExtensionDecisionIn],
        access: AccessDep,
        today: Today,
    ) -> ExtensionRequestOut:
        """An investigator approves (the visit's window exception, approved today) or declines (with the
        reason) an open request. Audited."""
        row = await window_extensions.get_request(study, extension_id, visible_sites(access))
        if not access.may(Action.APPROVE_EXCEPTION, study, row.site, today):
            raise PermissionDeniedException(f"{access.user_id} may not approve window extensions at site {row.site}")
        if data.row_version is None:
            raise row_version_required(f"to decide extension request {extension_id} (now version {row.row_version})")
        decided = await window_extensions.decide_extension(
            study,
            extension_id,
            data.approve,
            access.user_id,
            today,
            reason=data.reason,
            row_version=data.row_version,
            sites=visible_sites(access),
        )
        return _out(decided)
