"""Deviation reports over the API: listings (CSV, XLSX), trends, the deviation log and monitoring visit
report (PDF/A, DOCX, filed into the binder), the site manager's summary.

Study-wide reports cover the sites the caller may see (or `site`, which the guard checks); a report of
one site names it. Downloads are audited as exports; filing needs manage_documents at the site.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, JSONBody

from trialcoord.deviations import filing, listings, report_documents, site_summary, trends
from trialcoord.deviations.api.deviations import signed_in
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.downloads import CSV, attachment
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.openapi import files
from trialcoord.kernel.web.params import AccessDep, AsOf, InstallationDep, StudyPath, Today, as_of_or_today
from trialcoord.kernel.web.schemas import Code

VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
EXPORT = needs(Action.EXPORT, across_sites=True)
FILE = needs(Action.MANAGE_DOCUMENTS, across_sites=True)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Format = Literal["pdf", "docx"]
SiteQuery = FromQuery[Annotated[Code, msgspec.Meta(description="Site code")]]
OptionalSite = FromQuery[
    Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=64,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="One site (default: every site you may see)",
        ),
    ]
    | None
]
FormatQuery = FromQuery[Format]


class FileIn(msgspec.Struct):
    site: Code
    format: Format = "pdf"


class FiledOut(msgspec.Struct):
    study: str
    site: str | None
    name: str
    label: str
    sha256: str
    size: int
    media_type: str
    file_name: str
    status: str
    filed: bool  # false: the same bytes were filed under this label already today


class QueuedOut(msgspec.Struct):
    """A long report handed to a render job (202): poll `url`, then fetch `result_url`; a filing is made
    under `label` once the job is done."""

    job_id: str
    url: str
    result_url: str
    pages_estimated: int
    file_name: str
    label: str


def _queued(request: Request, job_id: str, url: str, pages: int, file_name: str, label: str) -> Response:
    """202 with the job for an API client; a browser that followed a page's link goes to the job's page (303)."""
    from trialcoord.kernel.web.render_jobs import queued_answer

    return queued_answer(request, job_id, QueuedOut(job_id, url, f"{url}/result", pages, file_name, label), url)


QUEUED = {
    202: ResponseSpec(
        QueuedOut, description="Rendered by a job: poll `url` (also in Location)", generate_examples=False
    )
}


def scope(access: Access, site: str | None) -> list[str] | None:
    """The sites a study-wide report covers: `site` (the guard checked it), else the caller's (None: all)."""
    if site:
        return [site]
    if access.sites is None or access.sites.all_sites:
        return None
    return sorted(access.sites.sites)


def printed(access: Access) -> str:
    return f"{signed_in(access).printed_name} ({access.user_id})"


class DeviationReportController(Controller):
    path = "/api/studies/{study:str}"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    tags = ["deviation reports"]

    @get("/deviations/trends", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def trends(
        self, study: StudyPath, access: AccessDep, today: Today, site: OptionalSite = None, as_of: AsOf = None
    ) -> dict[str, Any]:
        """Deviations by month and category, by site, by rule and category, repeats of a (site, rule,
        category) over time, and days from detection to closure; resolved-by-correction and
        not-a-deviation records are left out (`excluded` counts them)."""
        trend = await trends.trends(study, scope(access, site), as_of_or_today(as_of, today))
        shown: dict[str, Any] = msgspec.to_builtins(trend)  # the JSON the route always answered
        return shown

    @get("/deviations/listing.csv", opt=EXPORT, media_type="text/csv", responses=problem_responses(400, 401, 403, 404))
    async def listing_csv(self, study: StudyPath, access: AccessDep, site: OptionalSite = None) -> Response[bytes]:
        """The deviation listing (SDTM DV-like columns) as CSV, UTF-8 with BOM; text a spreadsheet would
        run as a formula gets a leading apostrophe. Audited."""
        data, _ = await listings.listing_file(study, scope(access, site), "csv", access.user_id)
        return Response(
            data,
            media_type=CSV,
            headers={"Content-Disposition": attachment(f"deviations-{study}.csv")},
        )

    @get("/deviations/listing.xlsx", opt=EXPORT, media_type=XLSX, responses=problem_responses(400, 401, 403, 404))
    async def listing_xlsx(self, study: StudyPath, access: AccessDep, site: OptionalSite = None) -> Response[bytes]:
        """The deviation listing as an Excel workbook (typed cells, text never a formula). Audited."""
        data, _ = await listings.listing_file(study, scope(access, site), "xlsx", access.user_id)
        return Response(data, media_type=XLSX, headers={"Content-Disposition": attachment(f"deviations-{study}.xlsx")})

    @get(
        "/deviations/log",
        opt=EXPORT,
        media_type="application/octet-stream",
        operation_class=files(*report_documents.MEDIA_TYPES.values()),
        responses=QUEUED | problem_responses(400, 401, 403, 404, 422),
    )
    async def log(
        self,
        request: Request,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        site: SiteQuery,
        format: FormatQuery = "pdf",
    ) -> Response[bytes]:
        """The site's protocol deviation log (TMF 05.04.06) as PDF/A (with charts) or DOCX, dated today. Audited."""
        return await _download(request, study, site, report_documents.LOG, format, access, today)

    @get(
        "/deviations/monitoring-report",
        opt=EXPORT,
        media_type="application/octet-stream",
        operation_class=files(*report_documents.MEDIA_TYPES.values()),
        responses=QUEUED | problem_responses(400, 401, 403, 404, 422),
    )
    async def monitoring_report(
        self,
        request: Request,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        site: SiteQuery,
        format: FormatQuery = "pdf",
    ) -> Response[bytes]:
        """The site's monitoring visit report (TMF 05.04.03) as PDF/A (with charts) or DOCX, dated today. Audited."""
        return await _download(request, study, site, report_documents.VISIT_REPORT, format, access, today)

    @post("/deviations/log/file", opt=FILE, status_code=201, responses=problem_responses(400, 401, 403, 404, 409, 422))
    async def file_log(
        self, request: Request, study: StudyPath, data: JSONBody[FileIn], access: AccessDep, today: Today
    ) -> Response[FiledOut]:
        """File today's deviation log into the site's binder as a new draft version labelled by the day."""
        return await _file(request, study, data, report_documents.LOG, access, today)

    @post(
        "/deviations/monitoring-report/file",
        opt=FILE,
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def file_monitoring_report(
        self, request: Request, study: StudyPath, data: JSONBody[FileIn], access: AccessDep, today: Today
    ) -> Response[FiledOut]:
        """File today's monitoring visit report into the site's binder as a new draft version."""
        return await _file(request, study, data, report_documents.VISIT_REPORT, access, today)

    @get("/site-summary", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def site_summary(
        self, study: StudyPath, access: AccessDep, today: Today, site: OptionalSite = None, as_of: AsOf = None
    ) -> dict[str, Any]:
        """Enrolment, visit completion and on-time rate, open deviations by age, re-consent backlog and binder
        documents expiring within 60 days, per site and in total."""
        sites = await _sites(study, access, site)
        summary = await site_summary.site_summary(
            study, sites, as_of_or_today(as_of, today), personal=sees_personal_data(access, study, sites, today)
        )
        shown: dict[str, Any] = msgspec.to_builtins(summary)  # the JSON the route always answered
        return shown

    @get("/site-summary.pdf", opt=EXPORT, media_type="application/pdf", responses=problem_responses(400, 401, 403, 404))
    async def site_summary_pdf(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        installation: InstallationDep,
        site: OptionalSite = None,
    ) -> Response[bytes]:
        """The site manager's summary as a PDF/A report, dated today. Audited."""
        sites = await _sites(study, access, site)
        data = await site_summary.site_summary_pdf(
            study,
            sites,
            today,
            access.user_id,
            personal=sees_personal_data(access, study, sites, today),
            cache=installation.render_cache(),
        )
        name = f"site-summary-{study}" + (f"-{site}" if site else "") + f"-{today}.pdf"
        return Response(data, media_type="application/pdf", headers={"Content-Disposition": attachment(name)})


def sees_personal_data(access: Access, study: str, sites: list[str], today: date) -> bool:
    """Subject logs are listed only to a reader who may see personal data at every site shown."""
    return all(access.may(Action.VIEW_PERSONAL_DATA, study, code, today) for code in sites)


async def _sites(study: str, access: Access, site: str | None) -> list[str]:
    from trialcoord.scheduling.sites import list_sites

    if site:
        return [site]
    return [row.code for row in await list_sites(study) if access.shows(row.code)]


async def _download(
    request: Request, study: str, site: str, name: str, kind: str, access: Access, today: date
) -> Response:
    from trialcoord.kernel.web.render_jobs import render_jobs

    access.require_site(site, "export deviation reports")
    data, file_name = await report_documents.download_report(
        study,
        site,
        name,
        kind,
        today,
        access.user_id,
        printed(access),
        jobs=render_jobs(request.app),
        cache=request.app.state.installation.render_cache(),
    )
    if isinstance(data, report_documents.Queued):  # long: rendered by a job, never in the request
        return _queued(request, data.job_id, data.url, data.pages_estimated, data.file_name, data.label)
    return Response(
        data, media_type=report_documents.MEDIA_TYPES[kind], headers={"Content-Disposition": attachment(file_name)}
    )


async def _file(request: Request, study: str, data: FileIn, name: str, access: Access, today: date) -> Response:
    from trialcoord.kernel.web.render_jobs import render_jobs

    access.require_site(data.site, "file documents")
    filed = await filing.file_report(
        study,
        data.site,
        name,
        data.format,
        today,
        access.user_id,
        printed(access),
        jobs=render_jobs(request.app),
        cache=request.app.state.installation.render_cache(),
    )
    if filed.queued is not None:  # long: the job renders it, and it is filed under `label` once done
        job = filed.queued
        return _queued(request, job.job_id, job.url, job.pages_estimated, job.file_name, job.label)
    if filed.version is None:
        raise AssertionError("a report not queued is filed or found")
    answer = {**msgspec.to_builtins(filed.version), "filed": filed.filed}
    return Response(msgspec.convert({k: answer[k] for k in FiledOut.__struct_fields__}, FiledOut), status_code=201)
