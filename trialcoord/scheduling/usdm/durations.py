"""USDM's ISO 8601 durations (P14D, P2W, -P1M, PT2H) as the protocol format's days, weeks and months."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_ISO = re.compile(
    r"^\s*([+-])?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?\s*$"
)


@dataclass(frozen=True, slots=True)
class Duration:
    months: int = 0
    days: int = 0
    weeks: bool = False  # written in weeks in USDM, so kept in weeks when whole
    exact: bool = True  # False: a part of a day was dropped (USDM time points within a day)

    def __add__(self, other: Duration) -> Duration:
        return Duration(
            self.months + other.months, self.days + other.days, self.weeks and other.weeks, self.exact and other.exact
        )

    def __neg__(self) -> Duration:
        return Duration(-self.months, -self.days, self.weeks, self.exact)

    @property
    def mixed(self) -> bool:
        """Months and days together, which the protocol format cannot express (it refuses `P1M3D`)."""
        return bool(self.months and self.days)

    def text(self) -> str:
        """In the protocol format's own units: 2w, -42d, 1mo (never `mixed`: callers list those as not mapped)."""
        if self.months:
            return f"{self.months}mo"
        if self.weeks and self.days and self.days % 7 == 0:
            return f"{self.days // 7}w"
        return f"{self.days}d"


def duration(text: Any, where: str) -> Duration:
    """An ISO 8601 duration as days (or months); time of day is dropped, and said so."""
    match = _ISO.match(text) if isinstance(text, str) else None
    if match is None or text.strip() in ("P", "PT"):
        raise ValueError(f"{where}: '{text}' is not an ISO 8601 duration such as P14D or P2W")
    sign, years, months, weeks, days, hours, minutes, seconds = match.groups()
    seconds_total = int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)
    result = Duration(
        int(years or 0) * 12 + int(months or 0),
        int(weeks or 0) * 7 + int(days or 0) + int(seconds_total // 86400),
        weeks is not None and not days,
        seconds_total % 86400 == 0,
    )
    return -result if sign == "-" else result


def _has_time(value: Any) -> bool:
    try:
        return not duration(value, "").exact
    except ValueError:
        return False
