"""Site worklists and calendar feeds (ICS)."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.params import FromQuery

from trialcoord.services import scheduling
from trialcoord.web.api.params import (
    AsOf,
    QueryStr,
    SitePath,
    StudyPath,
    SubjectPath,
    Today,
    WorklistKind,
    as_of_or_today,
)
from trialcoord.web.api.schemas import VisitRow, visit_row
from trialcoord.web.errors import problem_responses
from trialcoord.web.ics import visits_calendar

CALENDAR = "text/calendar"


class WorklistController(Controller):
    path = "/api/studies/{study:str}"
    tags = ["worklists"]

    @get("/worklist", responses=problem_responses(400, 404, 422))
    async def worklist(
        self,
        study: StudyPath,
        today: Today,
        kind: FromQuery[WorklistKind] = "today",
        site: QueryStr = None,
        as_of: AsOf = None,
    ) -> list[VisitRow]:
        rows = await scheduling.worklist(study, as_of_or_today(as_of, today), site=site, kind=kind)
        return [visit_row(row) for row in rows]

    @get("/participants/{subject_id:str}/schedule.ics", media_type=CALENDAR, responses=problem_responses(400, 404))
    async def participant_calendar(
        self, study: StudyPath, subject_id: SubjectPath, today: Today, as_of: AsOf = None
    ) -> Response[bytes]:
        day = as_of_or_today(as_of, today)
        rows = [visit_row(row) for row in await scheduling.participant_schedule(study, subject_id, day)]
        data = visits_calendar(f"{study} {subject_id}", study, [(subject_id, row) for row in rows], day)
        return _ics(data, f"{study}-{subject_id}")

    @get("/sites/{site:str}/schedule.ics", media_type=CALENDAR, responses=problem_responses(400, 404))
    async def site_calendar(
        self, study: StudyPath, site: SitePath, today: Today, as_of: AsOf = None
    ) -> Response[bytes]:
        day = as_of_or_today(as_of, today)
        entries = [(row.subject_id, visit_row(row)) for row in await scheduling.site_schedule(study, site, day)]
        return _ics(visits_calendar(f"{study} site {site}", study, entries, day), f"{study}-{site}")


def _ics(data: bytes, name: str) -> Response[bytes]:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return Response(data, media_type=CALENDAR, headers={"Content-Disposition": f'attachment; filename="{safe}.ics"'})
