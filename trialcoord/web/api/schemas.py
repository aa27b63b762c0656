"""Request and response bodies of the JSON API, typed so the OpenAPI document is precise."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec

from trialcoord.services.scheduling import ScheduledVisit

# Codes and names are free text for the services, but never empty nor control characters
# (PostgreSQL refuses NUL in text, and such values make unreadable worklists).
Code = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^/\x00-\x1f\x7f]+$")
]  # no '/': see record_id
Text = Annotated[str, msgspec.Meta(max_length=2000, pattern=r"^[^\x00]*$")]
EARLIEST_YEAR, LATEST_YEAR = 1900, 2199  # dates outside are typing mistakes, and overflow window arithmetic


def check_plausible(day: date | None, field: str) -> None:
    if day is not None and not EARLIEST_YEAR <= day.year <= LATEST_YEAR:
        raise ValueError(f"`{field}` must be a date between {EARLIEST_YEAR} and {LATEST_YEAR}, got {day}")


class Study(msgspec.Struct):
    code: str
    title: str
    created_at: datetime | None


class ProtocolSource(msgspec.Struct):
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=1_000_000)]
    name: Annotated[str, msgspec.Meta(max_length=200)] = "protocol.yaml"


class ProtocolVersion(msgspec.Struct):
    study: str
    version: str
    effective: date
    source_name: str
    sha256: str
    loaded_at: datetime | None


PersonalText = Annotated[str, msgspec.Meta(max_length=500)]


class Identity(msgspec.Struct):
    """A participant's personal data: stored encrypted, shown only to roles that may see it."""

    name: str | None = None
    date_of_birth: str | None = None
    contact: str | None = None
    mrn: str | None = None


class IdentityIn(msgspec.Struct):
    """Fields to set; an empty string clears one, an absent field stays as stored."""

    name: PersonalText | None = None
    date_of_birth: PersonalText | None = None
    contact: PersonalText | None = None
    mrn: PersonalText | None = None


CalendarName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9:_-]+$",
        description="business-us, weekdays, or holidays:<country>[-<region>] such as holidays:DE-BY",
    ),
]


class SiteIn(msgspec.Struct):
    code: Code
    name: Text = ""
    time_zone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    calendar: CalendarName | None = None


class SiteCalendarIn(msgspec.Struct):
    calendar: CalendarName | None = None  # None: the protocol's calendar


class ClosureIn(msgspec.Struct):
    first_day: date
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    last_day: date | None = None


class WithdrawalIn(msgspec.Struct):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class Closure(msgspec.Struct):
    study: str
    site: str
    first_day: date
    last_day: date
    reason: str


class ClosedDay(msgspec.Struct):
    date: date
    reason: str


class ClosureOut(msgspec.Struct):
    first_day: date
    last_day: date
    reason: str


class SiteCalendar(msgspec.Struct):
    site: str
    calendar: str | None  # the site's own, else the protocol's (None: neither names one)
    own: bool
    closed: list[ClosedDay]
    closures: list[ClosureOut]


class Site(msgspec.Struct):
    study: str
    code: str
    name: str
    time_zone: str
    calendar: str | None


class EnrolmentIn(msgspec.Struct):
    subject_id: Code
    site: Code
    arm: Code | None = None
    enrolled_on: date | None = None
    version: Code | None = None

    def __post_init__(self) -> None:
        check_plausible(self.enrolled_on, "enrolled_on")


class Participant(msgspec.Struct):
    study: str
    subject_id: str
    site: str
    arm: str | None
    protocol_version: str
    status: str
    enrolled_on: date
    events: dict[str, date] | None = None  # recorded events, on the single-participant route


class EventIn(msgspec.Struct):
    event: Code
    date: date
    reason: Text | None = None

    def __post_init__(self) -> None:
        check_plausible(self.date, "date")


class RecordedEvent(msgspec.Struct):
    study: str
    subject_id: str
    event: str
    date: date
    previous: date | None
    changed: bool


class ArmIn(msgspec.Struct):
    arm: Code


class VersionChangeIn(msgspec.Struct):
    version: Code
    effective: date
    reason: Text

    def __post_init__(self) -> None:
        check_plausible(self.effective, "effective")


class VisitDateIn(msgspec.Struct):
    date: date
    reason: Text | None = None
    row_version: int | None = None  # the version the client saw; a stale one is a 409

    def __post_init__(self) -> None:
        check_plausible(self.date, "date")


class MissedIn(msgspec.Struct):
    reason: Text
    row_version: int | None = None


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


def visit_row(scheduled: ScheduledVisit) -> VisitRow:
    v = scheduled.visit
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
    )


def from_dict(kind: type, data: dict[str, Any]) -> Any:
    """Service dicts -> response structs, ignoring keys the API does not publish."""
    return kind(**{name: data.get(name) for name in kind.__struct_fields__})
