"""Use cases of what coordinators record about a participant: events, the days visits took place, appointments
and missed visits. A day already recorded changes only with a reason, and a write that names an older
`row_version` of a visit is a conflict.

See `schedules` for how a write stores the schedule it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import transaction
from trialcoord.kernel.problems import Conflict, NotFound, invalid
from trialcoord.scheduling.participants import Subject
from trialcoord.scheduling.rules.facts import check_happened
from trialcoord.scheduling.rules.schedule import EARLY, LATE, NOT_APPLICABLE
from trialcoord.scheduling.schedules import ScheduledVisit, scheduled, widened
from trialcoord.scheduling.sites import text
from trialcoord.scheduling.store import consents as consents_store
from trialcoord.scheduling.store import inputs as inputs_store
from trialcoord.scheduling.store import visits as visits_store
from trialcoord.scheduling.store import window_exceptions as exceptions_store
from trialcoord.scheduling.store.visits import StoredVisit

_Date = date  # the type, where a field is named `date`


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    study: str
    subject_id: str
    event: str
    date: date
    previous: _Date | None  # the date recorded before, if any
    changed: bool


async def record_event(
    study: str,
    subject_id: str,
    event: str,
    day: date,
    reason: str | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
) -> RecordedEvent:
    """Record an event's date; changing a date already recorded needs a reason."""
    async with transaction(f"study {study}, participant {subject_id}"):
        subject = await Subject.load(study, subject_id)
        if event not in subject.protocol.events:
            valid = ", ".join(subject.protocol.events)
            raise invalid(
                f"{subject}: '{event}' is not an event of protocol version {subject.version}; valid events: {valid}",
                field="event",
            )
        _check_happened(f"{subject}: {event}", day, today)
        if event == subject.protocol.consent_event:
            await _check_consent_event(subject, event, day)
        previous = subject.inputs.events.get(event)
        if previous != day:
            if previous is not None and not text(reason):
                raise invalid(
                    f"{subject}: {event} is already recorded on {previous}; give a reason to change it to {day}",
                    field="reason",
                )
            await inputs_store.upsert_events([(subject.id, event, day, text(reason))])
            subject.inputs.events[event] = day
            await subject.refresh(today)
            await audit_log.record(
                actor,
                Change(
                    "create" if previous is None else "update",
                    "participant_event",
                    subject.record_id(event),
                    None if previous is None else {"date": previous},
                    {"date": day},
                    text(reason),
                ),
            )
    return RecordedEvent(study, subject_id, event, day, previous, previous != day)


async def record_visit(
    study: str,
    subject_id: str,
    visit_code: str,
    actual: date,
    expected_row_version: int | None = None,
    reason: str | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
) -> ScheduledVisit:
    """Record the date a visit took place; a code the protocol lacks is an unscheduled visit. A day outside the
    visit's window, or a change of the day recorded, needs a reason, stored with the visit (`actual_reason`);
    saving the same day again with another reason changes only the reason."""
    visit_code = visit_code.strip()
    if not visit_code:
        raise invalid(f"study {study}, participant {subject_id}: a visit code is required", field="visit_code")
    reason = text(reason)
    async with transaction(f"study {study}, participant {subject_id}, visit {visit_code}"):
        subject = await Subject.load(study, subject_id)
        row = subject.visits.get(visit_code)
        _check_row_version(subject, visit_code, row, expected_row_version)
        _check_happened(f"{subject}: visit {visit_code}", actual, today)
        previous = subject.inputs.actuals.get(visit_code)
        stored_reason = row.actual_reason if row is not None and previous is not None else None
        if previous not in (None, actual) and not reason:
            raise invalid(
                f"{subject}: visit {visit_code} is already recorded on {previous}; give a reason"
                f" to change it to {actual}",
                field="reason",
            )
        if previous != actual:
            subject.inputs.actuals[visit_code] = actual
            await subject.refresh(today)
        done = await _stored_visit(subject, visit_code)
        # An investigator's approved extension widens the window the day is judged against, as booking does.
        extension = await exceptions_store.extension(subject.id, visit_code) if _outside_window(done) else None
        outside = _outside_window(done) and (extension is None or _outside(done, actual, extension))
        if outside and not (reason or stored_reason):
            # Raised inside the transaction: the refreshed schedule is rolled back with it.
            raise invalid(
                f"{subject}: visit {visit_code} on {actual} is outside its {_window(done, extension)};"
                " give the reason it took place on that day",
                field="reason",
            )
        if previous == actual and reason in (None, stored_reason):
            return scheduled(done)  # saved again as it stands: nothing to record
        if reason:
            await visits_store.update_visit(done.id, bump=previous == actual, actual_reason=reason)
        before, after = (
            ({"actual_reason": stored_reason}, {"actual_reason": reason})
            if previous == actual
            else ({"actual": previous}, {"actual": actual})
        )
        await audit_log.record(actor, Change("update", "visit", subject.record_id(visit_code), before, after, reason))
        return scheduled(await _stored_visit(subject, visit_code))


async def book_appointment(
    study: str,
    subject_id: str,
    visit_code: str,
    day: date,
    reason: str | None = None,
    expected_row_version: int | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
) -> ScheduledVisit:
    """Book a visit; a day outside its window (widened by an investigator's approved extension), or moving a
    booking, needs a reason, stored with the booking."""
    async with transaction(f"study {study}, participant {subject_id}, visit {visit_code}"):
        subject = await Subject.load(study, subject_id)
        row = subject.scheduled_visit(visit_code)
        _check_row_version(subject, visit_code, row, expected_row_version)
        _check_open(subject, row)
        extension = await exceptions_store.extension(subject.id, visit_code)
        if _outside(row, day, extension) and not text(reason):
            raise invalid(
                f"{subject}: {day} is outside the window of visit {visit_code} ({_window(row, extension)});"
                " give a reason to book it on that day",
                field="reason",
            )
        if row.appointment not in (None, day) and not text(reason):
            raise invalid(
                f"{subject}: visit {visit_code} is booked on {row.appointment}; give a reason to move it to {day}",
                field="reason",
            )
        await visits_store.update_visit(row.id, appointment=day, appointment_reason=text(reason))
        await subject.refresh(today)
        await audit_log.record(
            actor,
            Change(
                "update",
                "visit",
                subject.record_id(visit_code),
                {"appointment": row.appointment},
                {"appointment": day},
                text(reason),
            ),
        )
        return scheduled(await _stored_visit(subject, visit_code))


async def mark_missed(
    study: str,
    subject_id: str,
    visit_code: str,
    reason: str,
    expected_row_version: int | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
) -> ScheduledVisit:
    """Record that a visit will not take place, and why."""
    async with transaction(f"study {study}, participant {subject_id}, visit {visit_code}"):
        subject = await Subject.load(study, subject_id)
        if not text(reason):
            raise invalid(f"{subject}: give the reason why visit {visit_code} was missed", field="reason")
        row = subject.scheduled_visit(visit_code)
        _check_row_version(subject, visit_code, row, expected_row_version)
        _check_open(subject, row)
        await visits_store.update_visit(row.id, missed_reason=text(reason))
        subject.inputs.marked_missed.add(visit_code)
        await subject.refresh(today)
        await audit_log.record(
            actor,
            Change("update", "visit", subject.record_id(visit_code), {"missed": False}, {"missed": True}, text(reason)),
        )
        return scheduled(await _stored_visit(subject, visit_code))


async def _stored_visit(subject: Subject, code: str) -> StoredVisit:
    """A visit of the schedule read again after a change (`scheduled_visit` found it before)."""
    row = await visits_store.find_visit(subject.id, code)
    if row is None:
        raise NotFound(f"{subject}: visit {code} is not in the schedule")
    return row


def _check_happened(what: str, day: date, today: date | None) -> None:
    check_happened(what, day, today or date.today(), "date")


async def _check_consent_event(subject: Subject, event: str, day: date) -> None:
    """The consent event is the date of first consent: never later than the first consent on record."""
    first = await consents_store.first_signed(subject.id)
    if first is not None and day > date.fromisoformat(str(first["signed_on"])):
        raise invalid(
            f"{subject}: the first consent on record (version {first['label']}) was signed on"
            f" {first['signed_on']}; the {event} event is the date of first consent and cannot be later"
            f" ({day})",
            field="date",
        )


def _check_row_version(subject: Subject, code: str, row: StoredVisit | None, expected: int | None) -> None:
    if expected is None or (row is None and expected == 0):  # unchecked (command line), or none stored yet
        return
    if row is None or row.row_version != expected:
        current = "no stored version" if row is None else f"version {row.row_version}"
        raise Conflict(
            f"{subject}: visit {code} was changed by someone else (you had version {expected},"
            f" it now has {current}); reload it and try again"
        )


def _check_open(subject: Subject, row: StoredVisit) -> None:
    if row.actual is not None:
        raise invalid(f"{subject}: visit {row.visit} already took place on {row.actual}", field="visit_code")
    if row.status == NOT_APPLICABLE:
        raise invalid(f"{subject}: visit {row.visit} does not apply to this participant", field="visit_code")


def _outside(row: StoredVisit, day: date, extension: tuple[int, int] | None) -> bool:
    earliest, latest = widened(row.earliest, row.latest, extension)
    return (earliest is not None and day < earliest) or (latest is not None and day > latest)


def _outside_window(row: StoredVisit) -> bool:
    """Done outside its window, as the engine judged the day (business days, the version in force)."""
    return row.status in (EARLY, LATE)


def _window(row: StoredVisit, extension: tuple[int, int] | None) -> str:
    if row.target is None:
        return "no window yet"
    earliest, latest = widened(row.earliest, row.latest, extension)
    extended = " as extended by the investigator" if extension else ""
    return f"window {earliest or 'unbounded'} to {latest or 'unbounded'}{extended}"
