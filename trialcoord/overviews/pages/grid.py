"""Pages: a study's participant x visit grid, a keyset page of participants at a time, and its downloads."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, Response, get
from litestar.exceptions import ValidationException
from litestar.params import FromQuery
from litestar.response import Template

from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.rules.access import Action, visible_sites
from trialcoord.kernel.web.downloads import CSV, attachment
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.paging import page_of, page_request
from trialcoord.kernel.web.params import AccessDep, AsOf, QueryStr, StudyPath, Today, as_of_or_today
from trialcoord.overviews.visit_grid import VisitGridListing, shown_columns
from trialcoord.scheduling import participants, sites, worklists

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA = {"csv": CSV, "xlsx": XLSX}


class GridPages(Controller):
    path = "/studies/{study:str}"
    include_in_schema = False

    @get("/grid", opt=needs(Action.VIEW_SCHEDULE, across_sites=True))
    async def grid(
        self,
        study: StudyPath,
        today: Today,
        access: AccessDep,
        site: QueryStr = None,
        as_of: AsOf = None,
        q: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: FromQuery[int | None] = None,
    ) -> Template:
        day, text = as_of_or_today(as_of, today), (q or "").strip() or None
        columns = await _columns(study, site or None, access, today)
        context: dict[str, Any] = {
            "study": study,
            "site": site or None,
            "as_of": day,
            "q": text or "",
            "columns": columns,
            "site_options": [(row.code, f"{row.code} – {row.name}") for row in await _sites(study, access)],
            "params": {"site": site or None, "as_of": day.isoformat(), "q": text},
            "can_export": _may_export(access, study, site or None, today),
            "page": None,
            "errors": {},
        }
        try:
            width = len(worklists.GRID_SORTS.get(sort or "participant", ()))
            request = page_request(
                sort, order, after, size, sorts=tuple(worklists.GRID_SORTS), default="participant", key_width=width
            )
            rows = await worklists.visit_grid(
                study,
                day,
                site or None,
                _within(access),
                text,
                request.sort,
                request.descending,
                request.after,
                request.size + 1,
            )
        except (InvalidInput, ValidationException) as error:
            context["errors"] = field_messages(error)
            return Template("visit_grid.html", context=context, status_code=400)
        context["page"] = page_of(rows, request, key=lambda pair: pair[0])
        return Template("visit_grid.html", context=context)

    @get("/grid.csv", opt=needs(Action.EXPORT, across_sites=True), media_type=CSV)
    async def grid_csv(
        self,
        study: StudyPath,
        today: Today,
        access: AccessDep,
        site: QueryStr = None,
        as_of: AsOf = None,
        q: QueryStr = None,
    ) -> Response[bytes]:
        return await _download(study, "csv", today, access, site or None, as_of, q)

    @get("/grid.xlsx", opt=needs(Action.EXPORT, across_sites=True), media_type=XLSX)
    async def grid_xlsx(
        self,
        study: StudyPath,
        today: Today,
        access: AccessDep,
        site: QueryStr = None,
        as_of: AsOf = None,
        q: QueryStr = None,
    ) -> Response[bytes]:
        return await _download(study, "xlsx", today, access, site or None, as_of, q)


async def _download(
    study: str, form: str, today: date, access: Access, site: str | None, as_of: date | None, q: str | None
) -> Response[bytes]:
    """The grid as the page shows it (its filters and columns), every participant: an export, audited."""
    day = as_of_or_today(as_of, today)
    columns = await _columns(study, site, access, today)
    listing = VisitGridListing(study, day, site, _within(access), (q or "").strip() or None, columns)
    data = (await listing.take_out(form, access.user_id)).data
    name = f"visit-grid-{study}{f'-{site}' if site else ''}-{day.isoformat()}.{form}"
    return Response(data, media_type=MEDIA[form], headers={"Content-Disposition": attachment(name)})


def _within(access: Access) -> frozenset[str] | None:
    return None if access.sites is None or access.sites.all_sites else access.sites.sites


async def _columns(study: str, site: str | None, access: Access, today: date) -> list[worklists.GridColumn]:
    allocation = await participants.allocation_scope(study, access.signed_in.grants, today)
    return shown_columns(await worklists.grid_columns(study), allocation, {site} if site else _within(access))


async def _sites(study: str, access: Access) -> list:
    return [row for row in await sites.list_sites(study) if access.shows(row.code)]


def _may_export(access: Access, study: str, site: str | None, today: date) -> bool:
    scope = visible_sites(access.signed_in.grants, Action.EXPORT, study, today)
    return scope.includes(site) if site else scope.all_sites or bool(scope.sites)
