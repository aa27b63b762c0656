"""Use cases of the visit schedule: protocols, sites, participants, events, visits and worklists.

Studies and participants are named by their codes. Each write runs in one transaction, then
re-evaluates the participant with the pure engine (`evaluate_judged`, as of `today`, 60 days ahead,
across the protocol versions the participant followed and with the calendar of its site) and stores the
result in the same transaction, each visit under the version that judged it. Each read runs on one
connection (`_reads`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import replace
from datetime import date, timedelta
from functools import wraps
from typing import NamedTuple, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import bound_engine, read, transaction
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound, Problem, invalid
from trialcoord.scheduling import store as repo
from trialcoord.scheduling.calendars import CalendarError, Closure, check_site_calendar, closed_days, site_calendar
from trialcoord.scheduling.rules.protocol import Protocol, renumbered
from trialcoord.scheduling.rules.schedule import (
    DUE,
    MISSED,
    NOT_APPLICABLE,
    UPCOMING,
    VisitOccurrence,
    classify,
    evaluate,
    evaluate_judged,
)
from trialcoord.scheduling.store import Saved, ScheduleInputs, StoredVisit

HORIZON_DAYS = 60  # stored schedules list open-ended repeats this far past today
ACTIVE, ENDED = "active", "ended"
WORKLISTS = ("today", "week", "overdue", "missed_or_out_of_window")

_protocols: dict[str, Protocol] = {}  # parsed protocol versions by sha256 of their source
_P, _T = ParamSpec("_P"), TypeVar("_T")


def _reads(use_case: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """A read use case: all its queries on one connection (see `engine.read`)."""

    @wraps(use_case)
    async def on_one_connection(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        async with read():
            return await use_case(*args, **kwargs)

    return on_one_connection


class ScheduledVisit(NamedTuple):  # not a frozen dataclass: a worklist builds tens of thousands (5x faster)
    """One visit occurrence of a participant with what coordinators recorded about it."""

    subject_id: str
    site: str
    visit: VisitOccurrence
    protocol_version: str | None = None
    appointment: date | None = None
    appointment_reason: str | None = None
    actual_reason: str | None = None
    missed_reason: str | None = None
    row_version: int | None = None  # None: not stored (yet), such as a repeat beyond the horizon

    def as_dict(self) -> dict:
        """Flat, for JSON and CSV: the occurrence's fields next to the recorded ones."""
        recorded = {name: getattr(self, name) for name in self._fields if name != "visit"}
        return {**repo.occurrence_fields(self.visit), **recorded}


# Studies and protocol versions -----------------------------------------------------------------


async def load_protocol_version(protocol: Protocol, source_text: str, source_name: str, actor: str = SYSTEM) -> dict:
    """Store a protocol version (creating its study); loading the same text again changes nothing."""
    sha256 = hashlib.sha256(source_text.encode("utf-8")).hexdigest()
    about = f"study {protocol.study}, protocol version {protocol.version}"
    async with transaction(about):
        changes = []
        study = await repo.find_study(protocol.study)
        if study is None:
            study = await repo.insert_study(protocol.study, protocol.title)
            changes.append(Change("create", "study", protocol.study, None, {"title": protocol.title}))
        row = await repo.find_version(study["id"], protocol.version)
        created = row is None
        if created:
            await check_numbering(study["id"], protocol)
            row = await repo.insert_version(
                study["id"], protocol.version, protocol.effective, source_name, source_text, sha256
            )
            changes.append(
                Change(
                    "create",
                    "protocol_version",
                    f"{protocol.study}/protocol/{protocol.version}",
                    None,
                    {"effective": protocol.effective, "source_name": source_name, "sha256": sha256},
                )
            )
        elif row["sha256"] != sha256:
            raise Conflict(
                f"{about} is already loaded from {row['source_name']} with different content; "
                "an amendment needs a new version label"
            )
        await audit_log.record(actor, *changes)
    _protocols[sha256] = protocol
    return {**_version_dict(protocol.study, row), "created": created}


@_reads
async def list_studies() -> list[dict]:
    return [_study_dict(row) for row in await repo.list_studies()]


@_reads
async def get_study(code: str) -> dict:
    return _study_dict(await require_study(code))


@_reads
async def list_protocol_versions(study: str) -> list[dict]:
    rows = await repo.list_versions((await require_study(study))["id"])
    return [_version_dict(study, row) for row in rows]


@_reads
async def get_protocol(study: str, version: str | None = None) -> Protocol:
    """The given version, or the latest (by effective date) when none is given."""
    rows = await repo.list_versions((await require_study(study))["id"])
    if version is None:
        if not rows:
            raise NotFound(f"study {study} has no protocol version loaded")
        row = rows[-1]
    else:
        row = _pick_version(study, rows, version)
    return await protocol_of(row["id"], row["sha256"])


@_reads
async def version_source(study: str, version: str) -> tuple[str, str]:
    """(source text, source name) of a loaded protocol version."""
    row = _pick_version(study, await repo.list_versions((await require_study(study))["id"]), version)
    source = await repo.version_source(row["id"])
    return source["source_text"], source["source_name"]


# Sites and participants ------------------------------------------------------------------------


async def create_site(
    study: str, code: str, name: str, time_zone: str = "UTC", calendar: str | None = None, actor: str = SYSTEM
) -> dict:
    code, name = code.strip(), name.strip()
    if not code:
        raise invalid(f"study {study}: a site needs a code", field="code")
    check_code(code, f"study {study}: site code", "code")
    _check_time_zone(time_zone)
    calendar = _check_calendar(calendar) if calendar else None
    async with transaction(f"study {study}, site {code}"):
        study_row = await require_study(study)
        if await repo.find_site(study_row["id"], code):
            raise Conflict(f"study {study} already has a site {code}")
        row = await repo.insert_site(study_row["id"], code, name or code, time_zone, calendar)
        await audit_log.record(
            actor,
            Change(
                "create",
                "site",
                f"{study}/{code}",
                None,
                {"name": row["name"], "time_zone": time_zone, "calendar": calendar},
            ),
        )
    return _site_dict(study, row)


async def set_site_calendar(
    study: str, site: str, calendar: str | None, today: date | None = None, actor: str = SYSTEM
) -> dict:
    """Give a site its own calendar for business days (None: the protocol's); its participants are re-evaluated."""
    calendar = _check_calendar(calendar) if calendar else None
    async with transaction(f"study {study}, site {site}"):
        study_row = await _study_with_site(study, site)
        row = await repo.find_site(study_row["id"], site)
        if row["calendar"] != calendar:
            await repo.update_site(row["id"], calendar=calendar)
            await _refresh_site(study_row["id"], site, today)
            await audit_log.record(
                actor,
                Change("update", "site", f"{study}/{site}", {"calendar": row["calendar"]}, {"calendar": calendar}),
            )
        row = await repo.find_site(study_row["id"], site)
    return _site_dict(study, row)


CLOSURE_FUTURE_DAYS = 3 * 366  # a closure further ahead is most likely a typo in the year


async def add_site_closure(
    study: str,
    site: str,
    first_day: date,
    last_day: date | None,
    reason: str,
    today: date | None = None,
    actor: str = SYSTEM,
) -> dict:
    """Days the site is closed (both inclusive): business days at that site skip them from now on."""
    last_day = last_day or first_day
    if not _text(reason):
        raise invalid(f"study {study}, site {site}: say why the site is closed", field="reason")
    if last_day < first_day:
        raise invalid(f"a closure ends on or after its first day ({first_day}), not on {last_day}", field="last_day")
    if (last_day - first_day).days > 366:
        raise invalid("a closure is at most a year long; record longer ones as a change of calendar", field="last_day")
    today = today or date.today()
    async with transaction(f"study {study}, site {site}"):
        study_row = await _study_with_site(study, site)
        row = await repo.find_site(study_row["id"], site)
        # a closure before the study's protocol took effect, or years ahead, is most likely a typo in the year
        began = min((v["effective"] for v in await repo.list_versions(study_row["id"])), default=first_day)
        if not began - timedelta(days=366) <= first_day <= today + timedelta(days=CLOSURE_FUTURE_DAYS):
            raise invalid(
                f"a closure starts at most a year before the study's first protocol version ({began})"
                f" and three years after today ({today}), not on {first_day}: is the year right?",
                field="first_day",
            )
        for known in (await repo.site_calendars(study_row["id"])).get(site, (None, ()))[1]:
            if known.first_day <= last_day and first_day <= known.last_day:
                raise Conflict(
                    f"study {study}, site {site} is already closed from {known.first_day} to"
                    f" {known.last_day} ({known.reason}); withdraw that closure first to change it"
                )
        await repo.insert_closure(row["id"], first_day, last_day, _text(reason))
        await _refresh_site(study_row["id"], site, today)
        await audit_log.record(
            actor,
            Change(
                "create",
                "site",
                f"{study}/{site}/closure/{first_day}",
                None,
                {"first_day": first_day, "last_day": last_day},
                _text(reason),
            ),
        )
    return {"study": study, "site": site, "first_day": first_day, "last_day": last_day, "reason": _text(reason)}


async def withdraw_site_closure(
    study: str, site: str, first_day: date, reason: str, today: date | None = None, actor: str = SYSTEM
) -> dict:
    """Take back a closure recorded by mistake (the one starting on `first_day`): business days at the site no
    longer skip it. Audited with the reason; the site's participants are re-evaluated."""
    if not _text(reason):
        raise invalid(f"study {study}, site {site}: say why the closure is withdrawn", field="reason")
    async with transaction(f"study {study}, site {site}"):
        study_row = await _study_with_site(study, site)
        row = await repo.find_site(study_row["id"], site)
        closure = next(
            (
                c
                for c in (await repo.site_calendars(study_row["id"])).get(site, (None, ()))[1]
                if c.first_day == first_day
            ),
            None,
        )
        if closure is None:
            raise NotFound(f"study {study}, site {site} has no closure starting on {first_day}")
        await repo.delete_closure(row["id"], first_day)
        await _refresh_site(study_row["id"], site, today)
        await audit_log.record(
            actor,
            Change(
                "delete",
                "site",
                f"{study}/{site}/closure/{first_day}",
                {"first_day": closure.first_day, "last_day": closure.last_day, "reason": closure.reason},
                None,
                _text(reason),
            ),
        )
    return {
        "study": study,
        "site": site,
        "first_day": closure.first_day,
        "last_day": closure.last_day,
        "reason": closure.reason,
    }


@_reads
async def site_calendar_days(study: str, site: str, first: date, last: date) -> dict:
    """The calendar a site's business days follow, and its holidays and closures from `first` to `last`."""
    study_row = await _study_with_site(study, site)
    versions = await Versions.load(study_row["id"])
    name, closures = versions.calendars.get(site, (None, ()))
    current = (await repo.list_versions(study_row["id"]))[-1] if versions.rows else None
    fallback = (await versions.protocol(current["id"])).calendar if current else None
    calendar = site_calendar(name, closures, fallback)
    days = closed_days(calendar, first, min(last, first + timedelta(days=366))) if calendar else []
    return {
        "site": site,
        "calendar": name or (fallback.name if fallback else None),
        "own": name is not None,
        "closed": [{"date": day, "reason": why} for day, why in days],
        "closures": [{"first_day": c.first_day, "last_day": c.last_day, "reason": c.reason} for c in closures],
    }


async def _refresh_site(study_id: int, site: str, today: date | None) -> None:
    inputs = (await repo.load_inputs(study_id, site=site)).values()
    if inputs:
        await refresh_participants(study_id, inputs=inputs, today=today)


async def refresh_study(study: str, as_of: date, today: date) -> list[str]:
    """Re-evaluate, and store, the participants of a study whose stored schedule ends before `as_of` + the
    horizon (inside the caller's transaction), so that open-ended repeats stay listed however long nothing
    changes for a participant; `deviations.refresh_schedules` runs it with detection. Idempotent: run again
    with the same date, it re-evaluates nobody. Returns their subject IDs."""
    if as_of > today:
        raise invalid(
            f"{as_of} is still to come: schedules are refreshed as of today ({today}) or an earlier day", field="as_of"
        )
    horizon = as_of + timedelta(days=HORIZON_DAYS)
    study_row = await require_study(study)
    await repo.lock_participants(study_row["id"])
    stale = [p for p in (await repo.load_inputs(study_row["id"])).values() if p.horizon is None or p.horizon < horizon]
    if stale:
        await refresh_participants(study_row["id"], inputs=stale, today=today, as_of=as_of)
    return sorted(p.subject_id for p in stale)


@_reads
async def list_sites(study: str) -> list[dict]:
    return [_site_dict(study, row) for row in await repo.list_sites((await require_study(study))["id"])]


async def enroll_participant(
    study: str,
    subject_id: str,
    site: str,
    arm: str | None = None,
    version: str | None = None,
    enrolled_on: date | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
) -> dict:
    """Enrol under `version`, by default the latest version in effect on the enrolment date."""
    today = today or date.today()
    enrolled_on = enrolled_on or today
    subject_id = subject_id.strip()
    if not subject_id:
        raise invalid(f"study {study}: a participant needs a subject ID", field="subject_id")
    check_code(subject_id, f"study {study}: subject ID", "subject_id")
    async with transaction(f"study {study}, participant {subject_id}"):
        study_row = await require_study(study)
        versions = await repo.list_versions(study_row["id"])
        version_row = enrolment_version(study, versions, version, enrolled_on)
        protocol = await protocol_of(version_row["id"], version_row["sha256"])
        site_row = await _site_for_enrolment(study, study_row["id"], site)
        _check_arm(study, subject_id, protocol, arm)
        if (await repo.find_subject(study, subject_id))["id"] is not None:
            raise Conflict(f"study {study} already has participant {subject_id}")
        await repo.insert_participants(
            study_row["id"], [(subject_id, site_row["id"], arm, version_row["id"], enrolled_on)]
        )
        row = await subject_row(study, subject_id)
        await refresh_participants(study_row["id"], row["id"], today=today)
        await audit_log.record(
            actor,
            Change(
                "create",
                "participant",
                record_id(study, site_row["code"], subject_id),
                None,
                {
                    "site": site_row["code"],
                    "arm": arm,
                    "protocol_version": version_row["version"],
                    "enrolled_on": enrolled_on,
                },
            ),
        )
    return _participant_dict(study, row)


@_reads
async def list_participants(study: str, site: str | None = None) -> list[dict]:
    rows = await repo.list_participants((await require_study(study))["id"], site)
    return [_participant_dict(study, row) for row in rows]


@_reads
async def get_participant(study: str, subject_id: str) -> dict:
    """The participant with the events recorded so far, in date order."""
    row = await subject_row(study, subject_id)
    events = dict(sorted(row["events"].items(), key=lambda item: (item[1], item[0])))
    return {**_participant_dict(study, row), "events": events}


# Events, arms, visits --------------------------------------------------------------------------


async def record_event(
    study: str,
    subject_id: str,
    event: str,
    day: date,
    reason: str | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
) -> dict:
    """Record an event's date; changing a date already recorded needs a reason."""
    async with transaction(f"study {study}, participant {subject_id}"):
        subject = await _Subject.load(study, subject_id)
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
            if previous is not None and not _text(reason):
                raise invalid(
                    f"{subject}: {event} is already recorded on {previous}; give a reason to change it to {day}",
                    field="reason",
                )
            await repo.upsert_events([(subject.id, event, day, _text(reason))])
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
                    _text(reason),
                ),
            )
    return {
        "study": study,
        "subject_id": subject_id,
        "event": event,
        "date": day,
        "previous": previous,
        "changed": previous != day,
    }


async def assign_arm(study: str, subject_id: str, arm: str, today: date | None = None, actor: str = SYSTEM) -> dict:
    async with transaction(f"study {study}, participant {subject_id}"):
        subject = await _Subject.load(study, subject_id)
        _check_arm(study, subject_id, subject.protocol, arm)
        current = subject.inputs.arm
        if current not in (None, arm):
            raise Conflict(f"{subject} is already assigned to arm {current}")
        if current is None:
            await repo.update_participant(subject.id, arm=arm)
            subject.inputs.arm = arm
            await subject.refresh(today)
            await audit_log.record(
                actor, Change("update", "participant", subject.record_id(), {"arm": None}, {"arm": arm})
            )
        row = await subject_row(study, subject_id)
    return _participant_dict(study, row)


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
    """Record the date a visit took place; a code the protocol lacks is an unscheduled visit."""
    visit_code = visit_code.strip()
    if not visit_code:
        raise invalid(f"study {study}, participant {subject_id}: a visit code is required", field="visit_code")
    async with transaction(f"study {study}, participant {subject_id}, visit {visit_code}"):
        subject = await _Subject.load(study, subject_id)
        row = subject.visits.get(visit_code)
        _check_row_version(subject, visit_code, row, expected_row_version)
        _check_happened(f"{subject}: visit {visit_code}", actual, today)
        previous = subject.inputs.actuals.get(visit_code)
        if previous != actual:
            if previous is not None and not _text(reason):
                raise invalid(
                    f"{subject}: visit {visit_code} is already recorded on {previous}; give a reason"
                    f" to change it to {actual}",
                    field="reason",
                )
            subject.inputs.actuals[visit_code] = actual
            await subject.refresh(today)
            if _text(reason):
                row = await repo.find_visit(subject.id, visit_code)
                await repo.update_visit(row.id, bump=False, actual_reason=_text(reason))
            await audit_log.record(
                actor,
                Change(
                    "update",
                    "visit",
                    subject.record_id(visit_code),
                    {"actual": previous},
                    {"actual": actual},
                    _text(reason),
                ),
            )
        return _scheduled(await repo.find_visit(subject.id, visit_code))


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
    """Book a visit; a day outside its window, or moving a booking, needs a reason, stored with the booking."""
    async with transaction(f"study {study}, participant {subject_id}, visit {visit_code}"):
        subject = await _Subject.load(study, subject_id)
        row = subject.scheduled_visit(visit_code)
        _check_row_version(subject, visit_code, row, expected_row_version)
        _check_open(subject, row)
        if _outside(row, day) and not _text(reason):
            raise invalid(
                f"{subject}: {day} is outside the window of visit {visit_code} ({_window(row)});"
                " give a reason to book it on that day",
                field="reason",
            )
        if row.appointment not in (None, day) and not _text(reason):
            raise invalid(
                f"{subject}: visit {visit_code} is booked on {row.appointment}; give a reason to move it to {day}",
                field="reason",
            )
        await repo.update_visit(row.id, appointment=day, appointment_reason=_text(reason))
        await subject.refresh(today)
        await audit_log.record(
            actor,
            Change(
                "update",
                "visit",
                subject.record_id(visit_code),
                {"appointment": row.appointment},
                {"appointment": day},
                _text(reason),
            ),
        )
        return _scheduled(await repo.find_visit(subject.id, visit_code))


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
        subject = await _Subject.load(study, subject_id)
        if not _text(reason):
            raise invalid(f"{subject}: give the reason why visit {visit_code} was missed", field="reason")
        row = subject.scheduled_visit(visit_code)
        _check_row_version(subject, visit_code, row, expected_row_version)
        _check_open(subject, row)
        await repo.update_visit(row.id, missed_reason=_text(reason))
        subject.inputs.marked_missed.add(visit_code)
        await subject.refresh(today)
        await audit_log.record(
            actor,
            Change(
                "update", "visit", subject.record_id(visit_code), {"missed": False}, {"missed": True}, _text(reason)
            ),
        )
        return _scheduled(await repo.find_visit(subject.id, visit_code))


async def change_protocol_version(
    study: str,
    subject_id: str,
    version: str,
    effective: date,
    reason: str,
    today: date | None = None,
    actor: str = SYSTEM,
) -> dict:
    """Move a participant to another protocol version from `effective` on: visits done, or whose window
    closed, before that date stay judged by the version followed then (`evaluate_judged`)."""
    async with transaction(f"study {study}, participant {subject_id}"):
        await repo.lock_subject(study, subject_id)
        row = await subject_row(study, subject_id)
        moved = await _move(study, row["study_id"], version, effective, reason, today, actor, participant=row["id"])
        if moved.skipped:
            raise invalid(
                f"study {study}, participant {subject_id} {moved.skipped[subject_id]}",
                field="version" if moved.skipped[subject_id].startswith(ALREADY_ON) else "effective",
            )
        row = await subject_row(study, subject_id)
    return _participant_dict(study, row)


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
        study_row = await _study_with_site(study, site)
        await repo.lock_participants(study_row["id"])
        return await _move(study, study_row["id"], version, effective, reason, today, actor, site=site)


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
    if not _text(reason):
        raise invalid(f"study {study}: give the reason for the change to protocol version {version}", field="reason")
    versions = await repo.list_versions(study_id)
    target = _pick_version(study, versions, version)
    if effective < target["effective"]:  # the same for everyone: bad input, not a participant left as it is
        raise invalid(
            f"study {study}: protocol version {version} is effective from {target['effective']}; no"
            f" participant can follow it from {effective}",
            field="effective",
        )
    labels = {row["id"]: row["version"] for row in versions}
    people = sorted((await repo.load_inputs(study_id, participant, site=site)).values(), key=lambda p: p.subject_id)
    moved, skipped = [], {}
    for person in people:
        why = _cannot_move(person, target, effective, labels, bulk=participant is None)
        if why:
            skipped[person.subject_id] = why
        else:
            moved.append(person)
    await repo.insert_protocol_changes([(p.id, p.version_id, target["id"], effective, _text(reason)) for p in moved])
    audit = [
        Change(
            "update",
            "participant",
            record_id(study, p.site, p.subject_id),
            {"protocol_version": labels[p.version_id]},
            {"protocol_version": version, "effective": effective},
            _text(reason),
        )
        for p in moved
    ]
    for person in moved:
        person.add_change(person.version_id, target["id"], effective)
        person.version_id = target["id"]
    await repo.set_protocol_versions([p.id for p in moved], target["id"])
    if moved:
        await refresh_participants(study_id, inputs=moved, today=today)
    await audit_log.record(actor, *audit)
    return Moved(version, effective, [p.subject_id for p in moved], skipped)


def _cannot_move(
    person: ScheduleInputs, target: dict, effective: date, labels: dict[int, str], bulk: bool
) -> str | None:
    """Why this participant cannot move to `target` from `effective` (None: it can): changes follow each other in
    time, and a change for many leaves ended schedules. (A version governs from its own effective date on:
    `_move` refuses an earlier date for everyone.)"""
    if target["id"] == person.version_id:
        return f"{ALREADY_ON} {target['version']}"
    if person.changes and effective < person.changes[-1][0]:
        return (
            f"moved to protocol version {labels[person.version_id]} from {person.changes[-1][0]}; a later change"
            f" cannot take effect before that ({effective})"
        )
    if bulk and person.status != ACTIVE:
        return f"{SCHEDULE_ENDED} (an ending event is recorded); move it on its own if it must"
    return None


# Schedules and worklists -----------------------------------------------------------------------


@_reads
async def participant_schedule(study: str, subject_id: str, as_of: date) -> list[ScheduledVisit]:
    """The participant's visits evaluated as of `as_of`, with what is recorded about each."""
    subject = await _Subject.load(study, subject_id, lock=False)
    versions = await Versions.load(subject.study_id)
    schedule = []
    for visit, version in await versions.judged(subject.inputs, as_of):
        row = subject.visits.get(visit.visit)
        if row is None:
            schedule.append(ScheduledVisit(subject_id, subject.inputs.site, visit, versions.label(version)))
        else:
            schedule.append(_scheduled(row, visit)._replace(protocol_version=versions.label(version)))
    return schedule


@_reads
async def study_visits(
    study: str, as_of: date, site: str | None = None, statuses: Collection[str] | None = None, horizon_days: int = 0
) -> list[tuple[str, VisitOccurrence]]:
    """Exactly what `evaluate` gives for each participant as of `as_of`, by subject ID then visit order."""
    study_row = await _study_with_site(study, site)
    versions = await Versions.load(study_row["id"])
    inputs = await repo.load_inputs(study_row["id"], site=site)
    result = []
    for person in sorted(inputs.values(), key=lambda person: person.subject_id):
        for visit, _ in await versions.judged(person, as_of, horizon_days):
            if statuses is None or visit.status in statuses:
                result.append((person.subject_id, visit))
    return result


_MOVING = frozenset({UPCOMING, DUE, MISSED})  # of a visit not done, not marked missed
_OPEN = "x.actual IS NULL AND x.missed_reason IS NULL AND x.status <> 'not_applicable'"
_OVERLAPS = "x.target IS NOT NULL AND (x.earliest IS NULL OR x.earliest <= {}) AND (x.latest IS NULL OR x.latest >= {})"
_OVERDUE = f"{_OPEN} AND x.latest < {{}} AND NOT x.optional"
_WORKLISTS = {  # SQL over stored visits, and its arguments for an as-of date
    "today": (f"({_OPEN} AND {_OVERLAPS}) OR x.appointment = {{}}", lambda day: (day, day, day)),
    "week": (
        f"({_OPEN} AND {_OVERLAPS}) OR (x.actual IS NULL AND x.appointment BETWEEN {{}} AND {{}})",
        lambda day: (day + timedelta(days=6), day, day, day + timedelta(days=6)),
    ),
    "overdue": (_OVERDUE, lambda day: (day,)),
    "missed_or_out_of_window": (f"x.status IN ('missed', 'early', 'late') OR ({_OVERDUE})", lambda day: (day,)),
}


@_reads
async def worklist(study: str, as_of: date, site: str | None = None, kind: str = "today") -> list[ScheduledVisit]:
    """Stored visits needing attention: 'today' (window open or booked today), 'week' (window overlaps the
    next 7 days), 'overdue' (window closed, not done, not marked missed), 'missed_or_out_of_window'."""
    if kind not in _WORKLISTS:
        raise invalid(f"'{kind}' is not a worklist; choose one of {', '.join(WORKLISTS)}", field="kind")
    condition, arguments = _WORKLISTS[kind]
    rows = await repo.worklist_rows(
        (await _study_with_site(study, site))["id"], condition, *arguments(as_of), site=site
    )
    return [_scheduled(row, restated(row, as_of)) for row in rows]


@_reads
async def site_schedule(study: str, site: str, as_of: date) -> list[ScheduledVisit]:
    """Every stored visit of a site's participants, with appointments; statuses as of `as_of`."""
    study_row = await _study_with_site(study, site)
    rows = await repo.worklist_rows(study_row["id"], "x.status <> 'not_applicable'", site=site)
    return [_scheduled(row, restated(row, as_of)) for row in rows]


async def _study_with_site(study: str, site: str | None) -> dict:
    """The study's row; a site filter naming no site of the study is an error, not an empty list."""
    study_row = await require_study(study)
    if site is not None and await repo.find_site(study_row["id"], site) is None:
        raise NotFound(f"study {study} has no site {site}")
    return study_row


def restated(row: StoredVisit, as_of: date) -> VisitOccurrence:
    """A stored visit's status as of `as_of`: only the statuses that move with the calendar change."""
    if row.status in _MOVING and row.actual is None and not row.missed_reason:
        status, _ = classify(row.target, row.earliest, row.latest, None, as_of, row.optional)
        if status != row.status:
            return row.evaluation._replace(status=status)
    return row.evaluation


async def persist_schedules(
    study: str, rows: Iterable[tuple[str, VisitOccurrence]], evaluated_on: date | None = None
) -> Saved:
    """Bulk-store evaluated visits given as (subject_id, occurrence), as `study_visits` returns them."""
    evaluated_on = evaluated_on or date.today()
    async with transaction(f"study {study}"):
        study_row = await require_study(study)
        await repo.lock_participants(study_row["id"])
        people = {person.subject_id: person for person in (await repo.load_inputs(study_row["id"])).values()}
        grouped: dict[str, list[VisitOccurrence]] = {}
        for subject_id, visit in rows:
            if subject_id not in people:
                raise NotFound(f"study {study} has no participant {subject_id}")
            grouped.setdefault(subject_id, []).append(visit)
        versions = await Versions.load(study_row["id"])
        results = []
        for subject_id, visits in grouped.items():
            person = people[subject_id]
            judged = (
                {row.visit: version for row, version in await versions.judged(person, evaluated_on)}
                if person.changes
                else {}
            )  # which version judges each visit, when more than one could
            results.append((person, [(visit, judged.get(visit.visit, person.version_id)) for visit in visits]))
        return await repo.save_evaluations(results, evaluated_on)


async def refresh_participants(
    study_id: int,
    participant_id: int | None = None,
    inputs: Iterable[ScheduleInputs] | None = None,
    today: date | None = None,
    as_of: date | None = None,
) -> Saved:
    """Re-evaluate participants as of `as_of` (default today) and store their visits (inside the caller's
    transaction); the rows that change are marked evaluated today.

    Evaluates the given inputs, else those of one participant, else the whole study.
    """
    today = today or date.today()
    as_of = as_of or today
    if inputs is None:
        inputs = (await repo.load_inputs(study_id, participant_id)).values()
    versions = await Versions.load(study_id)
    people, saved = list(inputs), repo.Saved(0, 0, 0)
    for start in range(0, len(people), _REFRESH_BATCH):  # evaluated and stored a batch at a time: bounded memory
        results = []
        for person in people[start : start + _REFRESH_BATCH]:
            results.append((person, await versions.judged(person, as_of, HORIZON_DAYS)))
            protocol = await versions.protocol(person.version_id)
            status = (
                ENDED
                if any(protocol.events[name].ends_schedule for name in person.events if name in protocol.events)
                else ACTIVE
            )
            if status != person.status:
                await repo.update_participant(person.id, status=status)
                person.status = status
        batch = await repo.save_evaluations(results, today, horizon=as_of + timedelta(days=HORIZON_DAYS))
        saved = repo.Saved(
            saved.inserted + batch.inserted, saved.updated + batch.updated, saved.deleted + batch.deleted
        )
    return saved


_REFRESH_BATCH = 2_000


# Helpers ---------------------------------------------------------------------------------------


class _Subject:
    """A participant being worked on: its row, engine inputs, stored visits (by code) and protocol."""

    def __init__(
        self, study: str, row: dict, inputs: ScheduleInputs, visits: dict[str, StoredVisit], protocol: Protocol
    ):
        self.study, self.row, self.inputs, self.visits, self.protocol = study, row, inputs, visits, protocol
        self.id, self.study_id, self.version = row["id"], row["study_id"], row["version"]

    @classmethod
    async def load(cls, study: str, subject_id: str, lock: bool = True) -> _Subject:
        """In two queries (three when locking on PostgreSQL)."""
        if lock:
            await repo.lock_subject(study, subject_id)
        row = await subject_row(study, subject_id)
        inputs, visits = await repo.subject_inputs(row)
        return cls(study, row, inputs, visits, await protocol_of(row["protocol_version"], row["sha256"]))

    async def refresh(self, today: date | None) -> None:
        await refresh_participants(self.study_id, inputs=[self.inputs], today=today)

    def scheduled_visit(self, code: str) -> StoredVisit:
        row = self.visits.get(code)
        if row is None:
            codes = ", ".join(sorted(self.visits))
            raise NotFound(f"{self}: visit {code} is not in the schedule; scheduled visits: {codes}")
        return row

    def record_id(self, *more: str) -> str:
        return record_id(self.study, self.row["site"], self.row["subject_id"], *more)

    def __str__(self) -> str:
        return f"study {self.study}, participant {self.row['subject_id']}"


def check_code(value: str, what: str, field: str) -> None:
    """Site codes and subject IDs name audit records (`record_id`), so they hold no '/'."""
    if "/" in value:
        raise invalid(f"{what} '{value}' holds a '/', which codes may not", field=field)


def record_id(study: str, site: str, subject_id: str, *more: str) -> str:
    """How the audit trail names a participant's records: `STUDY/SITE/SUBJECT[/EVENT or VISIT]`, so a
    study's or a site's entries share a prefix."""
    return "/".join((study, site, subject_id, *more))


_sites: tuple[object, dict[tuple[str, str], str]] = (None, {})  # (engine, {(study, subject): site})


async def participant_site(study: str, subject_id: str) -> str | None:
    """The site code of a participant, None when the study or participant does not exist (for access checks,
    on every request that names a participant: cached, since a participant never changes site)."""
    global _sites
    if _sites[0] is not bound_engine():  # another database: forget what was learnt from the last one
        _sites = (bound_engine(), {})
    known = _sites[1]
    site = known.get((study, subject_id))
    if site is None:
        async with read():
            site = await repo.site_of_subject(study, subject_id)
        if site is not None:
            if len(known) >= 100_000:  # bounded: a long-running server sees every participant eventually
                known.clear()
            known[(study, subject_id)] = site
    return site


class Versions:
    """A study's protocol versions and its sites' calendars, read once per use case: the protocol each
    participant follows, with its site's calendar for business days, and evaluation across versions."""

    def __init__(self, rows: Iterable[dict], calendars: dict[str, tuple[str | None, tuple[Closure, ...]]]):
        self.rows = {row["id"]: row for row in rows}
        self.calendars = calendars

    @classmethod
    async def load(cls, study_id: int) -> Versions:
        return cls(await repo.list_versions(study_id), await repo.site_calendars(study_id))

    def label(self, version_id: int) -> str:
        return self.rows[version_id]["version"]

    async def protocol(self, version_id: int, site: str | None = None) -> Protocol:
        """The stored version, with the calendar of `site` when it has one (or closures)."""
        row = self.rows[version_id]
        protocol = await protocol_of(version_id, row["sha256"])
        spec = self.calendars.get(site) if site is not None else None
        if spec is None:
            return protocol
        try:
            return with_site_calendar(protocol, row["sha256"], spec)
        except CalendarError as error:  # stored before names were checked, or a library that changed
            raise invalid(
                f"site {site}: its stored calendar is not usable ({error}); set it again with trialcoord site calendar",
                field="calendar",
            ) from None

    async def judged(
        self, person: ScheduleInputs, as_of: date, horizon_days: int = 0
    ) -> list[tuple[VisitOccurrence, int]]:
        """The participant's visits as of `as_of`, each with the id of the version that judges it."""
        ids = person.versions
        first = await self.protocol(ids[0], person.site)
        changes = [(effective, await self.protocol(version, person.site)) for effective, version in person.changes]
        if not changes:
            return [
                (visit, ids[0])
                for visit in evaluate(
                    first,
                    person.events,
                    person.actuals,
                    as_of,
                    arm=person.arm,
                    horizon_days=horizon_days,
                    marked_missed=person.marked_missed,
                )
            ]
        return [
            (visit, ids[index])
            for visit, index in evaluate_judged(
                first,
                person.events,
                person.actuals,
                as_of,
                arm=person.arm,
                horizon_days=horizon_days,
                marked_missed=person.marked_missed,
                changes=changes,
            )
        ]


_variants: dict[tuple[str, str | None, tuple[Closure, ...]], Protocol] = {}  # by source sha256 and site calendar


def with_site_calendar(protocol: Protocol, sha256: str, spec: tuple[str | None, tuple[Closure, ...]]) -> Protocol:
    """The protocol with a site's calendar (its own, else the protocol's, plus its closures) for `bd` units."""
    key = (sha256, *spec)
    variant = _variants.get(key)
    if variant is None:
        calendar = site_calendar(spec[0], spec[1], protocol.calendar)
        variant = protocol if calendar is protocol.calendar else replace(protocol, calendar=calendar)
        if len(_variants) >= 1000:  # bounded: closures come and go
            _variants.clear()
        _variants[key] = variant
    return variant


async def check_numbering(study_id: int, protocol: Protocol) -> None:
    """Refuse a version that renumbers a visit of an earlier one (the contract: codes keep their meaning)."""
    earlier = [await protocol_of(row["id"], row["sha256"]) for row in await repo.list_versions(study_id)]
    problems = renumbered(earlier, protocol)
    if problems:
        raise InvalidInput(
            [
                Problem(f"study {protocol.study}, protocol version {protocol.version}: {line}", field="visits")
                for line in problems
            ]
        )


async def protocol_of(version_id: int, sha256: str) -> Protocol:
    """The parsed protocol of a stored version, parsed once per process and source text."""
    if sha256 not in _protocols:
        from trialcoord.scheduling.protocol_files import parse_protocol  # only when not cached: it needs yaml

        source = await repo.version_source(version_id)
        _protocols[sha256] = parse_protocol(source["source_text"], file=source["source_name"])
    return _protocols[sha256]


async def require_study(code: str) -> dict:
    row = await repo.find_study(code)
    if row is None:
        raise NotFound(f"study {code} does not exist")
    return row


async def subject_row(study: str, subject_id: str) -> dict:
    """The participant with its study's id (see `repo.find_subject`)."""
    row = await repo.find_subject(study, subject_id)
    if row is None:
        raise NotFound(f"study {study} does not exist")
    if row["id"] is None:
        raise NotFound(f"study {study} has no participant {subject_id}")
    return row


def _pick_version(study: str, rows: Iterable[dict], version: str) -> dict:
    rows = list(rows)
    for row in rows:
        if row["version"] == version:
            return row
    known = ", ".join(row["version"] for row in rows) or "none loaded"
    raise invalid(f"study {study} has no protocol version {version}; versions: {known}", field="version")


def enrolment_version(study: str, rows: list[dict], version: str | None, enrolled_on: date) -> dict:
    """The named version, else the latest in effect on the enrolment date, else the latest."""
    if not rows:
        raise invalid(f"study {study} has no protocol version loaded", field="version")
    if version is not None:
        try:
            return _pick_version(study, rows, version)
        except NotFound as exc:
            raise invalid(str(exc), field="version") from None
    in_effect = [row for row in rows if row["effective"] <= enrolled_on]
    return (in_effect or rows)[-1]


async def _site_for_enrolment(study: str, study_id: int, code: str) -> dict:
    row = await repo.find_site(study_id, code)
    if row is None:
        known = ", ".join(site["code"] for site in await repo.list_sites(study_id)) or "none yet"
        raise invalid(f"study {study} has no site {code}; sites: {known}", field="site")
    return row


def _check_arm(study: str, subject_id: str, protocol: Protocol, arm: str | None) -> None:
    if arm is not None and arm not in protocol.arm_codes:
        known = ", ".join(sorted(protocol.arm_codes)) or "none (the protocol has no arms)"
        raise invalid(
            f"study {study}, participant {subject_id}: '{arm}' is not an arm of protocol version"
            f" {protocol.version}; arms: {known}",
            field="arm",
        )


def _check_calendar(name: str) -> str:
    try:
        return check_site_calendar(name)
    except CalendarError as error:
        raise invalid(str(error), field="calendar") from None


def _check_time_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(f"'{name}' is not an IANA time zone such as 'America/New_York'", field="time_zone") from None


def _check_happened(what: str, day: date, today: date | None) -> None:
    """Events and actual visits are facts: a day that has not come yet is a typing mistake."""
    today = today or date.today()
    if day > today:
        raise invalid(f"{what} cannot be recorded on {day}, after today ({today})", field="date")


async def _check_consent_event(subject: _Subject, event: str, day: date) -> None:
    """The consent event is the date of first consent: never later than the first consent on record."""
    first = await repo.first_signed(subject.id)
    if first is not None and day > date.fromisoformat(str(first["signed_on"])):
        raise invalid(
            f"{subject}: the first consent on record (version {first['label']}) was signed on"
            f" {first['signed_on']}; the {event} event is the date of first consent and cannot be later"
            f" ({day})",
            field="date",
        )


def _check_row_version(subject: _Subject, code: str, row: StoredVisit | None, expected: int | None) -> None:
    if expected is None:
        return
    if row is None or row.row_version != expected:
        current = "no stored version" if row is None else f"version {row.row_version}"
        raise Conflict(
            f"{subject}: visit {code} was changed by someone else (you had version {expected},"
            f" it now has {current}); reload it and try again"
        )


def _check_open(subject: _Subject, row: StoredVisit) -> None:
    if row.actual is not None:
        raise invalid(f"{subject}: visit {row.visit} already took place on {row.actual}", field="visit_code")
    if row.status == NOT_APPLICABLE:
        raise invalid(f"{subject}: visit {row.visit} does not apply to this participant", field="visit_code")


def _outside(row: StoredVisit, day: date) -> bool:
    early = row.earliest is not None and day < row.earliest
    return early or (row.latest is not None and day > row.latest)


def _window(row: StoredVisit) -> str:
    if row.target is None:
        return "no window yet"
    return f"window {row.earliest or 'unbounded'} to {row.latest or 'unbounded'}"


def _text(value: str | None) -> str | None:
    return value.strip() or None if value else None


def _scheduled(row: StoredVisit, visit: VisitOccurrence | None = None) -> ScheduledVisit:
    # Positional: a worklist calls this per row.
    return ScheduledVisit(
        row.subject_id,
        row.site,
        visit or row.evaluation,
        row.version,
        row.appointment,
        row.appointment_reason,
        row.actual_reason,
        row.missed_reason,
        row.row_version,
    )


def _study_dict(row: dict) -> dict:
    return {"code": row["code"], "title": row["title"], "created_at": row["created_at"]}


def _version_dict(study: str, row: dict) -> dict:
    return {
        "study": study,
        "version": row["version"],
        "effective": row["effective"],
        "source_name": row["source_name"],
        "sha256": row["sha256"],
        "loaded_at": row["loaded_at"],
    }


def _site_dict(study: str, row: dict) -> dict:
    return {
        "study": study,
        "code": row["code"],
        "name": row["name"],
        "time_zone": row["time_zone"],
        "calendar": row["calendar"],
    }


def _participant_dict(study: str, row: dict) -> dict:
    return {
        "study": study,
        "subject_id": row["subject_id"],
        "site": row["site"],
        "arm": row["arm"],
        "protocol_version": row["version"],
        "status": row["status"],
        "enrolled_on": row["enrolled_on"],
    }
