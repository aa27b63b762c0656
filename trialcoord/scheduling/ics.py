"""Visit schedules as iCalendar: one all-day event per visit that has a date to show.

The event falls on the actual date once the visit took place, else the booked appointment, else
the target. UIDs depend only on study, subject and visit, so a re-import updates events in place.
Nothing about a participant is written beyond the subject id.

A site's feed runs to tens of megabytes: `calendar_parts` gives it a batch of events at a time, so that a server
builds each part in a worker thread and sends it before building the next (`visits_calendar` joins the parts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any
from urllib.parse import quote

from icalendar import Calendar, Event

from trialcoord.scheduling.timeline import STATUS_LABELS

PRODID = "-//trialcoord//visit schedule//EN"
SKIPPED = frozenset({"not_applicable"})
EVENTS_PER_PART = 2_000  # about 0.6 MB of iCalendar
_END = b"END:VCALENDAR\r\n"


def visits_calendar(title: str, study: str, entries: Iterable[tuple[str, Any]], stamp: date) -> bytes:
    """`entries` are (subject id, visit occurrence row); `stamp` (the as-of date) keeps output reproducible."""
    return b"".join(calendar_parts(title, study, entries, stamp))


def calendar_parts(
    title: str, study: str, entries: Iterable[tuple[str, Any]], stamp: date, size: int | None = None
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
    dtstamp = datetime.combine(stamp, time(), tzinfo=UTC)
    remaining = iter(entries)
    while batch := list(islice(remaining, size)):
        events = (_event(study, subject_id, row, dtstamp) for subject_id, row in batch)
        yield b"".join(event.to_ical() for event in events if event is not None)
    yield _END


def _event(study: str, subject_id: str, row: Any, dtstamp: datetime) -> Event | None:
    appointment = getattr(row, "appointment", None)
    day = row.actual or appointment or row.target
    if day is None or row.status in SKIPPED:
        return None
    event = Event()
    event.add("uid", f"{quote(study)}.{quote(subject_id)}.{quote(row.visit)}@trialcoord")
    event.add("dtstamp", dtstamp)
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
