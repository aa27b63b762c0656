"""The impact of a protocol version before it takes effect: for every active participant, the visits that move,
appear or disappear, the deviations resolved or created, and who must re-consent before their next visit.

A change never applies backwards: `schedule.evaluate_judged` judges each visit by the version in force on the
day it was done or its window closed. The impact is computed without storing anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from trialcoord.amendments.rules.amendments import (
    ParticipantImpact,
    next_visit,
    participant_impact,
    protocol_differences,
    reconsent_for,
)
from trialcoord.deviations import detection, manual
from trialcoord.documents import consent_checks
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.problems import invalid
from trialcoord.scheduling import lookups, protocols, schedules, version_changes
from trialcoord.scheduling.rules.protocol import Protocol
from trialcoord.scheduling.rules.schedule import evaluate, judge


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
        if site is not None and await lookups.find_site(study_row.id, site) is None:
            raise invalid(f"study {study} has no site {site}", field="site")
        versions = await schedules.Versions.load(study_row.id)
        loaded = next((row for row in versions.rows.values() if row["version"] == protocol.version), None)
        if loaded is not None and loaded["sha256"] != sha256:  # an impact for a text that could never be loaded
            raise invalid(
                f"study {study} already has a protocol version {protocol.version} with other content"
                f" (from {loaded['source_name']}); give the amendment its own version label",
                field="version",
            )
        if loaded is None:
            await protocols.check_numbering(study_row.id, protocol)  # as loading it would
        people = sorted(
            (
                p
                for p in (await lookups.load_inputs(study_row.id, site=site)).values()
                if sites is None or p.site in sites
            ),
            key=lambda p: p.subject_id,
        )
        consents_signed = await consent_checks.versions_and_signatures(study)
        consent_versions, signed = consents_signed.versions, consents_signed.labels
        exceptions = await manual.window_exceptions(study)
        found: list[ParticipantImpact] = []
        skipped: dict[str, str] = {}
        followed: dict[str, Protocol] = {}  # version label -> the protocol, for its differences
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
