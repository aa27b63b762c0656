"""Deviation reports (issue 5 §3): trends, the listing as CSV and XLSX, the deviation log and the monitoring
visit report (PDF/A and DOCX, the PDF/A filed into the binder as versions), and the site manager's summary.

The figures are the domain's (`deviations/rules/deviation_trends.py`) over `deviations.listing` rows. A report is
dated by its day (`as_of`). Filing compares the report's data (who prepared it left out) with every version
filed that day: the same data is the same report (`filed` false), changed data adds `YYYY-MM-DD.2`, `.3`...
A report estimated at `LONG_DOCUMENT_PAGES` or more is rendered by the app's RenderJobs, never in the
request. Every download is audited as an export; a filing is audited by `documents.add_version`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from anyio import to_thread

from trialcoord.deviations import deviation_review, deviations
from trialcoord.deviations.rules import deviation_trends as figures
from trialcoord.documents import binder, consent, documents
from trialcoord.documents.rules.documents import DocumentKey
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import fetch
from trialcoord.kernel.problems import Conflict, NotFound, invalid
from trialcoord.kernel.render import tabular
from trialcoord.scheduling import lookups, protocols
from trialcoord.scheduling.rules.schedule import study_day
from trialcoord.scheduling.sites import list_sites

log = logging.getLogger(__name__)
LOG, VISIT_REPORT, SUMMARY = "deviation_log", "monitoring_visit_report", "site_summary"
DOCUMENT_NAMES = {LOG: "Protocol deviation log", VISIT_REPORT: "Monitoring visit report"}
ARTIFACTS = {LOG: "110", VISIT_REPORT: "107"}  # TMF 05.04.06 and 05.04.03
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
FILED_KIND = "pdf"  # the binder's record of a report is its PDF/A; the DOCX is a download only
EXPIRING_DAYS = 60
IN_FORCE = frozenset({"effective", "approved"})
LISTING_COLUMNS = [
    "STUDYID",
    "DOMAIN",
    "USUBJID",
    "DVSEQ",
    "DVSPID",
    "DVTERM",
    "DVDECOD",
    "DVCAT",
    "EPOCH",
    "DVSTDTC",
    "DVSTDY",
    "SITEID",
    "VISIT",
    "RULE",
    "CLASSIFICATION",
    "STATE",
    "DAYS_OUTSIDE",
    "DETECTED_UTC",
    "CLOSED_UTC",
]
CLOSURE_BINS = [[0, 8], [8, 31], [31, 61], [61, 91], [91, None]]  # days: "0–7", "8–30", "31–60", "61–90", "91+"
_DAY_LABEL = r"(\d{4}-\d{2}-\d{2})(?:\.([1-9]\d*))?"  # a report version's label: its day, then .2, .3...
_KEY = re.compile(r"report key (\w+:[0-9a-f]{64})")
_FILINGS: set[asyncio.Task] = set()  # background filings of long reports (a task needs a strong reference)


# Trends ----------------------------------------------------------------------------------------


async def trends(study: str, sites: Collection[str] | None = None, as_of: date | None = None) -> dict:
    """The trends of the study's deviations at `sites` (None: every site; a site the study lacks: NotFound).
    `as_of` is accepted for compatibility and ignored: trends cover every deviation recorded so far."""
    if sites is not None:
        await _require_sites(study, sites)
    rows, _ = await deviations.listing(study, sites=sites)
    return {"study": study, **figures.trends(rows)}


def trend_charts(trend: dict, *, with_sites: bool = True) -> list[dict]:
    """Chart specifications (JSON) for the templates' `chart()`: by month and category, by site, time to closure."""
    specs = [
        {
            "kind": "stacked",
            "title": "Deviations by month and category",
            "periods": trend["months"],
            "series": trend["by_month_and_category"],
            "y_label": "deviations",
        }
    ]
    if with_sites:
        specs.append({"kind": "bars", "title": "Deviations by site", "items": [list(i) for i in trend["by_site"]]})
    specs.append({"kind": "bars", "title": "Deviations by rule", "items": [list(i) for i in trend["by_rule"]]})
    specs.append(
        {
            "kind": "histogram",
            "title": "Days from detection to closure",
            "values": trend["days_to_closure"],
            "bins": CLOSURE_BINS,
            "unit": "days",
        }
    )
    return specs


# Listing ---------------------------------------------------------------------------------------


def listing_rows(study: str, rows: list[dict], day_one: dict[str, date] | None = None) -> list[dict]:
    """SDTM DV-like rows of the deviations that stand (resolved by data correction and not-a-deviation left
    out); DVSEQ numbers each participant's, DVSPID is the record's own ID. A site-level deviation has no
    USUBJID. DVSTDY counts from the participant's day one (`day_one`: subject -> date; no day 0); EPOCH is
    left empty, as no epoch is recorded."""
    day_one = day_one or {}
    seq: dict[str, int] = {}
    out = []
    for row in filter(figures.stands, rows):
        subject = f"{study}-{row['participant']}" if row["participant"] else None
        if subject:
            seq[subject] = seq.get(subject, 0) + 1
        first = day_one.get(row["participant"]) if row["participant"] else None
        occurred = _date(row["occurred_on"])
        out.append(
            {
                "STUDYID": study,
                "DOMAIN": "DV",
                "USUBJID": subject,
                "DVSEQ": seq.get(subject) if subject else None,
                "DVSPID": row["id"],
                "DVTERM": row["description"],
                "DVDECOD": row["dvdecod"],
                "DVCAT": row["dvcat"],
                "EPOCH": None,
                "DVSTDTC": row["occurred_on"],
                "DVSTDY": study_day(occurred, first) if first and occurred else None,
                "SITEID": row["site"],
                "VISIT": row["visit"],
                "RULE": row["rule"] or figures.MANUAL,
                "CLASSIFICATION": row["classification"],
                "STATE": row["state"],
                "DAYS_OUTSIDE": row["days_outside"],
                "DETECTED_UTC": row["detected_at"],
                "CLOSED_UTC": row["closed_at"],
            }
        )
    return out


async def listing_file(study: str, sites: Collection[str] | None, kind: str, actor: str) -> tuple[bytes, int]:
    """The listing as CSV (UTF-8 with BOM, for spreadsheets; formula-guarded) or XLSX; audited as an export."""
    if kind not in ("csv", "xlsx"):
        raise invalid(f"'{kind}' is not a listing format; choose csv or xlsx", field="format")
    rows, _ = await deviations.listing(study, sites=sites)
    table = listing_rows(study, rows, await _day_one(study))
    if kind == "csv":
        data = tabular.csv_text(LISTING_COLUMNS, table).encode("utf-8-sig")
    else:
        typed = [
            {
                **r,
                "DVSTDTC": _date(r["DVSTDTC"]),
                "DETECTED_UTC": _instant(r["DETECTED_UTC"]),
                "CLOSED_UTC": _instant(r["CLOSED_UTC"]),
            }
            for r in table
        ]
        data = await to_thread.run_sync(tabular.xlsx_bytes, "Deviations", LISTING_COLUMNS, typed)
    await _audit_export(
        actor,
        "deviation_listing",
        study,
        {"format": kind, "rows": len(table), "sites": sorted(sites) if sites is not None else "all"},
    )
    return data, len(table)


async def _day_one(study: str) -> dict[str, date]:
    """Each participant's day one: the date of their protocol's day-one event, when recorded."""
    study_id = (await protocols.require_study(study))["id"]
    firsts = {
        row["id"]: (await protocols.protocol_of(row["id"], row["sha256"])).day_one
        for row in await lookups.list_versions(study_id)
    }
    names = sorted(set(firsts.values()))
    rows = (
        await fetch(
            "SELECT p.subject_id, p.protocol_version, e.event, e.date FROM participants p"
            " JOIN recorded_events e ON e.participant = p.id"
            f" WHERE p.study = {{}} AND e.event IN ({', '.join(['{}'] * len(names))})",
            study_id,
            *names,
        )
        if names
        else []
    )
    return {r["subject_id"]: _date(str(r["date"])) for r in rows if firsts.get(r["protocol_version"]) == r["event"]}


# The deviation log and the monitoring visit report ---------------------------------------------


@dataclass(frozen=True)
class Queued:
    """A long report handed to a render job: poll `url` (the render-jobs API), then fetch its result."""

    job_id: str
    url: str
    pages_estimated: int
    file_name: str
    label: str


async def report_data(study: str, site: str, name: str, as_of: date, prepared_by: str) -> dict:
    """The data a deviation log or monitoring visit report of `site` is rendered from."""
    if name not in DOCUMENT_NAMES:
        raise invalid(f"'{name}' is not a deviation report; choose {LOG} or {VISIT_REPORT}", field="report")
    await require_site(study, site)
    rows = _as_of(await deviations.listing(study, sites=[site]), as_of)
    trend = figures.trends(rows)
    charts = trend_charts(trend, with_sites=False)
    if name == LOG:
        counts = {
            "Deviations": len(rows),
            "Open": sum(r["open"] for r in rows),
            "Closed": sum(r["state"] == "closed" and not r["open"] for r in rows),
            "Important": sum(r["classification"] == "important" and figures.stands(r) for r in rows),
        }
        return {
            "study_code": study,
            "site": site,
            "as_of": as_of.isoformat(),
            "summary": [{"label": k, "value": v} for k, v in counts.items()],
            "charts": charts,
            "entries": [_log_entry(r) for r in rows],
        }
    summary = (await site_summary(study, [site], as_of, rows=rows))["sites"][0]
    open_rows = [r for r in rows if r["open"]]
    capa_ids = {r["capa"] for r in rows if r["capa"] is not None}
    capas = [
        {
            "id": c["id"],
            "title": c["title"],
            "state": c["state"],
            "owner": c["owner"],
            "due_on": c["due_on"],
            "deviations": ", ".join(str(d) for d in c["deviations"]),
        }
        for c in await deviation_review.list_capas(study, sites={site})
        if c["id"] in capa_ids
    ]
    return {
        "study_code": study,
        "site": site,
        "visit_date": as_of.isoformat(),
        "prepared_by": prepared_by,
        "summary": _summary_lines(summary, trend),
        "charts": charts,
        "capas": capas,
        "entries": [{**_log_entry(r), "age_days": max(0, deviations.age_days(r, as_of))} for r in open_rows],
    }


async def render_report(
    study: str, site: str, name: str, kind: str, as_of: date, prepared_by: str, label: str | None = None
) -> tuple[bytes, str]:
    """(bytes, file name) of the report as PDF/A or DOCX, dated `as_of`, rendered here whatever its length."""
    _check_kind(kind)
    data = await report_data(study, site, name, as_of, prepared_by)
    label = label or as_of.isoformat()
    return await _render(kind, name, data, as_of, _title(name, study, site), label), _file_name(
        name, study, site, label, kind
    )


async def download_report(
    study: str, site: str, name: str, kind: str, as_of: date, actor: str, prepared_by: str, *, jobs: Any = None
) -> tuple[bytes | Queued, str]:
    """(bytes, file name); with `jobs` (the app's RenderJobs), a report of `LONG_DOCUMENT_PAGES` or more is
    queued instead and the first item is a `Queued` naming the job (owned by `actor`)."""
    _check_kind(kind)
    data = await report_data(study, site, name, as_of, prepared_by)
    label = as_of.isoformat()
    file_name = _file_name(name, study, site, label, kind)
    queued = await _queue(jobs, kind, name, data, as_of, _title(name, study, site), label, actor, study, file_name)
    if queued is not None:
        await _audit_export(
            actor, name, f"{study}/{site}", {"format": kind, "as_of": as_of.isoformat(), "render_job": queued.job_id}
        )
        return queued, file_name
    content = await _render(kind, name, data, as_of, _title(name, study, site), label)
    await _audit_export(
        actor, name, f"{study}/{site}", {"format": kind, "as_of": as_of.isoformat(), "sha256": _sha256(content)}
    )
    return content, file_name


async def file_report(
    study: str, site: str, name: str, kind: str, as_of: date, actor: str, prepared_by: str, *, jobs: Any = None
) -> dict:
    """The report's PDF/A as a new draft version of the site's binder document, labelled by its day.

    The same data (who prepared it aside) as any version of that day returns that version (`filed` false);
    changed data gets `.2`, `.3`... A concurrent filing that took the label first is re-read once. With
    `jobs`, a long report is rendered by a job and filed when it is done: the answer then has `queued`
    true, the job's ID and URL, and the label it will be filed under."""
    if name not in DOCUMENT_NAMES:
        raise invalid(f"'{name}' cannot be filed; choose {LOG} or {VISIT_REPORT}", field="report")
    _check_kind(kind)
    if kind != FILED_KIND:
        raise invalid("the binder keeps a report as PDF/A; download the DOCX instead of filing it", field="format")
    key = DocumentKey(study, site, DOCUMENT_NAMES[name])
    data = await report_data(study, site, name, as_of, prepared_by)
    report_key = f"{kind}:{_sha256(_canonical({k: v for k, v in data.items() if k != 'prepared_by'}))}"
    summary = f"generated by trialcoord from the deviation records as of {as_of}; report key {report_key}"
    title = _title(name, study, site)
    for attempt in (1, 2):
        found, label = await _same_or_next(key, as_of, report_key)
        if found is not None:
            return {**found, "filed": False}
        file_name = _file_name(name, study, site, label, kind)
        queued = await _queue(jobs, kind, name, data, as_of, title, label, actor, study, file_name)
        if queued is not None:
            _background(_file_when_done(jobs, queued, key, name, summary, report_key, actor))
            return {
                "study": study,
                "site": site,
                "name": key.name,
                "label": label,
                "file_name": file_name,
                "media_type": MEDIA_TYPES[kind],
                "status": "queued",
                "filed": False,
                "queued": True,
                "job_id": queued.job_id,
                "job_url": queued.url,
                "pages_estimated": queued.pages_estimated,
            }
        content = await _render(kind, name, data, as_of, title, label)
        try:
            row = await documents.add_version(key, ARTIFACTS[name], label, content, file_name, summary, actor=actor)
        except Conflict:
            if attempt == 2:
                raise
            continue  # filed meanwhile by someone else: look again
        return {**row, "filed": True}
    raise AssertionError("unreachable")


async def _same_or_next(key: DocumentKey, as_of: date, report_key: str) -> tuple[dict | None, str]:
    """(the version of `as_of` with the same report key, or None; the label a new version would take)."""
    same_day = [
        row
        for row in await documents.list_documents(key.study, key.site)
        if row["site"] == key.site and row["name"] == key.name and _of_day(row["label"], as_of)
    ]
    for row in same_day:
        found = _KEY.search(row["change_summary"] or "")
        if found and found[1] == report_key:
            return row, row["label"]
    if not same_day:
        return None, as_of.isoformat()
    return None, f"{as_of.isoformat()}.{max(_ordinal(row['label']) for row in same_day) + 1}"


async def _queue(
    jobs: Any,
    kind: str,
    template: str,
    data: dict,
    as_of: date,
    title: str,
    label: str,
    owner: str,
    study: str,
    file_name: str,
) -> Queued | None:
    """A render job for a long report (None: short, or no job runner given)."""
    from trialcoord.kernel.render.jobs import LONG_DOCUMENT_PAGES, TooManyJobs, estimate_pages

    if jobs is None:
        return None
    pages = estimate_pages(template, data)
    if pages < LONG_DOCUMENT_PAGES:
        return None
    try:
        job_id = jobs.submit(kind, template, data, owner=owner, **_meta(as_of, title, label))
    except TooManyJobs as error:
        raise Conflict(str(error)) from None
    return Queued(job_id, f"/api/studies/{study}/render-jobs/{job_id}", pages, file_name, label)


async def _file_when_done(
    jobs: Any, queued: Queued, key: DocumentKey, name: str, summary: str, report_key: str, actor: str
) -> None:
    """File a queued report once its job is done (a failed job files nothing: its status says why)."""
    from trialcoord.kernel.render.jobs import JobNotDone

    while True:
        try:
            content = jobs.result(queued.job_id, owner=actor)
            break
        except JobNotDone as waiting:
            if waiting.status.state == "failed":
                log.warning("report %s %s was not filed: %s", key, queued.label, waiting.status.error)
                return
        except KeyError:  # the job was forgotten (the server closed it)
            return
        await asyncio.sleep(0.2)
    try:
        await documents.add_version(key, ARTIFACTS[name], queued.label, content, queued.file_name, summary, actor=actor)
    except Conflict:  # the label was taken meanwhile; the same report there is fine, another one is logged
        found, _ = await _same_or_next(key, date.fromisoformat(queued.label[:10]), report_key)
        if found is None:
            log.warning("report %s %s was not filed: its label was taken meanwhile; file it again", key, queued.label)


def _background(coroutine) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _FILINGS.add(task)
    task.add_done_callback(_FILINGS.discard)


async def pending_filings() -> None:
    """Wait for the long reports being filed in the background (tests, and a server shutting down)."""
    while _FILINGS:
        await asyncio.gather(*list(_FILINGS), return_exceptions=True)


# The site manager's summary --------------------------------------------------------------------


async def site_summary(
    study: str, sites: Collection[str], as_of: date, *, personal: bool = True, rows: list[dict] | None = None
) -> dict:
    """Per site and in total, as of `as_of`: participants enrolled by then (ended: their ending event on or
    before it), visits (done on or before it; missed: window closed before it, or marked missed), completion
    and on-time rate, deviations detected on or before it that were open then, by age, the re-consent
    backlog and binder documents expired or expiring within 60 days (study-level ones count in the total
    only; subject logs only for callers with `personal` data access). `rows`: the sites' deviations as of
    `as_of`, when the caller has them already."""
    chosen = await _require_sites(study, sites)
    if rows is None:
        rows = _as_of(await deviations.listing(study, sites=chosen), as_of)
    queue = [r for r in await consent.reconsent(study, as_of) if r["site"] in chosen]
    expiring = [d for d in await _expiring(study, as_of, personal) if d["site"] in chosen or d["site"] is None]
    people, visits = await _site_counts(study, chosen, as_of)
    per_site = []
    for site in chosen:
        mine = people.get(site, {"participants": 0, "ended": 0})
        rates = figures.visit_rates(visits.get(site, []))
        site_rows = [r for r in rows if r["site"] == site]
        per_site.append(
            {
                "site": site,
                "participants": mine["participants"],
                "active": mine["participants"] - mine["ended"],
                "ended": mine["ended"],
                "visits_due": rates["due"],
                "visits_done": rates["done"],
                "visits_on_time": rates["on_time"],
                "visits_missed": rates["missed"],
                "completion_rate": rates["completion_rate"],
                "on_time_rate": rates["on_time_rate"],
                "open_deviations": sum(r["open"] for r in site_rows),
                "ages": figures.age_buckets(site_rows, as_of),
                "reconsent": sum(r["site"] == site for r in queue),
                "expiring": sum(d["site"] == site for d in expiring),
            }
        )
    total = {**_total(per_site), "expiring": len(expiring)}
    return {
        "study": study,
        "as_of": as_of.isoformat(),
        "sites": per_site,
        "total": total,
        "reconsent": [{**r, "required_since": str(r["required_since"])} for r in queue],
        "documents": expiring,
    }


def summary_charts(summary: dict) -> list[dict]:
    ages = summary["total"]["ages"]
    return [
        {
            "kind": "bars",
            "title": "Open deviations by age (days since detection)",
            "items": [[label, ages[label]] for label, _, _ in figures.AGE_BUCKETS],
        },
        {
            "kind": "bars",
            "title": "Visits on time by site",
            "unit": "%",
            "items": [
                [s["site"], round(100 * s["on_time_rate"], 1)]
                for s in summary["sites"]
                if s["on_time_rate"] is not None
            ],
        },
    ]


async def site_summary_pdf(study: str, sites: list[str], as_of: date, actor: str, *, personal: bool = True) -> bytes:
    summary = await site_summary(study, sites, as_of, personal=personal)
    data = {
        "study_code": study,
        "as_of": summary["as_of"],
        "total": summary["total"],
        "reconsent": summary["reconsent"],
        "documents": summary["documents"],
        "charts": summary_charts(summary),
        "sites": [
            {**s, "completion_rate": _percent(s["completion_rate"]), "on_time_rate": _percent(s["on_time_rate"])}
            for s in summary["sites"]
        ],
    }
    where = sites[0] if len(sites) == 1 else "sites " + ", ".join(sorted(sites))
    pdf = await _render("pdf", SUMMARY, data, as_of, f"Site summary {study} {where}".strip(), as_of.isoformat())
    await _audit_export(
        actor,
        SUMMARY,
        f"{study}/{sites[0]}" if len(sites) == 1 else study,
        {"format": "pdf", "as_of": as_of.isoformat(), "sites": sorted(sites), "sha256": _sha256(pdf)},
    )
    return pdf


async def require_site(study: str, site: str) -> None:
    await _require_sites(study, [site])


async def _require_sites(study: str, sites: Collection[str]) -> list[str]:
    """The study's sites among `sites`, in the study's order; NotFound naming a site the study lacks."""
    known = [row["code"] for row in await list_sites(study)]
    for site in sites:
        if site not in known:
            raise NotFound(f"study {study} has no site {site}")
    wanted = set(sites)
    return [code for code in known if code in wanted]


# Store: counts by site in SQL, so the summary never loads a site's visits --------------------------

_VISIT_STATES = """
SELECT site, state, COUNT(*) AS n FROM (
  SELECT s.code AS site, CASE
    WHEN x.actual IS NOT NULL AND x.actual <= {} THEN x.status
    WHEN x.actual IS NULL AND x.missed_reason IS NOT NULL THEN x.status
    WHEN x.target IS NOT NULL AND x.latest IS NOT NULL AND x.latest < {} AND NOT x.optional THEN 'missed'
    ELSE 'open' END AS state
  FROM visits x JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site
  WHERE p.study = {} AND p.enrolled_on <= {} AND x.status <> 'not_applicable' AND s.code IN (%s)
) counted GROUP BY site, state"""
_PEOPLE = """
SELECT s.code AS site, COUNT(*) AS participants, SUM(CASE WHEN %s THEN 1 ELSE 0 END) AS ended
FROM participants p JOIN sites s ON s.id = p.site
WHERE p.study = {} AND p.enrolled_on <= {} AND s.code IN (%s) GROUP BY s.code"""
_ENDED = "EXISTS (SELECT 1 FROM recorded_events e WHERE e.participant = p.id AND e.date <= {} AND e.event IN (%s))"


async def _site_counts(study: str, sites: list[str], as_of: date) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """(site -> participants enrolled on or before `as_of` and how many had ended by then; site -> the
    status of each of its visits as of `as_of`, repeated by count). Open visits whose window closed before
    `as_of` count as missed, visits done after it as not done."""
    if not sites:
        return {}, {}
    study_id = (await protocols.require_study(study))["id"]
    ending = sorted(
        {
            name
            for row in await lookups.list_versions(study_id)
            for name, event in (await protocols.protocol_of(row["id"], row["sha256"])).events.items()
            if event.ends_schedule
        }
    )
    marks = ", ".join(["{}"] * len(sites))
    if ending:
        ended, ended_args = _ENDED % ", ".join(["{}"] * len(ending)), [as_of, *ending]
    else:
        ended, ended_args = "1 = 0", []
    people = await fetch(_PEOPLE % (ended, marks), *ended_args, study_id, as_of, *sites)
    states = await fetch(_VISIT_STATES % marks, as_of, as_of, study_id, as_of, *sites)
    visits: dict[str, list[str]] = {}
    for row in states:
        visits.setdefault(row["site"], []).extend([row["state"]] * int(row["n"]))
    return (
        {r["site"]: {"participants": int(r["participants"]), "ended": int(r["ended"] or 0)} for r in people},
        visits,
    )


# Helpers ---------------------------------------------------------------------------------------


def _as_of(listed: tuple[list[dict], int], as_of: date) -> list[dict]:
    """The deviations detected on or before `as_of`, each open if it was then (closed after it: still open)."""
    rows, _ = listed
    day = as_of.isoformat()
    return [
        {**r, "open": True} if not r["open"] and r["closed_at"] and r["closed_at"][:10] > day else r
        for r in rows
        if r["detected_at"][:10] <= day
    ]


def _total(per_site: list[dict]) -> dict:
    summed = {
        key: sum(s[key] for s in per_site)
        for key in (
            "participants",
            "active",
            "ended",
            "visits_due",
            "visits_done",
            "visits_on_time",
            "visits_missed",
            "open_deviations",
            "reconsent",
            "expiring",
        )
    }
    ages = {label: sum(s["ages"][label] for s in per_site) for label, _, _ in figures.AGE_BUCKETS}
    done, due = summed["visits_done"], summed["visits_due"]
    return {
        **summed,
        "ages": ages,
        "completion_rate": round(done / due, 4) if due else None,
        "on_time_rate": round(summed["visits_on_time"] / done, 4) if done else None,
    }


async def _expiring(study: str, as_of: date, personal: bool) -> list[dict]:
    until = as_of + timedelta(days=EXPIRING_DAYS)
    found = []
    for row in await documents.list_documents(study):
        expires = row["expires_on"]
        if not personal and row["artifact"]["unique_id"] in documents.PERSONAL_ARTIFACTS:
            continue
        if row["status"] in IN_FORCE and expires is not None and expires <= until:
            found.append(
                {
                    "site": row["site"],
                    "document": row["name"],
                    "version": row["label"],
                    "state": "expired" if expires < as_of else "expiring",
                    "expires_on": expires.isoformat(),
                }
            )
    return sorted(found, key=lambda d: (d["expires_on"], d["site"] or "", d["document"]))


def _summary_lines(site: dict, trend: dict) -> list[dict]:
    ages = site["ages"]
    return [
        {"label": label, "value": value}
        for label, value in (
            ("Participants (active / ended)", f"{site['participants']} ({site['active']} / {site['ended']})"),
            ("Visits done / due", f"{site['visits_done']} / {site['visits_due']}"),
            ("Visit completion", _percent(site["completion_rate"])),
            ("Visits on time", _percent(site["on_time_rate"])),
            ("Open deviations", site["open_deviations"]),
            (
                "Open by age: 0-30 / 31-60 / 61-90 / >90 days",
                " / ".join(str(ages[label]) for label, _, _ in figures.AGE_BUCKETS),
            ),
            (
                "Deviations closed; median days to closure",
                f"{trend['closure']['closed']};"
                f" {trend['closure']['median_days'] if trend['closure']['closed'] else '-'}",
            ),
            ("Re-consent backlog", site["reconsent"]),
            ("Binder documents expired or expiring", site["expiring"]),
        )
    ]


def _log_entry(row: dict) -> dict:
    return {
        "id": str(row["id"]),
        "participant": row["participant"] or "(site)",
        "visit": row["visit"] or "-",
        "category": row["category"],
        "description": row["description"],
        "occurred": row["occurred_on"],
        "identified": row["detected_at"][:10],
        "classification": row["classification"].replace("_", " "),
        "status": row["state"].replace("_", " "),
    }


def _check_kind(kind: str) -> None:
    if kind not in MEDIA_TYPES:
        raise invalid(f"'{kind}' is not a document format; choose pdf or docx", field="format")


def _title(name: str, study: str, site: str) -> str:
    return f"{DOCUMENT_NAMES[name]} {study} site {site}"


def _file_name(name: str, study: str, site: str, label: str, kind: str) -> str:
    return f"{name}-{study}-{site}-{label}.{kind}"


def _meta(as_of: date, title: str, label: str) -> dict:
    return {"created_at": f"{as_of.isoformat()}T00:00:00.000000Z", "title": title, "version_label": label}


async def _render(kind: str, template: str, data: dict, as_of: date, title: str, label: str) -> bytes:
    from trialcoord.kernel.render.documents import render_docx, render_pdf

    meta = _meta(as_of, title, label)
    cache = binder.render_cache()
    if cache is not None:
        return await to_thread.run_sync(lambda: cache.render(kind, template, data, **meta))
    renderer = render_pdf if kind == "pdf" else render_docx
    return await to_thread.run_sync(lambda: renderer(template, data, **meta))


def _canonical(data: dict) -> bytes:
    from trialcoord.kernel.render.documents import canonical_json

    return canonical_json(data)


async def _audit_export(actor: str, record_type: str, record_id: str, values: dict) -> None:
    await audit_log.record_alone(actor, Change("export", record_type, record_id, None, values))


def _of_day(label: str, day: date) -> bool:
    found = re.fullmatch(_DAY_LABEL, label, re.ASCII)
    return found is not None and found[1] == day.isoformat()


def _ordinal(label: str) -> int:
    found = re.fullmatch(_DAY_LABEL, label, re.ASCII)
    return int(found[2]) if found and found[2] else 1


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def _instant(text: str | None) -> datetime | None:
    """A stored UTC instant as a naive wall-clock datetime (XLSX has no zones; the column says UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None) if text else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
