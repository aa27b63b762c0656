"""Window exceptions over the API: an investigator's approved window extension of one visit, and the study's
exceptions (reading needs view_schedule; a reader sees those of the sites they may see)."""

from __future__ import annotations

from datetime import date

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody

from trialcoord.deviations import manual
from trialcoord.deviations.api.deviations import READ, VIEW, WRITE, ExceptionIn, ExceptionOut
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.guard import needs
from trialcoord.kernel.web.params import AccessDep, StudyPath, SubjectPath, Today
from trialcoord.scheduling import participants


class WindowExceptionController(Controller):
    path = "/api/studies/{study:str}"
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
        site_of = {p.subject_id: p.site for p in await participants.list_participants(study)}
        return [
            ExceptionOut(
                e.subject_id,
                site_of[e.subject_id],
                e.visit,
                e.earlier_days,
                e.later_days,
                date.fromisoformat(e.approved_on[:10]),
                e.approved_by,
                e.reason,
            )
            for e in await manual.exceptions_of(study)
            if access.shows(site_of[e.subject_id])
        ]
