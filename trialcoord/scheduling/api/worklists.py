"""Site worklists and calendar feeds (ICS): the signed-in user's download, and a subscribed feed's address, which
carries its own token (the guard's `feed` rule) and is fetched by a calendar app with no header."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import date, timedelta
from typing import Annotated, Optional

from anyio import to_thread
from litestar import Controller, get
from litestar.exceptions import ValidationException
from litestar.params import FromQuery, PathParameter, QueryParameter
from litestar.response import Stream

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.rules.access import FEED_VIEWER, Action
from trialcoord.kernel.web.downloads import attachment
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, feed, needs
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
    plausible,
)
from trialcoord.scheduling import participants, worklists
from trialcoord.scheduling.ics import Days, calendar_parts, revision
from trialcoord.scheduling.schedules import ScheduledVisit
from trialcoord.scheduling.visit_rows import VisitRow, visit_row

CALENDAR = "text/calendar"
# A site's feed shows from a month back to a year ahead unless asked otherwise (a participant's: every visit).
SITE_DAYS_BEFORE, SITE_DAYS_AFTER = 30, 365
# Read as text and parsed here: a bad date answers 400 naming `from` or `to`, not the handler's argument.
From = Annotated[
    Optional[str],  # noqa: UP045 (read at run time by litestar's parameter parsing)
    QueryParameter(name="from", required=False, max_length=10, description="First day shown (YYYY-MM-DD)"),
]
To = Annotated[
    Optional[str],  # noqa: UP045
    QueryParameter(name="to", required=False, max_length=10, description="Last day shown (YYYY-MM-DD)"),
]
TokenPath = Annotated[str, PathParameter(description="The feed's secret token", max_length=200)]


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
        self,
        study: StudyPath,
        subject_id: SubjectPath,
        today: Today,
        access: AccessDep,
        as_of: AsOf = None,
        first: From = None,
        last: To = None,
    ) -> Stream:
        return await _participant_calendar(access, study, subject_id, as_of_or_today(as_of, today), first, last)

    @get(
        "/sites/{site:str}/schedule.ics",
        media_type=CALENDAR,
        opt=needs(Action.EXPORT),
        responses=problem_responses(400, 401, 403, 404),
    )
    async def site_calendar(
        self,
        study: StudyPath,
        site: SitePath,
        today: Today,
        access: AccessDep,
        as_of: AsOf = None,
        first: From = None,
        last: To = None,
    ) -> Stream:
        """Every visit of the site's participants from `from` to `to`: built a part at a time in a worker thread and
        sent as it is built (at 10,000 participants the feed is over 20 MB), so the server answers others meanwhile."""
        return await _site_calendar(access, study, site, as_of_or_today(as_of, today), first, last)

    @get(
        "/participants/{subject_id:str}/feeds/{token:str}/schedule.ics",
        media_type=CALENDAR,
        opt=feed(Action.EXPORT),
        responses=problem_responses(400, 403, 404),
    )
    async def participant_feed(
        self,
        study: StudyPath,
        subject_id: SubjectPath,
        token: TokenPath,
        today: Today,
        access: AccessDep,
        first: From = None,
        last: To = None,
    ) -> Stream:
        """A subscribed participant calendar: its address is its credential (no header); what its owner may see now."""
        return await _participant_calendar(access, study, subject_id, today, first, last)

    @get(
        "/sites/{site:str}/feeds/{token:str}/schedule.ics",
        media_type=CALENDAR,
        opt=feed(Action.EXPORT),
        responses=problem_responses(400, 403, 404),
    )
    async def site_feed(
        self,
        study: StudyPath,
        site: SitePath,
        token: TokenPath,
        today: Today,
        access: AccessDep,
        first: From = None,
        last: To = None,
    ) -> Stream:
        """A subscribed site calendar: its address is its credential (no header); what its owner may see now."""
        return await _site_calendar(access, study, site, today, first, last)


async def _participant_calendar(
    access: Access, study: str, subject_id: str, day: date, first: str | None, last: str | None
) -> Stream:
    days = _days(first, last, (None, None))
    visits = await worklists.participant_schedule(study, subject_id, day)
    site = visits[0].site if visits else ""
    await _exported(access, participants.record_id(study, site, subject_id), "ics", day, days)
    return _ics(f"{study} {subject_id}", study, visits, day, f"{study}-{subject_id}", days)


async def _site_calendar(
    access: Access, study: str, site: str, day: date, first: str | None, last: str | None
) -> Stream:
    days = _days(first, last, (day - timedelta(days=SITE_DAYS_BEFORE), day + timedelta(days=SITE_DAYS_AFTER)))
    visits = await worklists.site_schedule(study, site, day)
    await _exported(access, f"{study}/{site}", "ics", day, days)
    return _ics(f"{study} site {site}", study, visits, day, f"{study}-{site}", days)


def _days(first: str | None, last: str | None, default: Days) -> Days:
    """The days asked for, each end defaulting on its own; 400 naming the parameter that is not a date, or `from`
    when it falls after `to`."""
    days = (_day(first, "from") or default[0], _day(last, "to") or default[1])
    if days[0] is not None and days[1] is not None and days[0] > days[1]:
        message = f"`from` ({days[0]}) falls after `to` ({days[1]})"
        raise ValidationException(message, extra=[{"key": "from", "message": message}])
    return days


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        message = f"`{name}` must be a date as YYYY-MM-DD, got {text!r}"
        raise ValidationException(message, extra=[{"key": name, "message": message}]) from None
    return plausible(day, name)


async def _exported(access: Access, record_id: str, form: str, as_of: date, days: Days) -> None:
    """Exports are audited: who took which records out of the system, in which form; a feed's fetch names the
    feed (one entry per fetch, not per event)."""
    details: dict[str, object] = {"format": form, "as_of": as_of.isoformat()}
    details.update({name: day.isoformat() for name, day in zip(("from", "to"), days) if day is not None})
    viewer = access.signed_in
    if viewer.kind == FEED_VIEWER:
        details["calendar_feed"] = viewer.session_id
    await audit_log.record_alone(viewer.user_id, Change("export", "schedule", record_id, None, details))


def _ics(title: str, study: str, visits: Iterable[ScheduledVisit], day: date, name: str, days: Days) -> Stream:
    entries = (  # converted as the parts are built
        (visit.subject_id, visit_row(visit), revision(visit.row_version, visit.updated_at)) for visit in visits
    )
    return Stream(
        off_the_loop(calendar_parts(title, study, entries, day, days=days)),
        media_type=CALENDAR,
        headers={"Content-Disposition": attachment(f"{name}.ics")},
    )


async def off_the_loop(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Each part of a lazily built file made in a worker thread (one at a time, in order), then sent."""
    while (part := await to_thread.run_sync(next, parts, None)) is not None:
        yield part
