"""Protocol amendments: moving participants to another protocol version from a date (one, a site's or a whole
study's), with deviation detection re-run for those moved, and the impact of a version before it takes effect.

A change never applies backwards: `schedule.evaluate_judged` judges each visit by the version in force on the
day it was done or its window closed. The impact is computed without storing anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from trialcoord.amendments.rules.amendments import (
    NO_VERSION,
    REQUIRED,
    ParticipantImpact,
    next_visit,
    participant_impact,
    protocol_differences,
    reconsent_for,
)
from trialcoord.deviations import detection, manual
from trialcoord.documents import consent
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import invalid
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.scheduling import lookups, protocols, schedules, version_changes
from trialcoord.scheduling.rules.protocol import Protocol
from trialcoord.scheduling.rules.schedule import evaluate, judge


async def change_version(
    study: str,
    subject_id: str,
    version: str,
    effective: date,
    reason: str,
    today: date | None = None,
    actor: str = SYSTEM,
) -> dict:
    """Move one participant (see `version_changes.change_protocol_version`), then re-run detection for it."""
    today = today or date.today()
    async with transaction(f"study {study}, participant {subject_id}"):
        since = await detection.audit_position()
        row = await version_changes.change_protocol_version(
            study, subject_id, version, effective, reason, today=today, actor=actor
        )
        await detection.redetect(study, [subject_id], since, today=today, actor=actor)
    return row


async def apply_version(
    study: str,
    version: str,
    effective: date,
    reason: str,
    site: str | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
) -> version_changes.Moved:
    """Move every active participant of a site or study (`version_changes.apply_protocol_version`), then re-run
    detection for those moved: records the change makes wrong are resolved naming it, new ones created."""
    today = today or date.today()
    async with transaction(f"study {study}, protocol version {version}"):
        since = await detection.audit_position()
        moved = await version_changes.apply_protocol_version(
            study, version, effective, reason, site=site, today=today, actor=actor
        )
        if moved.moved:
            counts = await detection.redetect(study, moved.moved, since, today=today, actor=actor)
            moved = moved._replace(deviations=counts)
    return moved


# Impact ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Impact:
    study: str
    version: str
    effective: date
    as_of: date
    site: str | None
    participants: tuple[ParticipantImpact, ...]  # every active participant looked at, affected or not
    skipped: dict[str, str]  # subject ID -> why the new version would not apply to them
    differences: dict[str, list[str]]  # for each version followed now, how the new one differs from it

    @property
    def affected(self) -> list[ParticipantImpact]:
        return [p for p in self.participants if p.affected]


async def impact(
    study: str,
    protocol: Protocol,
    source_text: str,
    effective: date | None = None,
    site: str | None = None,
    today: date | None = None,
    sites: Collection[str] | None = None,
) -> Impact:
    """For every active participant (of `site`), what `protocol` would change if it applied from `effective`
    (default: its own effective date, or today when that has passed): visits that move, appear or disappear,
    deviations resolved or created, and who must re-consent before their next visit. Stores nothing. `sites`:
    the sites the reader may see (None: all)."""
    today = today or date.today()
    effective = effective or max(protocol.effective, today)
    sha256 = hashlib.sha256(source_text.encode("utf-8")).hexdigest()
    async with read():
        study_row = await protocols.require_study(study)
        if protocol.study != study:
            raise invalid(f"the file describes study {protocol.study}, not {study}", field="study")
        if effective < protocol.effective:
            raise invalid(
                f"protocol version {protocol.version} is effective from {protocol.effective}; it cannot"
                f" apply from {effective}",
                field="effective",
            )
        if site is not None and await lookups.find_site(study_row["id"], site) is None:
            raise invalid(f"study {study} has no site {site}", field="site")
        versions = await schedules.Versions.load(study_row["id"])
        loaded = next((row for row in versions.rows.values() if row["version"] == protocol.version), None)
        if loaded is not None and loaded["sha256"] != sha256:  # an impact for a text that could never be loaded
            raise invalid(
                f"study {study} already has a protocol version {protocol.version} with other content"
                f" (from {loaded['source_name']}); give the amendment its own version label",
                field="version",
            )
        if loaded is None:
            await protocols.check_numbering(study_row["id"], protocol)  # as loading it would
        people = sorted(
            (
                p
                for p in (await lookups.load_inputs(study_row["id"], site=site)).values()
                if sites is None or p.site in sites
            ),
            key=lambda p: p.subject_id,
        )
        consent_versions, signed = await consent.versions_and_signatures(study)
        exceptions = await manual.window_exceptions(study)
        found, skipped, followed = [], {}, {}
        rules: dict[tuple[int, ...], tuple[frozenset[str], ...]] = {}
        for person in people:
            why = _not_applying(person, versions, protocol, effective)
            if why:
                skipped[person.subject_id] = why
                continue
            history = [
                (date.min, await versions.protocol(person.versions[0], person.site)),
                *[(day, await versions.protocol(v, person.site)) for day, v in person.changes],
            ]
            followed.setdefault(versions.label(person.version_id), history[-1][1])
            new = (
                schedules.with_site_calendar(protocol, sha256, versions.calendars[person.site])
                if person.site in versions.calendars
                else protocol
            )
            found.append(
                _participant(
                    person,
                    history,
                    (effective, new),
                    today,
                    consent_versions,
                    signed.get(person.subject_id, set()),
                    exceptions.get(person.subject_id, ()),
                    rules,
                )
            )
    differences = {label: protocol_differences(old, protocol) for label, old in sorted(followed.items())}
    return Impact(study, protocol.version, effective, today, site, tuple(found), skipped, differences)


def _not_applying(person, versions: schedules.Versions, protocol: Protocol, effective: date) -> str | None:
    if person.status != schedules.ACTIVE:
        return version_changes.SCHEDULE_ENDED
    if versions.label(person.version_id) == protocol.version:
        return f"{version_changes.ALREADY_ON} {protocol.version}"
    if person.changes and effective < person.changes[-1][0]:
        return f"moved to another version from {person.changes[-1][0]}, after {effective}"
    return None


def _participant(person, history, change, today, consent_versions, signed, exceptions, rules) -> ParticipantImpact:
    """One participant's impact: each version evaluated once, judged twice (as things are, and with the change).
    `rules`: screening codes and collection-stopping events per list of versions, shared by the whole run."""
    evaluations = [
        evaluate(
            version,
            person.events,
            person.actuals,
            today,
            arm=person.arm,
            horizon_days=schedules.HORIZON_DAYS,
            marked_missed=person.marked_missed,
        )
        for _, version in history
    ]
    current = evaluations[0] if len(history) == 1 else [row for row, _ in judge(history, evaluations)]
    proposed_evaluation = evaluate(
        change[1],
        person.events,
        person.actuals,
        today,
        arm=person.arm,
        horizon_days=schedules.HORIZON_DAYS,
        marked_missed=person.marked_missed,
    )
    proposed = [row for row, _ in judge([*history, change], [*evaluations, proposed_evaluation])]
    versions = [version for _, version in history]
    offered = [v for v in consent_versions if v.site == person.site and v.protocol_version == change[1].version]
    reconsent = reconsent_for(signed, offered, next_visit(proposed, max(today, change[0])))
    key = tuple(id(version) for version in (*versions, change[1]))
    if key not in rules:
        rules[key] = (
            frozenset(code for version in (*versions, change[1]) for code in detection.screening_codes(version)),
            frozenset(_stopping(versions)),
            frozenset(_stopping([*versions, change[1]])),
        )
    screening, stops_now, stops_then = rules[key]
    return participant_impact(
        person.subject_id,
        person.site,
        current,
        proposed,
        today,
        reconsent,
        screening=screening,
        stopped_now=_stopped(person.events, stops_now),
        stopped_then=_stopped(person.events, stops_then),
        exceptions=exceptions,
    )


def _stopping(versions: list[Protocol]) -> set[str]:
    """The events that stop collection in any of these versions."""
    return {name for version in versions for name in version.stopping_events}


def _stopped(events: dict[str, date], stops: frozenset[str]) -> date | None:
    """The date collection stopped: the first recorded event that stops it."""
    return min((day for name, day in events.items() if name in stops), default=None)


# Impact outputs ----------------------------------------------------------------------------------

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
