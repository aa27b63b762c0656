"""Use cases of a study's sites: creating them, their calendars for business days and their closures (each change
re-evaluates the site's participants), and the days a site is closed.

Sites are named by their codes within a study; see `schedules` for how a write stores the schedules it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import transaction
from trialcoord.kernel.problems import Conflict, NotFound, invalid
from trialcoord.scheduling.calendars import CalendarError, check_site_calendar, closed_days, site_calendar
from trialcoord.scheduling.protocols import StoredStudy, reads, require_study
from trialcoord.scheduling.schedules import Versions, refresh_participants
from trialcoord.scheduling.store import inputs as inputs_store
from trialcoord.scheduling.store import sites as sites_store
from trialcoord.scheduling.store import studies as studies_store


@dataclass(frozen=True, slots=True)
class Site:
    study: str
    code: str
    name: str
    time_zone: str
    calendar: str | None  # its own calendar for business days (None: the protocol's)


@dataclass(frozen=True, slots=True)
class SiteClosure:
    study: str
    site: str
    first_day: date
    last_day: date
    reason: str


@dataclass(frozen=True, slots=True)
class ClosedDay:
    date: date
    reason: str


@dataclass(frozen=True, slots=True)
class ClosureSpan:
    first_day: date
    last_day: date
    reason: str


@dataclass(frozen=True, slots=True)
class SiteCalendarDays:
    site: str
    calendar: str | None  # the site's own, else the protocol's (None: neither names one)
    own: bool
    closed: list[ClosedDay]
    closures: list[ClosureSpan]


async def create_site(
    study: str, code: str, name: str, time_zone: str = "UTC", calendar: str | None = None, actor: str = SYSTEM
) -> Site:
    code, name = code.strip(), name.strip()
    if not code:
        raise invalid(f"study {study}: a site needs a code", field="code")
    check_code(code, f"study {study}: site code", "code")
    _check_time_zone(time_zone)
    calendar = _check_calendar(calendar) if calendar else None
    async with transaction(f"study {study}, site {code}"):
        study_row = await require_study(study)
        if await sites_store.find_site(study_row.id, code):
            raise Conflict(f"study {study} already has a site {code}")
        row = await sites_store.insert_site(study_row.id, code, name or code, time_zone, calendar)
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
    return _site(study, row)


async def set_site_calendar(
    study: str, site: str, calendar: str | None, today: date | None = None, actor: str = SYSTEM
) -> Site:
    """Give a site its own calendar for business days (None: the protocol's); its participants are re-evaluated."""
    calendar = _check_calendar(calendar) if calendar else None
    async with transaction(f"study {study}, site {site}"):
        study_row = await study_with_site(study, site)
        row = await _site_row(study_row.id, site)
        if row["calendar"] != calendar:
            await sites_store.update_site(row["id"], calendar=calendar)
            await _refresh_site(study_row.id, site, today)
            await audit_log.record(
                actor,
                Change("update", "site", f"{study}/{site}", {"calendar": row["calendar"]}, {"calendar": calendar}),
            )
        row = await _site_row(study_row.id, site)
    return _site(study, row)


CLOSURE_FUTURE_DAYS = 3 * 366  # a closure further ahead is most likely a typo in the year


async def add_site_closure(
    study: str,
    site: str,
    first_day: date,
    last_day: date | None,
    reason: str,
    today: date | None = None,
    actor: str = SYSTEM,
) -> SiteClosure:
    """Days the site is closed (both inclusive): business days at that site skip them from now on."""
    last_day = last_day or first_day
    why = text(reason)
    if why is None:
        raise invalid(f"study {study}, site {site}: say why the site is closed", field="reason")
    if last_day < first_day:
        raise invalid(f"a closure ends on or after its first day ({first_day}), not on {last_day}", field="last_day")
    if (last_day - first_day).days > 366:
        raise invalid("a closure is at most a year long; record longer ones as a change of calendar", field="last_day")
    today = today or date.today()
    async with transaction(f"study {study}, site {site}"):
        study_row = await study_with_site(study, site)
        row = await _site_row(study_row.id, site)
        # a closure before the study's protocol took effect, or years ahead, is most likely a typo in the year
        began = min((v["effective"] for v in await studies_store.list_versions(study_row.id)), default=first_day)
        if not began - timedelta(days=366) <= first_day <= today + timedelta(days=CLOSURE_FUTURE_DAYS):
            raise invalid(
                f"a closure starts at most a year before the study's first protocol version ({began})"
                f" and three years after today ({today}), not on {first_day}: is the year right?",
                field="first_day",
            )
        for known in (await sites_store.site_calendars(study_row.id)).get(site, (None, ()))[1]:
            if known.first_day <= last_day and first_day <= known.last_day:
                raise Conflict(
                    f"study {study}, site {site} is already closed from {known.first_day} to"
                    f" {known.last_day} ({known.reason}); withdraw that closure first to change it"
                )
        await sites_store.insert_closure(row["id"], first_day, last_day, why)
        await _refresh_site(study_row.id, site, today)
        await audit_log.record(
            actor,
            Change(
                "create",
                "site",
                f"{study}/{site}/closure/{first_day}",
                None,
                {"first_day": first_day, "last_day": last_day},
                why,
            ),
        )
    return SiteClosure(study, site, first_day, last_day, why)


async def withdraw_site_closure(
    study: str, site: str, first_day: date, reason: str, today: date | None = None, actor: str = SYSTEM
) -> SiteClosure:
    """Take back a closure recorded by mistake (the one starting on `first_day`): business days at the site no
    longer skip it. Audited with the reason; the site's participants are re-evaluated."""
    if not text(reason):
        raise invalid(f"study {study}, site {site}: say why the closure is withdrawn", field="reason")
    async with transaction(f"study {study}, site {site}"):
        study_row = await study_with_site(study, site)
        row = await _site_row(study_row.id, site)
        closure = next(
            (
                c
                for c in (await sites_store.site_calendars(study_row.id)).get(site, (None, ()))[1]
                if c.first_day == first_day
            ),
            None,
        )
        if closure is None:
            raise NotFound(f"study {study}, site {site} has no closure starting on {first_day}")
        await sites_store.delete_closure(row["id"], first_day)
        await _refresh_site(study_row.id, site, today)
        await audit_log.record(
            actor,
            Change(
                "delete",
                "site",
                f"{study}/{site}/closure/{first_day}",
                {"first_day": closure.first_day, "last_day": closure.last_day, "reason": closure.reason},
                None,
                text(reason),
            ),
        )
    return SiteClosure(study, site, closure.first_day, closure.last_day, closure.reason)


@reads
async def site_calendar_days(study: str, site: str, first: date, last: date) -> SiteCalendarDays:
    """The calendar a site's business days follow, and its holidays and closures from `first` to `last`."""
    study_row = await study_with_site(study, site)
    versions = await Versions.load(study_row.id)
    name, closures = versions.calendars.get(site, (None, ()))
    current = (await studies_store.list_versions(study_row.id))[-1] if versions.rows else None
    fallback = (await versions.protocol(current["id"])).calendar if current else None
    calendar = site_calendar(name, closures, fallback)
    days = closed_days(calendar, first, min(last, first + timedelta(days=366))) if calendar else []
    return SiteCalendarDays(
        site,
        name or (fallback.name if fallback else None),
        name is not None,
        [ClosedDay(day, why) for day, why in days],
        [ClosureSpan(c.first_day, c.last_day, c.reason) for c in closures],
    )


async def _refresh_site(study_id: int, site: str, today: date | None) -> None:
    inputs = (await inputs_store.load_inputs(study_id, site=site)).values()
    if inputs:
        await refresh_participants(study_id, inputs=inputs, today=today)


@reads
async def list_sites(study: str) -> list[Site]:
    return [_site(study, row) for row in await sites_store.list_sites((await require_study(study)).id)]


async def study_with_site(study: str, site: str | None) -> StoredStudy:
    """The study's row; a site filter naming no site of the study is an error, not an empty list."""
    study_row = await require_study(study)
    if site is not None and await sites_store.find_site(study_row.id, site) is None:
        raise NotFound(f"study {study} has no site {site}")
    return study_row


def check_code(value: str, what: str, field: str) -> None:
    """Site codes and subject IDs name audit records (`record_id`), so they hold no '/'."""
    if "/" in value:
        raise invalid(f"{what} '{value}' holds a '/', which codes may not", field=field)


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


def text(value: str | None) -> str | None:
    return value.strip() or None if value else None


async def _site_row(study_id: int, site: str) -> dict[str, Any]:
    """The row of a site `study_with_site` found."""
    row = await sites_store.find_site(study_id, site)
    if row is None:
        raise NotFound(f"site {site} does not exist")
    return row


def _site(study: str, row: dict[str, Any]) -> Site:
    return Site(study, row["code"], row["name"], row["time_zone"], row["calendar"])
