"""The impact of a protocol version as a table, CSV, JSON and the one-page PDF an IRB submission carries, and
the audit of who read which impact in which form."""

from __future__ import annotations

from trialcoord.amendments.impact import Impact
from trialcoord.amendments.rules.amendments import NO_VERSION, REQUIRED, ParticipantImpact
from trialcoord.deviations import detection
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


def impact_rows(result: Impact, left: bool = False) -> list[dict]:
    """One row per thing the version would change, participant by participant (table and CSV); `left`: also a
    row per participant it would not apply to, with the reason (the CSV and the command line's table)."""
    rows = []
    for p in result.affected:
        base = {"subject_id": p.subject_id, "site": p.site}
        for change in p.changes:
            rows.append(
                {
                    **base,
                    "item": f"visit {change.kind}",
                    "visit": change.visit,
                    "old_target": change.old[0],
                    "old_window": _window(change.old),
                    "new_target": change.new[0],
                    "new_window": _window(change.new),
                    "detail": change.name,
                }
            )
        for kind, findings in (("deviation resolved", p.resolved), ("deviation created", p.created)):
            for f in findings:
                rows.append({**base, "item": kind, "visit": f.visit, "detail": detection.describe(f)})
        if p.reconsent.status == REQUIRED:
            before = p.reconsent.before
            rows.append(
                {
                    **base,
                    "item": "re-consent required",
                    "visit": before[0] if before else None,
                    "new_target": before[1] if before else None,
                    "detail": f"on consent version {' or '.join(p.reconsent.versions)} before the next visit",
                }
            )
    if left:
        rows += [
            {"subject_id": subject, "site": None, "item": "not affected", "detail": why}
            for subject, why in sorted(result.skipped.items())
        ]
    return rows


def impact_dict(result: Impact) -> dict:
    """The whole impact as JSON values (dates as ISO text)."""
    return {
        "study": result.study,
        "version": result.version,
        "effective": result.effective.isoformat(),
        "as_of": result.as_of.isoformat(),
        "site": result.site,
        "participants": len(result.participants),
        "summary": impact_summary(result)["totals"],
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


def impact_summary(result: Impact) -> dict:
    """Counts for the whole study and by site: the one-page summary an IRB submission carries."""

    def count(people: list[ParticipantImpact]) -> dict:
        kinds = [c.kind for p in people for c in p.changes]
        return {
            "participants": len(people),
            "affected": sum(p.affected for p in people),
            "visits_moving": kinds.count("moves"),
            "visits_appearing": kinds.count("appears"),
            "visits_disappearing": kinds.count("disappears"),
            "deviations_resolved": sum(len(p.resolved) for p in people),
            "deviations_created": sum(len(p.created) for p in people),
            "reconsent_required": sum(p.reconsent.status == REQUIRED for p in people),
            "reconsent_unknown": sum(p.reconsent.status == NO_VERSION for p in people),
        }

    by_site: dict[str, list[ParticipantImpact]] = {}
    for p in result.participants:
        by_site.setdefault(p.site, []).append(p)
    return {
        "totals": count(list(result.participants)),
        "sites": [{"site": site, **count(people)} for site, people in sorted(by_site.items())],
    }


IMPACT_MEDIA = {"csv": "text/csv", "pdf": "application/pdf"}


async def impact_file(result: Impact, fmt: str, actor: str) -> tuple[bytes, str, str]:
    """The impact as a download (CSV or the one-page PDF), audited as an export: (content, media type, file
    name). The JSON and the page are audited by `record_impact_read`."""
    await record_impact_read(result, fmt, actor)
    if fmt == "csv":
        from trialcoord.kernel.render.tabular import csv_text

        content = csv_text(IMPACT_COLUMNS, impact_rows(result, left=True)).encode("utf-8-sig")
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
        "totals": summary["totals"],
        "sites": summary["sites"][:SUMMARY_LINES],
        "more_sites": max(0, len(summary["sites"]) - SUMMARY_LINES),
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


def _window(dates: tuple) -> str | None:
    _, earliest, latest = dates
    if dates == (None, None, None):
        return None
    return f"{earliest or 'unbounded'} to {latest or 'unbounded'}"


def _dates(dates: tuple) -> dict:
    return dict(zip(("target", "earliest", "latest"), (d.isoformat() if d else None for d in dates)))


def _finding(f) -> dict:
    return {
        "visit": f.visit,
        "occurrence": f.occurrence,
        "rule": str(f.rule),
        "occurred_on": f.occurred_on.isoformat() if f.occurred_on else None,
        "days_outside": f.days_outside,
        "description": detection.describe(f),
    }
