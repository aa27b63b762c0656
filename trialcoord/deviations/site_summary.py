"""The site manager's summary (issue 5 §3), per site and in total as of a day: participants, visits, open
deviations by age, the re-consent backlog and binder documents expiring; its charts, and the summary as PDF/A
(audited as an export)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from trialcoord.deviations.queue import listing
from trialcoord.deviations.records import Deviation
from trialcoord.deviations.report_support import audit_export, percent, render, require_sites, rows_as_of, sha256
from trialcoord.deviations.rules import deviation_trends as figures
from trialcoord.documents import consent_checks, documents
from trialcoord.kernel.render.cache import RenderCache
from trialcoord.scheduling import lookups, protocols

SUMMARY = "site_summary"
EXPIRING_DAYS = 60
IN_FORCE = frozenset({"effective", "approved"})


@dataclass(frozen=True, slots=True)
class SiteFigures:
    """One site's figures as of the summary's day (`ages`: open deviations by age bucket label)."""

    site: str
    participants: int
    active: int
    ended: int
    visits_due: int
    visits_done: int
    visits_on_time: int
    visits_missed: int
    completion_rate: float | None
    on_time_rate: float | None
    open_deviations: int
    ages: dict[str, int]
    reconsent: int
    expiring: int


@dataclass(frozen=True, slots=True)
class SummaryTotals:
    """The sites' figures summed (`expiring` counts study-level documents too), and the rates over the sums."""

    participants: int
    active: int
    ended: int
    visits_due: int
    visits_done: int
    visits_on_time: int
    visits_missed: int
    open_deviations: int
    reconsent: int
    expiring: int
    ages: dict[str, int]
    completion_rate: float | None
    on_time_rate: float | None


@dataclass(frozen=True, slots=True)
class ExpiringDocument:
    """A binder document in force that expired or expires within `EXPIRING_DAYS` (`site` None: study-level)."""

    site: str | None
    document: str
    version: str
    state: str
    expires_on: str


@dataclass(frozen=True, slots=True)
class SiteSummary:
    """The site manager's summary as of `as_of` (ISO date): per site and in total; the participants awaiting
    re-consent (as the consent checks list them, `required_since` as text) and the documents expiring."""

    study: str
    as_of: str
    sites: list[SiteFigures]
    total: SummaryTotals
    reconsent: list[dict[str, Any]]
    documents: list[ExpiringDocument]


async def site_summary(
    study: str,
    sites: Collection[str],
    as_of: date,
    *,
    personal: bool = True,
    rows: Sequence[Deviation] | None = None,
) -> SiteSummary:
    """Per site and in total, as of `as_of`: participants enrolled by then (ended: their ending event on or
    before it), visits (done on or before it; missed: window closed before it, or marked missed), completion
    and on-time rate, deviations detected on or before it that were open then, by age, the re-consent
    backlog and binder documents expired or expiring within 60 days (study-level ones count in the total
    only; subject logs only for callers with `personal` data access). `rows`: the sites' deviations as of
    `as_of`, when the caller has them already."""
    chosen = await require_sites(study, sites)
    if rows is None:
        rows = rows_as_of(await listing(study, sites=chosen), as_of)
    queue = [r for r in await consent_checks.reconsent(study, as_of) if r.site in chosen]
    expiring = [d for d in await _expiring(study, as_of, personal) if d.site in chosen or d.site is None]
    people, visits = await _site_counts(study, chosen, as_of)
    per_site = []
    for site in chosen:
        mine = people.get(site, {"participants": 0, "ended": 0})
        rates = figures.visit_rates(visits.get(site, []))
        site_rows = [r for r in rows if r.site == site]
        per_site.append(
            SiteFigures(
                site=site,
                participants=mine["participants"],
                active=mine["participants"] - mine["ended"],
                ended=mine["ended"],
                visits_due=rates["due"],
                visits_done=rates["done"],
                visits_on_time=rates["on_time"],
                visits_missed=rates["missed"],
                completion_rate=rates["completion_rate"],
                on_time_rate=rates["on_time_rate"],
                open_deviations=sum(r.open for r in site_rows),
                ages=figures.age_buckets(site_rows, as_of),
                reconsent=sum(r.site == site for r in queue),
                expiring=sum(d.site == site for d in expiring),
            )
        )
    return SiteSummary(
        study=study,
        as_of=as_of.isoformat(),
        sites=per_site,
        total=_total(per_site, len(expiring)),
        reconsent=[{**asdict(r), "required_since": str(r.required_since)} for r in queue],
        documents=expiring,
    )


def summary_charts(summary: SiteSummary) -> list[dict[str, Any]]:
    """Chart specifications (JSON) for the templates' `chart()`: open deviations by age, visits on time by site."""
    ages = summary.total.ages
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
            "items": [[s.site, round(100 * s.on_time_rate, 1)] for s in summary.sites if s.on_time_rate is not None],
        },
    ]


async def site_summary_pdf(
    study: str, sites: list[str], as_of: date, actor: str, *, personal: bool = True, cache: RenderCache | None = None
) -> bytes:
    summary = await site_summary(study, sites, as_of, personal=personal)
    data = {  # the template's data: a mapping its schema checks, canonical JSON in the render cache's key
        "study_code": study,
        "as_of": summary.as_of,
        "total": asdict(summary.total),
        "reconsent": summary.reconsent,
        "documents": [asdict(d) for d in summary.documents],
        "charts": summary_charts(summary),
        "sites": [
            {**asdict(s), "completion_rate": percent(s.completion_rate), "on_time_rate": percent(s.on_time_rate)}
            for s in summary.sites
        ],
    }
    where = sites[0] if len(sites) == 1 else "sites " + ", ".join(sorted(sites))
    pdf = await render("pdf", SUMMARY, data, as_of, f"Site summary {study} {where}".strip(), as_of.isoformat(), cache)
    await audit_export(
        actor,
        SUMMARY,
        f"{study}/{sites[0]}" if len(sites) == 1 else study,
        {"format": "pdf", "as_of": as_of.isoformat(), "sites": sorted(sites), "sha256": sha256(pdf)},
    )
    return pdf


# Store: counts by site in SQL, so the summary never loads a site's visits --------------------------


async def _site_counts(
    study: str, sites: list[str], as_of: date
) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    """(site -> participants enrolled on or before `as_of` and how many had ended by then; site -> the
    status of each of its visits as of `as_of`, repeated by count). Open visits whose window closed before
    `as_of` count as missed, visits done after it as not done."""
    if not sites:
        return {}, {}
    study_id = (await protocols.require_study(study)).id
    ending = sorted(
        {
            name
            for row in await lookups.list_versions(study_id)
            for name, event in (await protocols.protocol_of(row["id"], row["sha256"])).events.items()
            if event.ends_schedule
        }
    )
    people = await lookups.site_people(study_id, sites, as_of, ending)
    states = await lookups.site_visit_states(study_id, sites, as_of)
    visits: dict[str, list[str]] = {}
    for row in states:
        visits.setdefault(row["site"], []).extend([row["state"]] * int(row["n"]))
    return (
        {r["site"]: {"participants": int(r["participants"]), "ended": int(r["ended"] or 0)} for r in people},
        visits,
    )


def _total(per_site: list[SiteFigures], expiring: int) -> SummaryTotals:
    summed = {
        key: sum(getattr(s, key) for s in per_site)
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
        )
    }
    ages = {label: sum(s.ages[label] for s in per_site) for label, _, _ in figures.AGE_BUCKETS}
    done, due = summed["visits_done"], summed["visits_due"]
    return SummaryTotals(
        **summed,
        expiring=expiring,
        ages=ages,
        completion_rate=round(done / due, 4) if due else None,
        on_time_rate=round(summed["visits_on_time"] / done, 4) if done else None,
    )


async def _expiring(study: str, as_of: date, personal: bool) -> list[ExpiringDocument]:
    until = as_of + timedelta(days=EXPIRING_DAYS)
    found = []
    for row in await documents.list_documents(study):
        expires = row.expires_on
        if not personal and row.artifact.unique_id in documents.PERSONAL_ARTIFACTS:
            continue
        if row.status in IN_FORCE and expires is not None and expires <= until:
            found.append(
                ExpiringDocument(
                    site=row.site,
                    document=row.name,
                    version=row.label,
                    state="expired" if expires < as_of else "expiring",
                    expires_on=expires.isoformat(),
                )
            )
    return sorted(found, key=lambda d: (d.expires_on, d.site or "", d.document))
