"""The impact of a protocol version as a table, CSV, JSON and the one-page PDF an IRB submission carries, and
the audit of who read which impact in which form."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date

from trialcoord.amendments.impact import Impact
from trialcoord.amendments.rules.amendments import NO_VERSION, REQUIRED, ParticipantImpact
from trialcoord.deviations import detection
from trialcoord.deviations.rules.deviations import Finding
from trialcoord.kernel import audit_log
from trialcoord.kernel.rules.audit_entries import utc_instant

IMPACT_COLUMNS = [
    "subject_id",
    "site",
    "item",
    "visit",
    "old_target",
    "old_window",
    "new_target",
    "new_window",
    "detail",
]


@dataclass(frozen=True, slots=True)
class ImpactRow:
    """One thing a version would change for a participant (or, listed apart, a participant it leaves out); what
    a kind of row does not say is None."""

    subject_id: str
    site: str | None
    item: str
    visit: str | None = None
    old_target: date | None = None
    old_window: str | None = None
    new_target: date | None = None
    new_window: str | None = None
    detail: str | None = None

    def cells(self) -> dict[str, object]:
        """The row by IMPACT_COLUMNS, for the CSV and the command line's table."""
        return {name: getattr(self, name) for name in IMPACT_COLUMNS}


@dataclass(frozen=True, slots=True)
class ImpactCounts:
    """How many participants a version affects and how: of a study, or of one site."""

    participants: int
    affected: int
    visits_moving: int
    visits_appearing: int
    visits_disappearing: int
    deviations_resolved: int
    deviations_created: int
    reconsent_required: int
    reconsent_unknown: int


IMPACT_COUNTS = [f.name for f in fields(ImpactCounts)]


@dataclass(frozen=True, slots=True)
class SiteImpact:
    site: str
    counts: ImpactCounts


@dataclass(frozen=True, slots=True)
class ImpactSummary:
    """The counts for the whole study and site by site: the one-page summary an IRB submission carries."""

    totals: ImpactCounts
    sites: tuple[SiteImpact, ...]


def impact_rows(result: Impact, left: bool = False) -> list[ImpactRow]:
    """One row per thing the version would change, participant by participant (table and CSV); `left`: also a
    row per participant it would not apply to, with the reason (the CSV and the command line's table)."""
    rows: list[ImpactRow] = []
    for p in result.affected:
        for change in p.changes:
            rows.append(
                ImpactRow(
                    p.subject_id,
                    p.site,
                    f"visit {change.kind}",
                    change.visit,
                    old_target=change.old[0],
                    old_window=_window(change.old),
                    new_target=change.new[0],
                    new_window=_window(change.new),
                    detail=change.name,
                )
            )
        for kind, findings in (("deviation resolved", p.resolved), ("deviation created", p.created)):
            for f in findings:
                rows.append(ImpactRow(p.subject_id, p.site, kind, f.visit, detail=detection.describe(f)))
        if p.reconsent.status == REQUIRED:
            before = p.reconsent.before
            rows.append(
                ImpactRow(
                    p.subject_id,
                    p.site,
                    "re-consent required",
                    before[0] if before else None,
                    new_target=before[1] if before else None,
                    detail=f"on consent version {' or '.join(p.reconsent.versions)} before the next visit",
                )
            )
    if left:
        rows += [
            ImpactRow(subject, None, "not affected", detail=why) for subject, why in sorted(result.skipped.items())
        ]
    return rows


def impact_dict(result: Impact) -> dict[str, object]:
    """The whole impact as JSON values (dates as ISO text). It stays a mapping: it is the published JSON document
    itself (the API's body as is, and the command line's --format json), not a record read by attribute."""
    return {
        "study": result.study,
        "version": result.version,
        "effective": result.effective.isoformat(),
        "as_of": result.as_of.isoformat(),
        "site": result.site,
        "participants": len(result.participants),
        "summary": _counts_dict(impact_summary(result).totals),
        "affected": [
            {
                "subject_id": p.subject_id,
                "site": p.site,
                "visits": [
                    {"visit": c.visit, "name": c.name, "change": c.kind, "old": _dates(c.old), "new": _dates(c.new)}
                    for c in p.changes
                ],
                "deviations_resolved": [_finding(f) for f in p.resolved],
                "deviations_created": [_finding(f) for f in p.created],
                "reconsent": {
                    "status": p.reconsent.status,
                    "versions": list(p.reconsent.versions),
                    "before_visit": p.reconsent.before[0] if p.reconsent.before else None,
                    "before_date": p.reconsent.before[1].isoformat() if p.reconsent.before else None,
                },
            }
            for p in result.affected
        ],
        "skipped": [{"subject_id": s, "reason": why} for s, why in sorted(result.skipped.items())],
        "differences": result.differences,
    }


def impact_summary(result: Impact) -> ImpactSummary:
    """Counts for the whole study and by site: the one-page summary an IRB submission carries."""

    def count(people: list[ParticipantImpact]) -> ImpactCounts:
        kinds = [c.kind for p in people for c in p.changes]
        return ImpactCounts(
            participants=len(people),
            affected=sum(p.affected for p in people),
            visits_moving=kinds.count("moves"),
            visits_appearing=kinds.count("appears"),
            visits_disappearing=kinds.count("disappears"),
            deviations_resolved=sum(len(p.resolved) for p in people),
            deviations_created=sum(len(p.created) for p in people),
            reconsent_required=sum(p.reconsent.status == REQUIRED for p in people),
            reconsent_unknown=sum(p.reconsent.status == NO_VERSION for p in people),
        )

    by_site: dict[str, list[ParticipantImpact]] = {}
    for p in result.participants:
        by_site.setdefault(p.site, []).append(p)
    return ImpactSummary(
        count(list(result.participants)),
        tuple(SiteImpact(site, count(people)) for site, people in sorted(by_site.items())),
    )


def _counts_dict(counts: ImpactCounts) -> dict[str, int]:
    """The counts as JSON and PDF data (IMPACT_COUNTS' order: the document's key order)."""
    return {name: getattr(counts, name) for name in IMPACT_COUNTS}


IMPACT_MEDIA = {"csv": "text/csv", "pdf": "application/pdf"}


async def impact_file(result: Impact, fmt: str, actor: str) -> tuple[bytes, str, str]:
    """The impact as a download (CSV or the one-page PDF), audited as an export: (content, media type, file
    name). The JSON and the page are audited by `record_impact_read`."""
    await record_impact_read(result, fmt, actor)
    if fmt == "csv":
        from trialcoord.kernel.render.tabular import csv_text

        content = csv_text(IMPACT_COLUMNS, [row.cells() for row in impact_rows(result, left=True)]).encode("utf-8-sig")
    else:
        content = impact_pdf(result, created_at=utc_instant(audit_log.clock()))
    return content, IMPACT_MEDIA[fmt], f"{result.study}-{result.version}-impact.{fmt}".replace("/", "_")


async def record_impact_read(result: Impact, fmt: str, actor: str) -> None:
    """Who looked at which impact, in which form: the impact shows participants of the sites read."""
    await audit_log.record_alone(
        actor,
        audit_log.Change(
            "export",
            "protocol_impact",
            f"{result.study}/{result.site}" if result.site else result.study,
            None,
            {
                "format": fmt,
                "version": result.version,
                "effective": result.effective.isoformat(),
                "participants": len(result.participants),
            },
        ),
    )


SUMMARY_LINES = 18  # differences and sites shown on the one page; the rest is counted


def impact_pdf(result: Impact, created_at: str) -> bytes:
    from trialcoord.kernel.render.pdf_documents import render_pdf  # WeasyPrint: only when a PDF is asked for

    summary = impact_summary(result)
    differences = [{"version": label, "line": line} for label, lines in result.differences.items() for line in lines]
    data = {
        "study_code": result.study,
        "version": result.version,
        "effective": result.effective.isoformat(),
        "as_of": result.as_of.isoformat(),
        "site": result.site or "all sites",
        "totals": _counts_dict(summary.totals),
        "sites": [{"site": s.site, **_counts_dict(s.counts)} for s in summary.sites[:SUMMARY_LINES]],
        "more_sites": max(0, len(summary.sites) - SUMMARY_LINES),
        "differences": differences[:SUMMARY_LINES],
        "more_differences": max(0, len(differences) - SUMMARY_LINES),
        "skipped": len(result.skipped),
    }
    return render_pdf(
        "amendment_impact",
        data,
        created_at=created_at,
        title=f"Impact of protocol version {result.version}",
        version_label=result.version,
    )


def _window(dates: tuple[date | None, date | None, date | None]) -> str | None:
    _, earliest, latest = dates
    if dates == (None, None, None):
        return None
    return f"{earliest or 'unbounded'} to {latest or 'unbounded'}"


def _dates(dates: tuple[date | None, date | None, date | None]) -> dict[str, str | None]:
    return dict(zip(("target", "earliest", "latest"), (d.isoformat() if d else None for d in dates)))


def _finding(f: Finding) -> dict[str, object]:
    return {
        "visit": f.visit,
        "occurrence": f.occurrence,
        "rule": str(f.rule),
        "occurred_on": f.occurred_on.isoformat() if f.occurred_on else None,
        "days_outside": f.days_outside,
        "description": detection.describe(f),
    }
