"""Site calendars for business-day (`bd`) durations: the built-in ones and those a protocol defines.

A protocol's `calendars:` entry is `{weekend: [sat, sun], holidays: [2025-12-24, ...], rules: us-federal}`,
every key optional. Holiday rules come from the maintained `holidays` library, which computes a year's
holidays (with their observed dates) on first use, so no year range has to be fixed in advance.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import date

import holidays

from trialcoord.domain.durations import Calendar

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
            raise CalendarError(
                f"'{name}' is not a built-in calendar; write one of {', '.join(BUILTIN_CALENDARS)}"
            )
        spec = _BUILTIN_SPECS[name]
    weekend = frozenset(weekday_index(day) for day in _names(spec.get("weekend", DEFAULT_WEEKEND)))
    dates = frozenset(spec.get("holidays") or ())
    rules = spec.get("rules")
    if rules is None:
        return Calendar(name, weekend, dates)
    rule_set = holiday_rules(str(rules))
    return Calendar(name, weekend, _HolidaySet(dates, rule_set) if dates else rule_set)


def _names(value: object) -> Iterable[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise CalendarError(f"weekend must be a list of day names, such as [sat, sun], not {value!r}")
    return value
