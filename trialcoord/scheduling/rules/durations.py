"""Durations of the protocol format: `14d`, `2w`, `-1mo`, `5bd`, ISO 8601 `P14D`, and `unbounded`.

A duration is a value object; adding it to a date needs a calendar only for business days.
"""

from __future__ import annotations

import calendar as _stdcal
import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import date, timedelta

DAYS, MONTHS, BUSINESS_DAYS = "d", "mo", "bd"

_SHORT = re.compile(r"^([+-]?)(\d+)(d|w|mo|bd)$")
_ISO = re.compile(r"^([+-]?)P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


class DurationError(ValueError):
    """A duration text that does not follow the format; the message says why."""


@dataclass(frozen=True, slots=True)
class Calendar:
    """Weekend days (0 = Monday) and holidays; `bd` durations skip both.

    `holidays` is any container of dates, so a rule set that computes holidays lazily
    (such as the `holidays` library's US calendar) fits without the domain importing it.
    """

    name: str
    weekend: frozenset[int] = frozenset({5, 6})
    holidays: Container[date] = frozenset()

    def is_business_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend and day not in self.holidays

    def add_business_days(self, day: date, count: int) -> date:
        step = timedelta(days=1 if count >= 0 else -1)
        remaining = abs(count)
        while remaining:
            day += step
            if self.is_business_day(day):
                remaining -= 1
        return day


@dataclass(frozen=True, slots=True)
class Duration:
    amount: int
    unit: str  # DAYS, MONTHS or BUSINESS_DAYS; weeks and ISO forms are normalised on parsing
    text: str = ""

    def add_to(self, day: date, calendar: Calendar | None = None, sign: int = 1) -> date:
        amount = self.amount * sign
        if self.unit == DAYS:
            return day + timedelta(days=amount)
        if self.unit == MONTHS:
            return add_months(day, amount)
        if calendar is None:
            raise DurationError(f"'{self.text}' counts business days but the protocol names no calendar")
        return calendar.add_business_days(day, amount)

    def __str__(self) -> str:
        return self.text or f"{self.amount}{self.unit}"


def add_months(day: date, months: int) -> date:
    """Same day of month, clamped to the month's last day (Jan 31 + 1mo = Feb 28/29)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = _stdcal.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def parse_duration(text: object) -> Duration:
    """Parse one duration; raise DurationError with a sentence a protocol author understands."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise DurationError(f"expected a duration such as '14d', '2w', '1mo' or '5bd', got {text!r}")
    if isinstance(text, int):
        if text == 0:
            return Duration(0, DAYS, "0d")
        raise DurationError(f"'{text}' has no unit; write it as '{text}d' (days), 'w', 'mo' or 'bd'")
    raw = text.strip()
    match = _SHORT.match(raw)
    if match:
        sign, number, unit = match.groups()
        amount = int(number) * (-1 if sign == "-" else 1)
        if unit == "w":
            return Duration(amount * 7, DAYS, raw)
        return Duration(amount, unit, raw)
    match = _ISO.match(raw)
    if match and any(match.groups()[1:]):
        sign, years, months, weeks, days = match.groups()
        factor = -1 if sign == "-" else 1
        month_total = int(years or 0) * 12 + int(months or 0)
        day_total = int(weeks or 0) * 7 + int(days or 0)
        if month_total and day_total:
            raise DurationError(f"'{raw}' mixes months and days; write one unit, such as 'P1M' or 'P30D'")
        if month_total:
            return Duration(factor * month_total, MONTHS, raw)
        return Duration(factor * day_total, DAYS, raw)
    if raw.lower() == "unbounded":
        raise DurationError("'unbounded' is only allowed as a window side (early or late)")
    raise DurationError(
        f"'{raw}' is not a duration; write a whole number with a unit: "
        "'14d' (days), '2w' (weeks), '1mo' (months), '5bd' (business days), or ISO 8601 such as 'P14D'"
    )
