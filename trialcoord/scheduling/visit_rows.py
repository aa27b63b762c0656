"""A scheduled visit as the API, the pages and other features publish it."""

from __future__ import annotations

from datetime import date

import msgspec

from trialcoord.scheduling.schedules import ScheduledVisit


class VisitRow(msgspec.Struct):
    subject_id: str
    site: str
    visit: str
    occurrence: int
    name: str
    target: date | None
    earliest: date | None
    latest: date | None
    actual: date | None
    status: str
    days_outside: int
    study_day: int | None
    optional: bool
    appointment: date | None
    row_version: int | None
    protocol_version: str | None
    appointment_reason: str | None
    actual_reason: str | None
    missed_reason: str | None
    extended: bool = False  # an investigator approved an extension of the window: shown widened
    extended_earliest: date | None = None
    extended_latest: date | None = None


def visit_row(scheduled: ScheduledVisit) -> VisitRow:
    v = scheduled.visit
    window = scheduled.extended_window
    return VisitRow(
        subject_id=scheduled.subject_id,
        site=scheduled.site,
        visit=v.visit,
        occurrence=v.occurrence,
        name=v.name,
        target=v.target,
        earliest=v.earliest,
        latest=v.latest,
        actual=v.actual,
        status=v.status,
        days_outside=v.days_outside,
        study_day=v.study_day,
        optional=v.optional,
        appointment=scheduled.appointment,
        row_version=scheduled.row_version,
        protocol_version=scheduled.protocol_version,
        appointment_reason=scheduled.appointment_reason,
        actual_reason=scheduled.actual_reason,
        missed_reason=scheduled.missed_reason,
        extended=window is not None,
        extended_earliest=window[0] if window else None,
        extended_latest=window[1] if window else None,
    )
