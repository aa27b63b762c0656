"""Site worklists and calendar feeds (ICS)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import date

from anyio import to_thread
from litestar import Controller, get
from litestar.params import FromQuery
from litestar.response import Stream

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.downloads import attachment
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
from trialcoord.scheduling.ics import calendar_parts
from trialcoord.scheduling.schedules import ScheduledVisit
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
    ) -> Stream:
        day = as_of_or_today(as_of, today)
        visits = await worklists.participant_schedule(study, subject_id, day)
        site = visits[0].site if visits else ""
        await _exported(access, participants.record_id(study, site, subject_id), "ics", day)
        return _ics(f"{study} {subject_id}", study, visits, day, f"{study}-{subject_id}")

    @get(
        "/sites/{site:str}/schedule.ics",
        media_type=CALENDAR,
        opt=needs(Action.EXPORT),
        responses=problem_responses(400, 401, 403, 404),
    )
    async def site_calendar(
        self, study: StudyPath, site: SitePath, today: Today, access: AccessDep, as_of: AsOf = None
    ) -> Stream:
        """Every visit of the site's participants: built a part at a time in a worker thread and sent as it is
        built (at 10,000 participants the feed is over 20 MB), so the server answers others meanwhile."""
        day = as_of_or_today(as_of, today)
        visits = await worklists.site_schedule(study, site, day)
        await _exported(access, f"{study}/{site}", "ics", day)
        return _ics(f"{study} site {site}", study, visits, day, f"{study}-{site}")


async def _exported(access, record_id: str, form: str, as_of) -> None:
    """Exports are audited: who took which records out of the system, in which form."""
    await audit_log.record_alone(
        access.user_id, Change("export", "schedule", record_id, None, {"format": form, "as_of": as_of.isoformat()})
    )


def _ics(title: str, study: str, visits: Iterable[ScheduledVisit], day: date, name: str) -> Stream:
    entries = ((visit.subject_id, visit_row(visit)) for visit in visits)  # converted as the parts are built
    return Stream(
        off_the_loop(calendar_parts(title, study, entries, day)),
        media_type=CALENDAR,
        headers={"Content-Disposition": attachment(f"{name}.ics")},
    )


async def off_the_loop(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Each part of a lazily built file made in a worker thread (one at a time, in order), then sent."""
    while (part := await to_thread.run_sync(next, parts, None)) is not None:
        yield part
