"""Pages: deviation trends (charts) and the reports page (downloads, filing into the binder, site summary)."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from trialcoord.deviations import filing, report_documents, site_summary, trends
from trialcoord.deviations.api.deviation_reports import printed, scope, sees_personal_data
from trialcoord.documents import documents
from trialcoord.documents.rules.documents import Reader
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.render.pdf_documents import draw_chart
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.kernel.web.render_jobs import render_jobs
from trialcoord.scheduling import protocols
from trialcoord.scheduling.sites import list_sites

VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
LABEL = r"[0-9]{4}-[0-9]{2}-[0-9]{2}(\.[0-9]{1,4})?"  # a filed report's label
REPORT_CHOICES = {
    report_documents.LOG: "Protocol deviation log",
    report_documents.VISIT_REPORT: "Monitoring visit report",
}


class ReportPages(Controller):
    path = "/studies/{study:str}"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    include_in_schema = False

    @get("/deviations/trends", opt=VIEW)
    async def trends(self, study: StudyPath, access: AccessDep, today: Today, site: QueryStr = None) -> Template:
        sites = await _visible_sites(study, access)
        trend = await trends.trends(study, scope(access, site or None), today)
        charts = [draw_chart(spec) for spec in trends.trend_charts(trend, with_sites=not site)]
        return Template(
            "deviation_trends.html",
            context={
                "study": await protocols.get_study(study),
                "sites": sites,
                "site": site,
                "trend": trend,
                "charts": charts,
            },
        )

    @get("/reports", opt=VIEW)
    async def reports_page(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        site: QueryStr = None,
        name: QueryStr = None,
        label: QueryStr = None,
        filed: QueryStr = None,
        queued: QueryStr = None,
    ) -> Template:
        context = await _context(study, access, today, site or None)
        context["filed"] = await _filed(
            study, context["site"], name, label, filed, Reader(access.signed_in.grants, today)
        )
        # Only a label's shape is printed from the address (anyone can write one).
        context["queued"] = queued if queued and re.fullmatch(LABEL, queued) else None
        return Template("deviation_reports.html", context=context)

    @post("/reports/file", opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True))
    async def file(
        self, request: Request, study: StudyPath, data: Form, access: AccessDep, today: Today
    ) -> Template | Redirect:
        """File the chosen report of a site into its binder, then back to the reports page saying which version."""
        form = FormReader(data)
        site = form.text("site", "site", choice=True)
        report = form.text("report", "report", choice=True)
        if report and report not in REPORT_CHOICES:
            form.errors["report"] = "Choose the deviation log or the monitoring visit report."
        row = None
        if site is not None and report is not None and not form.errors:
            access.require_site(site, "file documents")
            try:
                # The PDF/A is the filed record (DOCX is a download); a long one is rendered by a job, then filed.
                row = await filing.file_report(
                    study,
                    site,
                    report,
                    "pdf",
                    today,
                    access.user_id,
                    printed(access),
                    jobs=render_jobs(request.app),
                    cache=request.app.state.installation.render_cache(),
                )
            except (InvalidInput, Conflict, NotFound) as error:
                form.errors.update(field_messages(error))
        if row is None:
            context = await _context(study, access, today, site, errors=form.errors, form=form.data)
            return Template("deviation_reports.html", context=context, status_code=422)
        if row.queued is not None:  # filed under its label once the job has rendered it
            query = urlencode({"site": site, "queued": row.label}, quote_via=quote)
            return Redirect(f"/studies/{quote(study, safe='')}/reports?{query}", status_code=303)
        query = urlencode(
            {"site": site, "name": row.name, "label": row.label, "filed": "new" if row.filed else "unchanged"},
            quote_via=quote,
        )
        return Redirect(f"/studies/{quote(study, safe='')}/reports?{query}", status_code=303)


async def _visible_sites(study: str, access: Access) -> list[str]:
    return [row.code for row in await list_sites(study) if access.shows(row.code)]


async def _filed(
    study: str, site: str | None, name: str | None, label: str | None, how: str | None, reader: Reader
) -> dict[str, Any] | None:
    """The notice after filing, only for a report version the site's binder holds and the viewer sees (a filed
    report is a draft, which a monitor or a sponsor does not): the address is anyone's to write, so none of
    its text is printed unless it names a real version."""
    if not (site and name in report_documents.DOCUMENT_NAMES.values() and label and how in ("new", "unchanged")):
        return None
    if not any(d.name == name and d.label == label for d in await documents.list_documents(study, site, reader)):
        return None
    url = "/studies/{}/documents/version?{}".format(
        quote(study, safe=""), urlencode({"name": name, "label": label, "site": site}, quote_via=quote)
    )
    return {"name": name, "label": label, "unchanged": how == "unchanged", "url": url}


async def _context(
    study: str,
    access: Access,
    today: date,
    site: str | None,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> dict[str, Any]:
    sites = await _visible_sites(study, access)
    chosen = [site] if site in sites else sites
    summary = await site_summary.site_summary(
        study, chosen, today, personal=sees_personal_data(access, study, chosen, today)
    )
    exporters = [code for code in chosen if access.may(Action.EXPORT, study, code, today)]
    filers = [(code, code) for code in chosen if access.may(Action.MANAGE_DOCUMENTS, study, code, today)]
    # the table's rows: each site's figures, then the total's (as a mapping, named "All")
    rows = [asdict(s) for s in summary.sites] + (
        [{**asdict(summary.total), "site": "All"}] if len(summary.sites) > 1 else []
    )
    return {
        "study": await protocols.get_study(study),
        "sites": sites,
        "site": site if site in sites else None,
        "summary": summary,
        "summary_rows": rows,
        "exporters": exporters,
        "filers": filers,
        "today": today,
        "reports": list(REPORT_CHOICES.items()),
        "can_export": bool(exporters),
        "charts": [draw_chart(spec) for spec in site_summary.summary_charts(summary)],
        "filed": None,
        "queued": None,
        "errors": errors or {},
        "form": form or {},
    }
