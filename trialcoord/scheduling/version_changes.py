"""Use cases of version changes: moving one participant, or every active participant of a study or site, to
another protocol version from a date on, one audited change each.

See `schedules` for how a write stores the schedules it changes.
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import transaction
from trialcoord.kernel.problems import invalid
from trialcoord.scheduling.participants import ParticipantSummary, record_id, subject_row
from trialcoord.scheduling.protocols import StoredVersion, pick_version
from trialcoord.scheduling.schedules import ACTIVE, refresh_participants
from trialcoord.scheduling.sites import study_with_site, text
from trialcoord.scheduling.store import inputs as inputs_store
from trialcoord.scheduling.store import participants as participants_store
from trialcoord.scheduling.store import studies as studies_store
from trialcoord.scheduling.store.inputs import ScheduleInputs


async def change_protocol_version(
    study: str,
    subject_id: str,
    version: str,
    effective: date,
    reason: str,
    today: date | None = None,
    actor: str = SYSTEM,
) -> ParticipantSummary:
    """Move a participant to another protocol version from `effective` on: visits done, or whose window
    closed, before that date stay judged by the version followed then (`evaluate_judged`)."""
    async with transaction(f"study {study}, participant {subject_id}"):
        await participants_store.lock_subject(study, subject_id)
        row = await subject_row(study, subject_id)
        moved = await _move(study, row.study_id, version, effective, reason, today, actor, participant=row.id)
        if moved.skipped:
            raise invalid(
                f"study {study}, participant {subject_id} {moved.skipped[subject_id]}",
                field="version" if moved.skipped[subject_id].startswith(ALREADY_ON) else "effective",
            )
        row = await subject_row(study, subject_id)
    return row.summary()


# How a skipped participant's reason begins when leaving it is no conflict (a re-run of the same change):
ALREADY_ON, SCHEDULE_ENDED = "already follows protocol version", "has ended the schedule"


class Moved(NamedTuple):
    """The participants a version change moved, and why the others were left (subject ID -> reason)."""

    version: str
    effective: date
    moved: list[str]
    skipped: dict[str, str]
    deviations: dict[str, int] | None = None  # what detection, re-run for those moved, created and resolved


async def apply_protocol_version(
    study: str,
    version: str,
    effective: date,
    reason: str,
    site: str | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
) -> Moved:
    """Move every active participant of the study (or of one site) to `version` from `effective` on, one audited
    change each, in one transaction; participants it cannot move are left and reported with the reason."""
    async with transaction(f"study {study}, protocol version {version}"):
        study_row = await study_with_site(study, site)
        await participants_store.lock_participants(study_row.id)
        return await _move(study, study_row.id, version, effective, reason, today, actor, site=site)


async def _move(
    study: str,
    study_id: int,
    version: str,
    effective: date,
    reason: str,
    today: date | None,
    actor: str,
    participant: int | None = None,
    site: str | None = None,
) -> Moved:
    because = text(reason)
    if because is None:
        raise invalid(f"study {study}: give the reason for the change to protocol version {version}", field="reason")
    versions = await studies_store.list_versions(study_id)
    target = pick_version(study, versions, version)
    if effective < target.effective:  # the same for everyone: bad input, not a participant left as it is
        raise invalid(
            f"study {study}: protocol version {version} is effective from {target.effective}; no"
            f" participant can follow it from {effective}",
            field="effective",
        )
    labels = {row["id"]: row["version"] for row in versions}
    people = sorted(
        (await inputs_store.load_inputs(study_id, participant, site=site)).values(), key=lambda p: p.subject_id
    )
    moved: list[ScheduleInputs] = []
    skipped: dict[str, str] = {}
    for person in people:
        why = _cannot_move(person, target, effective, labels, bulk=participant is None)
        if why:
            skipped[person.subject_id] = why
        else:
            moved.append(person)
    await participants_store.insert_protocol_changes(
        [(p.id, p.version_id, target.id, effective, because) for p in moved]
    )
    audit = [
        Change(
            "update",
            "participant",
            record_id(study, p.site, p.subject_id),
            {"protocol_version": labels[p.version_id]},
            {"protocol_version": version, "effective": effective},
            because,
        )
        for p in moved
    ]
    for person in moved:
        person.add_change(person.version_id, target.id, effective)
        person.version_id = target.id
    await participants_store.set_protocol_versions([p.id for p in moved], target.id)
    if moved:
        await refresh_participants(study_id, inputs=moved, today=today)
    await audit_log.record(actor, *audit)
    return Moved(version, effective, [p.subject_id for p in moved], skipped)


def _cannot_move(
    person: ScheduleInputs, target: StoredVersion, effective: date, labels: dict[int, str], bulk: bool
) -> str | None:
    """Why this participant cannot move to `target` from `effective` (None: it can): changes follow each other in
    time, and a change for many leaves ended schedules. (A version governs from its own effective date on:
    `_move` refuses an earlier date for everyone.)"""
    if target.id == person.version_id:
        return f"{ALREADY_ON} {target.version}"
    if person.changes and effective < person.changes[-1][0]:
        return (
            f"moved to protocol version {labels[person.version_id]} from {person.changes[-1][0]}; a later change"
            f" cannot take effect before that ({effective})"
        )
    if bulk and person.status != ACTIVE:
        return f"{SCHEDULE_ENDED} (an ending event is recorded); move it on its own if it must"
    return None
