"""When the nightly run (schedule refresh, then deviation detection) is due: once a night, at a set local time
in the configured time zone; a night whose time passed while the server was down is caught up at start-up,
but not one of a day before.

Times are aware datetimes; the local time is read in `zone` (on the night clocks spring forward past it, it
falls an hour later in local time, at the same instant; on the night they fall back it is the first of the
two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def night_at(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of `day`'s run."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def latest_night(now: datetime, at: time, zone: ZoneInfo) -> datetime | None:
    """Today's run instant once it has come (None before it): the night a run now would be for."""
    tonight = night_at(now.astimezone(zone).date(), at, zone)
    return tonight if now >= tonight else None


def next_night(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first run instant after `now`."""
    day = now.astimezone(zone).date()
    for offset in range(3):  # today's, else tomorrow's (a day with no such local time cannot be two in a row)
        instant = night_at(day + timedelta(days=offset), at, zone)
        if instant > now:
            return instant
    raise AssertionError("no run instant within three days")


def due_studies(last_runs: Mapping[str, datetime | None], night: datetime) -> list[str]:
    """The studies whose last detection run is older than `night`'s instant (or that never had one): their
    nightly run has not happened. A run since (the nightly one, or one started by hand) counts."""
    return sorted(study for study, ran in last_runs.items() if ran is None or ran < night)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When the nightly run happens: `at` local time in the time zone named `zone`."""

    at: time
    zone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)
