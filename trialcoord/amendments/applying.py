"""Protocol amendments: moving participants to another protocol version from a date (one, a site's or a whole
study's), with deviation detection re-run for those moved. The impact of a version before it takes effect is
`impact.py`'s, its table, CSV, JSON and one-page PDF `impact_outputs.py`'s.

A change never applies backwards: `schedule.evaluate_judged` judges each visit by the version in force on the
day it was done or its window closed.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

from trialcoord.deviations import detection
from trialcoord.kernel.audit_log import SYSTEM
from trialcoord.kernel.database.engine import transaction
from trialcoord.scheduling import version_changes
from trialcoord.scheduling.participants import ParticipantSummary


async def change_version(
    study: str,
    subject_id: str,
    version: str,
    effective: date,
    reason: str,
    today: date | None = None,
    actor: str = SYSTEM,
) -> ParticipantSummary:
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
            moved = moved._replace(deviations=asdict(counts))
    return moved
