"""The deviation log and the monitoring visit report of one site (issue 5 §3), as PDF/A or DOCX, dated by its
day (`as_of`): the data they are rendered from, and the rendering. A report estimated at `LONG_DOCUMENT_PAGES`
or more is rendered by the app's RenderJobs, never in the request. Every download is audited as an export
(filing the PDF/A into the binder: `filing`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from trialcoord.deviations import deviation_review
from trialcoord.deviations.queue import age_days, listing
from trialcoord.deviations.records import Deviation
from trialcoord.deviations.report_support import (
    audit_export,
    percent,
    render,
    render_meta,
    require_site,
    rows_as_of,
    sha256,
)
from trialcoord.deviations.rules import deviation_trends as figures
from trialcoord.deviations.site_summary import SiteFigures, site_summary
from trialcoord.deviations.trends import DeviationTrends, trend_charts, trends_of
from trialcoord.kernel.problems import Conflict, invalid
from trialcoord.kernel.render.cache import RenderCache

LOG, VISIT_REPORT = "deviation_log", "monitoring_visit_report"
DOCUMENT_NAMES = {LOG: "Protocol deviation log", VISIT_REPORT: "Monitoring visit report"}
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


@dataclass(frozen=True)
class Queued:
    """A long report handed to a render job: poll `url` (the render-jobs API), then fetch its result."""

    job_id: str
    url: str
    pages_estimated: int
    file_name: str
    label: str


async def report_data(study: str, site: str, name: str, as_of: date, prepared_by: str) -> dict[str, Any]:
    """The data a deviation log or monitoring visit report of `site` is rendered from: the template's data, a
    mapping its schema checks (`kernel/render/document_data.py`) and the render cache keys as canonical JSON."""
    if name not in DOCUMENT_NAMES:
        raise invalid(f"'{name}' is not a deviation report; choose {LOG} or {VISIT_REPORT}", field="report")
    await require_site(study, site)
    rows = rows_as_of(await listing(study, sites=[site]), as_of)
    trend = trends_of(study, rows)
    charts = trend_charts(trend, with_sites=False)
    if name == LOG:
        counts = {
            "Deviations": len(rows),
            "Open": sum(r.open for r in rows),
            "Closed": sum(r.state == "closed" and not r.open for r in rows),
            "Important": sum(r.classification == "important" and figures.stands(r) for r in rows),
        }
        return {
            "study_code": study,
            "site": site,
            "as_of": as_of.isoformat(),
            "summary": [{"label": k, "value": v} for k, v in counts.items()],
            "charts": charts,
            "entries": [_log_entry(r) for r in rows],
        }
    summary = (await site_summary(study, [site], as_of, rows=rows)).sites[0]
    open_rows = [r for r in rows if r.open]
    capa_ids = {r.capa for r in rows if r.capa is not None}
    capas = [
        {
            "id": c.id,
            "title": c.title,
            "state": c.state,
            "owner": c.owner,
            "due_on": c.due_on,
            "deviations": ", ".join(str(d) for d in c.deviations),
        }
        for c in await deviation_review.list_capas(study, sites={site})
        if c.id in capa_ids
    ]
    return {
        "study_code": study,
        "site": site,
        "visit_date": as_of.isoformat(),
        "prepared_by": prepared_by,
        "summary": _summary_lines(summary, trend),
        "charts": charts,
        "capas": capas,
        "entries": [{**_log_entry(r), "age_days": max(0, age_days(r, as_of))} for r in open_rows],
    }


async def render_report(
    study: str,
    site: str,
    name: str,
    kind: str,
    as_of: date,
    prepared_by: str,
    label: str | None = None,
    *,
    cache: RenderCache | None = None,
) -> tuple[bytes, str]:
    """(bytes, file name) of the report as PDF/A or DOCX, dated `as_of`, rendered here whatever its length."""
    check_kind(kind)
    data = await report_data(study, site, name, as_of, prepared_by)
    label = label or as_of.isoformat()
    return await render(kind, name, data, as_of, report_title(name, study, site), label, cache), report_file_name(
        name, study, site, label, kind
    )


async def download_report(
    study: str,
    site: str,
    name: str,
    kind: str,
    as_of: date,
    actor: str,
    prepared_by: str,
    *,
    jobs: Any = None,
    cache: RenderCache | None = None,
) -> tuple[bytes | Queued, str]:
    """(bytes, file name); with `jobs` (the app's RenderJobs), a report of `jobs.long_pages` or more is
    queued instead and the first item is a `Queued` naming the job (owned by `actor`)."""
    check_kind(kind)
    data = await report_data(study, site, name, as_of, prepared_by)
    label = as_of.isoformat()
    file_name = report_file_name(name, study, site, label, kind)
    queued = await render_job(
        jobs, kind, name, data, as_of, report_title(name, study, site), label, actor, study, file_name
    )
    if queued is not None:
        await audit_export(
            actor, name, f"{study}/{site}", {"format": kind, "as_of": as_of.isoformat(), "render_job": queued.job_id}
        )
        return queued, file_name
    content = await render(kind, name, data, as_of, report_title(name, study, site), label, cache)
    await audit_export(
        actor, name, f"{study}/{site}", {"format": kind, "as_of": as_of.isoformat(), "sha256": sha256(content)}
    )
    return content, file_name


async def render_job(
    jobs: Any,
    kind: str,
    template: str,
    data: dict[str, Any],
    as_of: date,
    title: str,
    label: str,
    owner: str,
    study: str,
    file_name: str,
) -> Queued | None:
    """A render job for a long report (None: short, or no job runner given)."""
    from trialcoord.kernel.render.jobs import TooManyJobs
    from trialcoord.kernel.render.page_estimate import estimate_pages

    if jobs is None:
        return None
    pages = estimate_pages(template, data)
    if pages < jobs.long_pages:
        return None
    try:
        job_id = jobs.submit(kind, template, data, owner=owner, **render_meta(as_of, title, label))
    except TooManyJobs as error:
        raise Conflict(str(error)) from None
    return Queued(job_id, f"/api/studies/{study}/render-jobs/{job_id}", pages, file_name, label)


def _summary_lines(site: SiteFigures, trend: DeviationTrends) -> list[dict[str, Any]]:
    ages = site.ages
    lines: tuple[tuple[str, object], ...] = (
        ("Participants (active / ended)", f"{site.participants} ({site.active} / {site.ended})"),
        ("Visits done / due", f"{site.visits_done} / {site.visits_due}"),
        ("Visit completion", percent(site.completion_rate)),
        ("Visits on time", percent(site.on_time_rate)),
        ("Open deviations", site.open_deviations),
        (
            "Open by age: 0-30 / 31-60 / 61-90 / >90 days",
            " / ".join(str(ages[label]) for label, _, _ in figures.AGE_BUCKETS),
        ),
        (
            "Deviations closed; median days to closure",
            f"{trend.closure['closed']}; {trend.closure['median_days'] if trend.closure['closed'] else '-'}",
        ),
        ("Re-consent backlog", site.reconsent),
        ("Binder documents expired or expiring", site.expiring),
    )
    return [{"label": label, "value": value} for label, value in lines]


def _log_entry(row: Deviation) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "participant": row.participant or "(site)",
        "visit": row.visit or "-",
        "category": row.category,
        "description": row.description,
        "occurred": row.occurred_on,
        "identified": row.detected_at[:10],
        "classification": row.classification.replace("_", " "),
        "status": row.state.replace("_", " "),
    }


def check_kind(kind: str) -> None:
    if kind not in MEDIA_TYPES:
        raise invalid(f"'{kind}' is not a document format; choose pdf or docx", field="format")


def report_title(name: str, study: str, site: str) -> str:
    return f"{DOCUMENT_NAMES[name]} {study} site {site}"


def report_file_name(name: str, study: str, site: str, label: str, kind: str) -> str:
    return f"{name}-{study}-{site}-{label}.{kind}"
