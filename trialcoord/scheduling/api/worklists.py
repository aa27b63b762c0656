"""Site worklists and calendar feeds (ICS)."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.params import FromQuery

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import needs
from trialcoord.kernel.web.params import (
    AccessDep,
    AsOf,
    QueryStr,
    SitePath,
    StudyPath,
    SubjectPath,
    Today,
    WorklistKind,
    as_of_or_today,
)
from trialcoord.scheduling import participants, worklists
from trialcoord.scheduling.ics import visits_calendar
from trialcoord.scheduling.visit_rows import VisitRow, visit_row

CALENDAR = "text/calendar"


class WorklistController(Controller):
    path = "/api/studies/{study:str}"
    tags = ["worklists"]

    @get(
        "/worklist",
        opt=needs(Action.VIEW_SCHEDULE, across_sites=True),
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def worklist(
        self,
        study: StudyPath,
        today: Today,
        access: AccessDep,
        kind: FromQuery[WorklistKind] = "today",
        site: QueryStr = None,
        as_of: AsOf = None,
    ) -> list[VisitRow]:
        rows = await worklists.worklist(study, as_of_or_today(as_of, today), site=site, kind=kind)
        return [visit_row(row) for row in rows if access.shows(row.site)]

    @get(
        "/participants/{subject_id:str}/schedule.ics",
        media_type=CALENDAR,
        opt=needs(Action.EXPORT),
        responses=problem_responses(400, 401, 403, 404),
    )
    async def participant_calendar(
        self, study: StudyPath, subject_id: SubjectPath, today: Today, access: AccessDep, as_of: AsOf = None
    ) -> Response[bytes]:
        day = as_of_or_today(as_of, today)
        rows = [visit_row(row) for row in await worklists.participant_schedule(study, subject_id, day)]
        data = visits_calendar(f"{study} {subject_id}", study, [(subject_id, row) for row in rows], day)
        site = rows[0].site if rows else ""
        await _exported(access, participants.record_id(study, site, subject_id), "ics", day)
        return _ics(data, f"{study}-{subject_id}")

    @get(
        "/sites/{site:str}/schedule.ics",
        media_type=CALENDAR,
        opt=needs(Action.EXPORT),
        responses=problem_responses(400, 401, 403, 404),
    )
    async def site_calendar(
        self, study: StudyPath, site: SitePath, today: Today, access: AccessDep, as_of: AsOf = None
    ) -> Response[bytes]:
        day = as_of_or_today(as_of, today)
        entries = [(row.subject_id, visit_row(row)) for row in await worklists.site_schedule(study, site, day)]
        data = visits_calendar(f"{study} site {site}", study, entries, day)
        await _exported(access, f"{study}/{site}", "ics", day)
        return _ics(data, f"{study}-{site}")


async def _exported(access, record_id: str, form: str, as_of) -> None:
    """Exports are audited: who took which records out of the system, in which form."""
    await audit_log.record_alone(
        access.user_id, Change("export", "schedule", record_id, None, {"format": form, "as_of": as_of.isoformat()})
    )


def _ics(data: bytes, name: str) -> Response[bytes]:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return Response(data, media_type=CALENDAR, headers={"Content-Disposition": f'attachment; filename="{safe}.ics"'})
