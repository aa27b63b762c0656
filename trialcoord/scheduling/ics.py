"""Visit schedules as iCalendar (RFC 5545): one all-day event per visit that has a date to show.

The event falls on the actual date once the visit took place, else the booked appointment, else
the target. UIDs depend only on study, subject and visit occurrence (its own code, such as C3D1 or an
unscheduled visit's), each part percent-encoded and joined by `/`, so no two participants' events share one and a
re-import updates events in place. Each event's `Revision` comes from the stored row: SEQUENCE its row version
less one (a moved visit's row version grows), LAST-MODIFIED and DTSTAMP when the row last changed (RFC 5545
3.8.7.2: without METHOD, DTSTAMP is the last revision); a visit not stored (a command line's schedule, a repeat
beyond the stored horizon) has SEQUENCE 0 and the as-of date's midnight, so the same stored state always gives the
same bytes. Nothing about a participant is written beyond the subject id.

A site's feed runs to tens of megabytes: `calendar_parts` gives it a batch of events at a time, so that a server
builds each part in a worker thread and sends it before building the next (`visits_calendar` joins the parts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any, NamedTuple
from urllib.parse import quote

from icalendar import Calendar, Event

from trialcoord.scheduling.timeline import STATUS_LABELS

PRODID = "-//trialcoord//visit schedule//EN"
SKIPPED = frozenset({"not_applicable"})
EVENTS_PER_PART = 2_000  # about 0.6 MB of iCalendar
_END = b"END:VCALENDAR\r\n"


class Revision(NamedTuple):
    """How often and when a stored visit changed: its row version (1 when stored) and last change."""

    row_version: int
    modified: datetime


Entry = tuple[str, Any, Revision | None]  # subject id, visit occurrence row, its revision (None: not stored)
Days = tuple[date | None, date | None]  # the first and last day shown (None: open)


def revision(row_version: int | None, modified: datetime | None) -> Revision | None:
    """A stored row's revision; None for a visit not stored."""
    if row_version is None or modified is None:
        return None
    return Revision(row_version, modified)


def visits_calendar(title: str, study: str, entries: Iterable[Entry], stamp: date, days: Days = (None, None)) -> bytes:
    """`stamp` (the as-of date) keeps output reproducible; `days` keeps the events from and to these days."""
    return b"".join(calendar_parts(title, study, entries, stamp, days=days))


def calendar_parts(
    title: str,
    study: str,
    entries: Iterable[Entry],
    stamp: date,
    size: int | None = None,
    days: Days = (None, None),
) -> Iterator[bytes]:
    """The calendar's bytes in parts: its header, the events of `size` entries (default `EVENTS_PER_PART`) at a
    time, its end. Lazy: each part is built (and `entries` read) only when asked for."""
    size = size or EVENTS_PER_PART
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", title)
    whole = calendar.to_ical()
    yield whole[: -len(_END)]  # what icalendar writes for the calendar, without its end
    unstored = Revision(1, datetime.combine(stamp, time(), tzinfo=UTC))
    remaining = iter(entries)
    while batch := list(islice(remaining, size)):
        events = (_event(study, subject_id, row, changed or unstored, days) for subject_id, row, changed in batch)
        yield b"".join(event.to_ical() for event in events if event is not None)
    yield _END


def uid(study: str, subject_id: str, visit: str) -> str:
    """Unique per study, participant and visit occurrence: each part encoded whole, so `/` separates them only."""
    return "/".join(quote(part, safe="") for part in (study, subject_id, visit)) + "@trialcoord"


def _event(study: str, subject_id: str, row: Any, changed: Revision, days: Days) -> Event | None:
    appointment = getattr(row, "appointment", None)
    day = row.actual or appointment or row.target
    if day is None or row.status in SKIPPED:
        return None
    if (days[0] is not None and day < days[0]) or (days[1] is not None and day > days[1]):
        return None
    modified = _utc_seconds(changed.modified)
    event = Event()
    event.add("uid", uid(study, subject_id, row.visit))
    event.add("dtstamp", modified)
    event.add("last-modified", modified)
    event.add("sequence", max(changed.row_version - 1, 0))
    event.add("dtstart", day)
    event.add("dtend", day + timedelta(days=1))
    event.add("summary", f"{subject_id}: {row.visit} {row.name}")
    event.add("description", _description(row, appointment))
    event.add("status", "CONFIRMED" if (row.actual or appointment) else "TENTATIVE")
    event.add("transp", "TRANSPARENT")
    return event


def _description(row: Any, appointment: date | None) -> str:
    lines = [f"Status: {STATUS_LABELS.get(row.status, row.status)}"]
    if row.target:
        lines.append(f"Target: {row.target}")
        lines.append(f"Window: {row.earliest or 'open'} to {row.latest or 'open'}")
    if appointment:
        lines.append(f"Appointment: {appointment}")
    if row.actual:
        lines.append(f"Done: {row.actual}")
    return "\n".join(lines)


def _utc_seconds(instant: datetime) -> datetime:
    """In UTC to the second, as iCalendar writes it (a naive instant is the database's UTC)."""
    aware = instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0)
