"""Studies, their protocol versions and their sites."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, JSONBody, PathParameter

from trialcoord.kernel.problems import invalid
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import SIGNED_IN, needs
from trialcoord.kernel.web.params import AccessDep, SitePath, StudyPath, Today, plausible
from trialcoord.scheduling import protocols, sites
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.schemas import (
    Closure,
    ClosureIn,
    ProtocolBodyOperation,
    ProtocolVersion,
    Site,
    SiteCalendar,
    SiteCalendarIn,
    SiteIn,
    Study,
    WithdrawalIn,
    from_record,
    protocol_source,
)

VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)


class StudyController(Controller):
    path = "/api/studies"
    tags = ["studies"]

    @get("/", opt=SIGNED_IN, responses=problem_responses(400, 401))
    async def list_studies(self, access: AccessDep, today: Today) -> list[Study]:
        """The studies the signed-in user holds a grant for."""
        rows = await protocols.list_studies()
        return [from_record(Study, row) for row in rows if access.may_see_study(row.code, today)]

    @get("/{study:str}", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def get_study(self, study: StudyPath) -> Study:
        return from_record(Study, await protocols.get_study(study))

    @get("/{study:str}/protocol-versions", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def list_protocol_versions(self, study: StudyPath) -> list[ProtocolVersion]:
        return [from_record(ProtocolVersion, row) for row in await protocols.list_protocol_versions(study)]

    @post(
        "/{study:str}/protocol-versions",
        operation_class=ProtocolBodyOperation,
        opt=needs(Action.LOAD_PROTOCOL),
        status_code=201,
        responses={
            200: ResponseSpec(ProtocolVersion, description="The same text was already loaded; nothing changed"),
            **problem_responses(400, 401, 403, 409, 422),
        },
        description="Body: the protocol YAML itself, or JSON {source, name}. Problems name line, column and field.",
    )
    async def load_protocol_version(
        self, study: StudyPath, request: Request, access: AccessDep
    ) -> Response[ProtocolVersion]:
        source = await protocol_source(request)
        protocol = parse_protocol(source.source, file=source.name)
        if protocol.study != study:
            raise invalid(f"the file defines study {protocol.study}, but it was sent to study {study}", "study")
        row = await protocols.load_protocol_version(protocol, source.source, source.name, actor=access.user_id)
        return Response(from_record(ProtocolVersion, row), status_code=201 if row.created else 200)

    @get("/{study:str}/sites", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def list_sites(self, study: StudyPath) -> list[Site]:
        return [from_record(Site, row) for row in await sites.list_sites(study)]

    @post(
        "/{study:str}/sites", opt=needs(Action.MANAGE_SITES), responses=problem_responses(400, 401, 403, 404, 409, 422)
    )
    async def create_site(self, study: StudyPath, data: JSONBody[SiteIn], access: AccessDep) -> Site:
        row = await sites.create_site(study, data.code, data.name, data.time_zone, data.calendar, actor=access.user_id)
        return from_record(Site, row)

    @get(
        "/{study:str}/sites/{site:str}/calendar",
        opt=needs(Action.VIEW_SCHEDULE),
        responses=problem_responses(400, 401, 403, 404),
    )
    async def site_calendar(
        self,
        study: StudyPath,
        site: SitePath,
        today: Today,
        first: FromQuery[date | None] = None,
        last: FromQuery[date | None] = None,
    ) -> SiteCalendar:
        """The calendar the site's business days follow (its own, else the protocol's), and its holidays and
        closures from `first` (default today) to `last` (default four weeks on; at most a year)."""
        first = plausible(first, "first") or today
        last = plausible(last, "last") or first + timedelta(days=27)
        if last < first:
            raise invalid(f"the last day ({last}) comes before the first ({first})", "last")
        days = await sites.site_calendar_days(study, site, first, last)
        return msgspec.convert(days, SiteCalendar, from_attributes=True)

    @put(
        "/{study:str}/sites/{site:str}/calendar",
        opt=needs(Action.MANAGE_SITES),
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def set_site_calendar(
        self, study: StudyPath, site: SitePath, data: JSONBody[SiteCalendarIn], today: Today, access: AccessDep
    ) -> Site:
        """Give the site its own calendar for business days (null: the protocol's); its schedules are recomputed."""
        row = await sites.set_site_calendar(study, site, data.calendar, today=today, actor=access.user_id)
        return from_record(Site, row)

    @post(
        "/{study:str}/sites/{site:str}/closures",
        opt=needs(Action.MANAGE_SITES),
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def add_closure(
        self, study: StudyPath, site: SitePath, data: JSONBody[ClosureIn], today: Today, access: AccessDep
    ) -> Closure:
        """Days the site is closed (both inclusive): business days skip them; its schedules are recomputed."""
        plausible(data.first_day, "first_day")
        plausible(data.last_day, "last_day")
        row = await sites.add_site_closure(
            study, site, data.first_day, data.last_day, data.reason, today=today, actor=access.user_id
        )
        return from_record(Closure, row)

    @post(
        "/{study:str}/sites/{site:str}/closures/{first_day:date}/withdraw",
        opt=needs(Action.MANAGE_SITES),
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def withdraw_closure(
        self,
        study: StudyPath,
        site: SitePath,
        first_day: Annotated[date, PathParameter(description="The closure's first day")],
        data: JSONBody[WithdrawalIn],
        today: Today,
        access: AccessDep,
    ) -> Closure:
        """Take back a closure recorded by mistake (the one starting on `first_day`), with the reason; its
        schedules are recomputed."""
        row = await sites.withdraw_site_closure(study, site, first_day, data.reason, today=today, actor=access.user_id)
        return from_record(Closure, row)
