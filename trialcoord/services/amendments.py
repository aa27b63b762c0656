"""Protocol amendments: moving participants to another protocol version from a date (one, a site's or a whole
study's), with deviation detection re-run for those moved, and the impact of a version before it takes effect.

A change never applies backwards: `schedule.evaluate_judged` judges each visit by the version in force on the
day it was done or its window closed. The impact is computed without storing anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

from trialcoord.adapters.persistence import repositories as repo
from trialcoord.adapters.persistence.engine import read, transaction
from trialcoord.domain.amendments import (
    ParticipantImpact, next_visit, participant_impact, protocol_differences, reconsent_for,
)
from trialcoord.domain.protocol import Protocol
from trialcoord.domain.schedule import evaluate, judge
from trialcoord.services import consent, deviations, scheduling
from trialcoord.services.audit_log import SYSTEM
from trialcoord.services.errors import invalid


async def change_version(study: str, subject_id: str, version: str, effective: date, reason: str,
                         today: date | None = None, actor: str = SYSTEM) -> dict:
    """Move one participant (see `scheduling.change_protocol_version`), then re-run detection for it."""
    today = today or date.today()
    async with transaction(f"study {study}, participant {subject_id}"):
        since = await deviations.audit_position()
        row = await scheduling.change_protocol_version(study, subject_id, version, effective, reason, today=today,
                                                       actor=actor)
        await deviations.redetect(study, [subject_id], since, today=today, actor=actor)
    return row


async def apply_version(study: str, version: str, effective: date, reason: str, site: str | None = None,
                        today: date | None = None, actor: str = SYSTEM) -> scheduling.Moved:
    """Move every active participant of a site or study (`scheduling.apply_protocol_version`), then re-run
    detection for those moved: records the change makes wrong are resolved naming it, new ones created."""
    today = today or date.today()
    async with transaction(f"study {study}, protocol version {version}"):
        since = await deviations.audit_position()
        moved = await scheduling.apply_protocol_version(study, version, effective, reason, site=site, today=today,
                                                        actor=actor)
        if moved.moved:
            await deviations.redetect(study, moved.moved, since, today=today, actor=actor)
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


async def impact(study: str, protocol: Protocol, source_text: str, effective: date | None = None,
                 site: str | None = None, today: date | None = None) -> Impact:
    """For every active participant (of `site`), what `protocol` would change if it applied from `effective`
    (default: its own effective date, or today when that has passed): visits that move, appear or disappear,
    deviations resolved or created, and who must re-consent before their next visit. Stores nothing."""
    today = today or date.today()
    effective = effective or max(protocol.effective, today)
    if protocol.study != study:
        raise invalid(f"the file describes study {protocol.study}, not {study}", field="study")
    if effective < protocol.effective:
        raise invalid(f"protocol version {protocol.version} is effective from {protocol.effective}; it cannot apply"
                      f" from {effective}", field="effective")
    sha256 = hashlib.sha256(source_text.encode("utf-8")).hexdigest()
    async with read():
        study_row = await scheduling.require_study(study)
        if site is not None and await repo.find_site(study_row["id"], site) is None:
            raise invalid(f"study {study} has no site {site}", field="site")
        versions = await scheduling.Versions.load(study_row["id"])
        people = sorted((await repo.load_inputs(study_row["id"], site=site)).values(), key=lambda p: p.subject_id)
        consent_versions, signed = await consent.versions_and_signatures(study)
        exceptions = await deviations.window_exceptions(study)
        found, skipped, followed = [], {}, {}
        for person in people:
            why = _not_applying(person, versions, protocol, effective)
            if why:
                skipped[person.subject_id] = why
                continue
            history = [(date.min, await versions.protocol(person.versions[0], person.site)),
                       *[(day, await versions.protocol(v, person.site)) for day, v in person.changes]]
            followed.setdefault(versions.label(person.version_id), history[-1][1])
            new = scheduling.with_site_calendar(protocol, sha256, versions.calendars[person.site]) \
                if person.site in versions.calendars else protocol
            found.append(_participant(person, history, (effective, new), today, consent_versions,
                                      signed.get(person.subject_id, set()), exceptions.get(person.subject_id, ())))
    differences = {label: protocol_differences(old, protocol) for label, old in sorted(followed.items())}
    return Impact(study, protocol.version, effective, today, site, tuple(found), skipped, differences)


def _not_applying(person, versions: scheduling.Versions, protocol: Protocol, effective: date) -> str | None:
    if person.status != scheduling.ACTIVE:
        return "has ended the schedule"
    if versions.label(person.version_id) == protocol.version:
        return f"already follows protocol version {protocol.version}"
    if person.changes and effective < person.changes[-1][0]:
        return f"moved to another version from {person.changes[-1][0]}, after {effective}"
    return None


def _participant(person, history, change, today, consent_versions, signed, exceptions) -> ParticipantImpact:
    """One participant's impact: each version evaluated once, judged twice (as things are, and with the change)."""
    evaluations = [evaluate(version, person.events, person.actuals, today, arm=person.arm,
                            horizon_days=scheduling.HORIZON_DAYS, marked_missed=person.marked_missed)
                   for _, version in history]
    current = evaluations[0] if len(history) == 1 else [row for row, _ in judge(history, evaluations)]
    proposed_evaluation = evaluate(change[1], person.events, person.actuals, today, arm=person.arm,
                                   horizon_days=scheduling.HORIZON_DAYS, marked_missed=person.marked_missed)
    proposed = [row for row, _ in judge([*history, change], [*evaluations, proposed_evaluation])]
    versions = [version for _, version in history]
    offered = [v for v in consent_versions if v.site == person.site and v.protocol_version == change[1].version]
    reconsent = reconsent_for(signed, offered, next_visit(proposed, max(today, change[0])))
    return participant_impact(
        person.subject_id, person.site, current, proposed, today, reconsent,
        screening={code for version in (*versions, change[1]) for code in deviations.screening_codes(version)},
        stopped_now=_stopped(person.events, versions), stopped_then=_stopped(person.events, [*versions, change[1]]),
        exceptions=exceptions)


def _stopped(events: dict[str, date], versions: list[Protocol]) -> date | None:
    """The date collection stopped: the first recorded event that stops it in any of these versions."""
    stops = {name for version in versions for name, event in version.events.items() if event.stops_collection}
    return min((day for name, day in events.items() if name in stops), default=None)
