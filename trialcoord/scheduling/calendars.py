"""Calendars for business-day (`bd`) durations: the built-in ones, those a protocol defines, and sites'.

A protocol's `calendars:` entry is `{weekend: [sat, sun], holidays: [2025-12-24, ...], rules: us-federal}`,
every key optional. Holiday rules come from the maintained `holidays` library, which computes a year's
holidays (with their observed dates) on first use, so no year range has to be fixed in advance.

A site's calendar is a built-in name or `holidays:<country>[-<region>]` (ISO 3166 codes as the `holidays`
library knows them, such as `holidays:DE-BY` or `holidays:JP`, with that country's weekend), plus the days
the site itself is closed. It replaces the protocol's calendar for that site's participants.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import date

import holidays

from trialcoord.scheduling.rules.durations import Calendar

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # position = date.weekday()
DEFAULT_WEEKEND = ("sat", "sun")
HOLIDAY_RULES: dict[str, Callable[[], Container[date]]] = {
    "us-federal": lambda: holidays.country_holidays("US"),
}
_BUILTIN_SPECS: dict[str, dict[str, object]] = {
    "business-us": {"weekend": DEFAULT_WEEKEND, "rules": "us-federal"},
    "weekdays": {"weekend": DEFAULT_WEEKEND},
}
BUILTIN_CALENDARS = tuple(_BUILTIN_SPECS)
CALENDAR_KEYS = ("weekend", "holidays", "rules")


class CalendarError(ValueError):
    """A calendar name or definition that cannot be built; the message says why."""


@dataclass(frozen=True, slots=True)
class _HolidaySet:
    """Listed dates plus the dates of a rule set."""

    dates: frozenset[date]
    rules: Container[date]

    def __contains__(self, day: object) -> bool:
        return day in self.dates or day in self.rules


def weekday_index(name: str) -> int:
    """0 for 'mon' ... 6 for 'sun' (case-insensitive)."""
    try:
        return WEEKDAYS.index(name.strip().lower())
    except ValueError:
        raise CalendarError(f"'{name}' is not a day name; write one of {', '.join(WEEKDAYS)}") from None


def holiday_rules(name: str) -> Container[date]:
    try:
        return HOLIDAY_RULES[name]()
    except KeyError:
        raise CalendarError(
            f"'{name}' is not a known holiday rule set; write one of {', '.join(HOLIDAY_RULES)}"
        ) from None


def build_calendar(name: str, spec: Mapping[str, object] | None = None) -> Calendar:
    """The built-in calendar `name`, or the calendar `spec` defines under that name."""
    if spec is None:
        if name not in _BUILTIN_SPECS:
            raise CalendarError(f"'{name}' is not a built-in calendar; write one of {', '.join(BUILTIN_CALENDARS)}")
        spec = _BUILTIN_SPECS[name]
    weekend = frozenset(weekday_index(day) for day in _names(spec.get("weekend", DEFAULT_WEEKEND)))
    dates = _dates(spec.get("holidays") or ())
    rules = spec.get("rules")
    if rules is None:
        return Calendar(name, weekend, dates)
    rule_set = holiday_rules(str(rules))
    return Calendar(name, weekend, _HolidaySet(dates, rule_set) if dates else rule_set)


HOLIDAYS_PREFIX = "holidays:"


@dataclass(frozen=True, slots=True)
class Closure:
    """Days a site is closed, both inclusive."""

    first_day: date
    last_day: date
    reason: str

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first_day <= day <= self.last_day


@dataclass(frozen=True, slots=True)
class _ClosedDays:
    """A calendar's holidays plus a site's closures."""

    holidays: Container[date]
    closures: tuple[Closure, ...]

    def __contains__(self, day: object) -> bool:
        return day in self.holidays or any(day in closure for closure in self.closures)


def check_site_calendar(name: str) -> str:
    """The name as stored, or CalendarError saying which forms a site calendar takes."""
    name = name.strip()
    if name in _BUILTIN_SPECS:
        return name
    if name.startswith(HOLIDAYS_PREFIX):
        return HOLIDAYS_PREFIX + "-".join(_canonical(name))  # as the library spells it: holidays:DE-BY
    raise CalendarError(
        f"'{name}' is not a site calendar; write one of {', '.join(BUILTIN_CALENDARS)}, or"
        " holidays:<country>[-<region>] such as holidays:DE-BY, holidays:GB-SCT or holidays:JP"
    )


def _canonical(name: str) -> tuple[str, ...]:
    """(country,) or (country, region) as the holidays library spells them (regions such as 'Augsburg' are not
    upper case), matched without regard to case; CalendarError names what it does not know."""
    country, _, region = name.removeprefix(HOLIDAYS_PREFIX).strip().partition("-")
    supported = holidays.list_supported_countries()
    if country.upper() not in supported:
        raise CalendarError(
            f"'{country}' is not a country the holidays library knows; use an ISO 3166 code"
            " such as DE, FR, GB, JP or US"
        )
    if not region:
        return (country.upper(),)
    regions = {known.upper(): known for known in supported[country.upper()]}
    if region.upper() not in regions:
        raise CalendarError(
            f"'{region}' is not a region of {country.upper()} the holidays library knows;"
            f" regions: {', '.join(supported[country.upper()]) or 'none'}"
        )
    return country.upper(), regions[region.upper()]


def _country_holidays(name: str):
    country, *region = _canonical(name)
    return holidays.country_holidays(country, subdiv=region[0] if region else None)


def site_calendar(name: str | None, closures: Iterable[Closure], fallback: Calendar | None) -> Calendar | None:
    """A site's calendar: its named one (else the protocol's `fallback`) with the site's closures added."""
    closures = tuple(closures)
    if name:
        if name.startswith(HOLIDAYS_PREFIX):
            rules = _country_holidays(name)
            base = Calendar(name, frozenset(rules.weekend), rules)
        else:
            base = build_calendar(name)
    elif fallback is not None:
        base = fallback
    else:
        return None
    if not closures:
        return base
    return Calendar(base.name, base.weekend, _ClosedDays(base.holidays, closures))


def closed_days(calendar: Calendar, first: date, last: date) -> list[tuple[date, str]]:
    """The days from `first` to `last` that are holidays or closures (weekends aside), each with its reason."""
    found = []
    holidays_of = calendar.holidays.holidays if isinstance(calendar.holidays, _ClosedDays) else calendar.holidays
    closures = calendar.holidays.closures if isinstance(calendar.holidays, _ClosedDays) else ()
    day = first
    while day <= last:
        reasons = [c.reason for c in closures if day in c]
        if day in holidays_of:
            named = holidays_of.get(day) if hasattr(holidays_of, "get") else None
            reasons.insert(0, named or "holiday")
        if reasons:
            found.append((day, "; ".join(reasons)))
        day = date.fromordinal(day.toordinal() + 1)
    return found


def _dates(value: object) -> frozenset[date]:
    if not isinstance(value, Iterable):
        raise CalendarError(f"holidays must be a list of dates, such as [2025-12-24], not {value!r}")
    return frozenset(value)


def _names(value: object) -> Iterable[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise CalendarError(f"weekend must be a list of day names, such as [sat, sun], not {value!r}")
    return value
