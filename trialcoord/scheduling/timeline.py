"""Visit occurrences -> the geometry of an inline SVG timeline (the template draws it).

Pure: no clock, no I/O. Each row is one visit: a bar for its window, a tick for the target, a dot
for the actual date, a ring for a booked appointment, all coloured by status. Rows only need the
attributes visit, name, target, earliest, latest, actual, status, and optionally appointment. A
`highlight` (a visit code) marks that visit's row, such as the visit a deviation is about.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

# Chosen for at least 4.5:1 contrast against white, so labels drawn in them stay readable.
STATUS_COLOURS = {
    "pending": "#4b5563",
    "upcoming": "#1d4ed8",
    "due": "#a16207",
    "on_time": "#15803d",
    "early": "#7e22ce",
    "late": "#c2410c",
    "missed": "#b91c1c",
    "not_applicable": "#6b7280",
    "unscheduled": "#0e7490",
}
STATUS_LABELS = {
    "pending": "Pending",
    "upcoming": "Upcoming",
    "due": "Due",
    "on_time": "On time",
    "early": "Early",
    "late": "Late",
    "missed": "Missed",
    "not_applicable": "Not applicable",
    "unscheduled": "Unscheduled",
}

LABEL_WIDTH = 170  # room for the visit code and name left of the plot
PLOT_WIDTH = 620
ROW_HEIGHT = 26
AXIS_HEIGHT = 28
PADDING_DAYS = 3


@dataclass(frozen=True, slots=True)
class TimelineRow:
    y: int
    label: str
    title: str  # the full sentence a screen reader or tooltip gives
    status: str
    colour: str
    bar: tuple[float, float] | None  # x and width of the window
    target: float | None
    actual: float | None
    appointment: float | None
    highlighted: bool = False


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class LegendEntry:
    status: str
    label: str
    colour: str


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    height: int
    plot_left: int
    plot_right: int
    axis_y: int
    rows: tuple[TimelineRow, ...]
    ticks: tuple[Tick, ...]
    as_of: float | None  # x of the as-of line, when it falls inside the range
    legend: tuple[LegendEntry, ...]
    start: date | None
    end: date | None


def build_timeline(rows: Iterable[Any], as_of: date, highlight: str | None = None) -> Timeline:
    rows = list(rows)
    span = _date_range(rows, as_of)
    start, end = span if span else (as_of, as_of + timedelta(days=1))
    scale = _Scale(start, end)
    drawn = tuple(_row(index, row, scale, highlight) for index, row in enumerate(rows))
    present = [status for status in STATUS_COLOURS if any(row.status == status for row in rows)]
    return Timeline(
        width=LABEL_WIDTH + PLOT_WIDTH + 10,
        height=AXIS_HEIGHT + ROW_HEIGHT * max(len(rows), 1) + 8,
        plot_left=LABEL_WIDTH,
        plot_right=LABEL_WIDTH + PLOT_WIDTH,
        axis_y=AXIS_HEIGHT - 6,
        rows=drawn,
        ticks=_ticks(start, end, scale),
        as_of=scale.x(as_of) if start <= as_of <= end else None,
        legend=tuple(LegendEntry(s, STATUS_LABELS[s], STATUS_COLOURS[s]) for s in present),
        start=start if span else None,
        end=end if span else None,
    )


class _Scale:
    def __init__(self, start: date, end: date):
        self.start = start
        self.end = end
        self.per_day = PLOT_WIDTH / max((end - start).days, 1)

    def x(self, day: date) -> float:
        return round(LABEL_WIDTH + (day - self.start).days * self.per_day, 1)


def _dates(row: Any) -> list[date]:
    candidates = (row.earliest, row.target, row.latest, row.actual, getattr(row, "appointment", None))
    return [day for day in candidates if day is not None]


def _date_range(rows: list[Any], as_of: date) -> tuple[date, date] | None:
    days = [day for row in rows for day in _dates(row)]
    if not days:
        return None
    days.append(as_of)
    pad = timedelta(days=PADDING_DAYS)
    return min(days) - pad, max(days) + pad


def _row(index: int, row: Any, scale: _Scale, highlight: str | None) -> TimelineRow:
    appointment = getattr(row, "appointment", None)
    highlighted = highlight is not None and row.visit == highlight
    title = _describe(row, appointment)
    return TimelineRow(
        y=AXIS_HEIGHT + index * ROW_HEIGHT,
        label=f"{row.visit} {row.name}",
        title=f"{title} (the visit in question)" if highlighted else title,
        status=row.status,
        colour=STATUS_COLOURS.get(row.status, STATUS_COLOURS["pending"]),
        bar=_bar(row, scale),
        target=scale.x(row.target) if row.target else None,
        actual=scale.x(row.actual) if row.actual else None,
        appointment=scale.x(appointment) if appointment else None,
        highlighted=highlighted,
    )


def _bar(row: Any, scale: _Scale) -> tuple[float, float] | None:
    """The window, both ends inclusive; an unbounded side runs to the edge of the plot."""
    if row.target is None:
        return None
    left = scale.x(row.earliest) if row.earliest else LABEL_WIDTH
    right = scale.x(row.latest + timedelta(days=1)) if row.latest else LABEL_WIDTH + PLOT_WIDTH
    return left, round(max(right - left, 2.0), 1)


def _describe(row: Any, appointment: date | None) -> str:
    parts = [f"{row.visit} {row.name}: {STATUS_LABELS.get(row.status, row.status)}"]
    if row.target:
        window = f"{row.earliest or 'open'} to {row.latest or 'open'}"
        parts.append(f"target {row.target}, window {window}")
    if appointment:
        parts.append(f"appointment {appointment}")
    if row.actual:
        parts.append(f"done {row.actual}")
    return "; ".join(parts)


def _ticks(start: date, end: date, scale: _Scale) -> tuple[Tick, ...]:
    """First of each month, or Mondays when the range is short enough that months say little."""
    if (end - start).days <= 70:
        first = start + timedelta(days=(7 - start.weekday()) % 7)
        days = [first + timedelta(weeks=n) for n in range((end - first).days // 7 + 1)]
        return tuple(Tick(scale.x(day), day.strftime("%d %b")) for day in days)
    months = []
    day = date(start.year, start.month, 1)
    while day <= end:
        if day >= start:
            months.append(day)
        day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    step = max(1, len(months) // 8)  # at most about eight labels, so they never overlap
    return tuple(Tick(scale.x(day), day.strftime("%b %Y")) for day in months[::step])
