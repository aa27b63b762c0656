"""Protocol amendments: moving participants to another protocol version from a date (one, a site's or a whole
study's), with deviation detection re-run for those moved. The impact of a version before it takes effect is
`impact.py`'s, its table, CSV, JSON and one-page PDF `impact_outputs.py`'s.

A change never applies backwards: `schedule.evaluate_judged` judges each visit by the version in force on the
day it was done or its window closed. A change is recorded once it takes effect (never for a day still to come),
and a move back to an earlier version than the one followed needs `confirm_downgrade`; the confirmation is an
audit entry of its own (`confirm_downgrade`) beside the change's, in the same transaction (`rules/changes.py`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict
from datetime import date
from typing import NamedTuple

from trialcoord.amendments.rules.changes import check_confirmed, check_not_to_come, downgrades
from trialcoord.deviations import detection
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import transaction
from trialcoord.scheduling import participants, protocols, version_changes
from trialcoord.scheduling.participants import ParticipantSummary


async def change_version(
    study: str,
    subject_id: str,
    version: str,
    effective: date,
    reason: str,
    today: date | None = None,
    actor: str = SYSTEM,
    confirm_downgrade: bool = False,
) -> ParticipantSummary:
    """Move one participant (see `version_changes.change_protocol_version`), then re-run detection for it."""
    today = today or date.today()
    check_not_to_come(effective, today)
    async with transaction(f"study {study}, participant {subject_id}"):
        since = await detection.audit_position()
        person = await participants.get_participant(study, subject_id)
        following = {subject_id: (person.protocol_version, person.site)}
        row = await version_changes.change_protocol_version(
            study, subject_id, version, effective, reason, today=today, actor=actor
        )
        await _confirmed(study, version, effective, reason, following, [subject_id], confirm_downgrade, actor)
        await detection.redetect(study, [subject_id], since, today=today, actor=actor)
    return row


class Applied(NamedTuple):
    """`version_changes.Moved` (those moved, those left and why, what detection did) and who of those moved went
    back to an earlier version (confirmed)."""

    version: str
    effective: date
    moved: list[str]
    skipped: dict[str, str]
    deviations: dict[str, int] | None
    downgraded: list[str]


async def apply_version(
    study: str,
    version: str,
    effective: date,
    reason: str,
    site: str | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
    confirm_downgrade: bool = False,
) -> Applied:
    """Move every active participant of a site or study (`version_changes.apply_protocol_version`), then re-run
    detection for those moved: records the change makes wrong are resolved naming it, new ones created."""
    today = today or date.today()
    check_not_to_come(effective, today)
    async with transaction(f"study {study}, protocol version {version}"):
        since = await detection.audit_position()
        following = {
            p.subject_id: (p.protocol_version, p.site) for p in await participants.list_participants(study, site)
        }
        moved = await version_changes.apply_protocol_version(
            study, version, effective, reason, site=site, today=today, actor=actor
        )
        back = await _confirmed(study, version, effective, reason, following, moved.moved, confirm_downgrade, actor)
        if moved.moved:
            counts = await detection.redetect(study, moved.moved, since, today=today, actor=actor)
            moved = moved._replace(deviations=asdict(counts))
    return Applied(*moved, downgraded=back)


async def _confirmed(
    study: str,
    version: str,
    effective: date,
    reason: str,
    following: Mapping[str, tuple[str, str]],
    moved: Collection[str],
    confirmed: bool,
    actor: str,
) -> list[str]:
    """Of those moved (`following`: subject ID -> the version followed before and the site), the ones taken back
    to an earlier version: refused (the caller's transaction rolls the moves back) unless confirmed, and then each
    confirmation audited. Returns their subject IDs."""
    order = [v.version for v in await protocols.list_protocol_versions(study)]
    back = downgrades(order, {s: following[s][0] for s in moved if s in following}, version)
    check_confirmed(back, version, confirmed)
    await audit_log.record(
        actor,
        *(
            Change(
                "confirm_downgrade",
                "participant",
                participants.record_id(study, following[subject][1], subject),
                {"protocol_version": earlier},
                {"protocol_version": version, "effective": effective, "downgrade_confirmed": True},
                reason.strip(),
            )
            for subject, earlier in sorted(back.items())
        ),
    )
    return sorted(back)
