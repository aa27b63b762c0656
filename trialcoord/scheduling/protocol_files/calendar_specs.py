"""The `calendar:` a protocol counts business days by: a built-in one, or one of those it defines under
`calendars:`."""

from __future__ import annotations

from datetime import date

from yaml.nodes import Node

from trialcoord.scheduling.calendars import (
    BUILTIN_CALENDARS,
    CALENDAR_KEYS,
    HOLIDAY_RULES,
    CalendarError,
    build_calendar,
    weekday_index,
)
from trialcoord.scheduling.protocol_files.nodes import _read, _Reader, _suggest, _Where
from trialcoord.scheduling.rules.durations import Calendar

# ---- calendars -------------------------------------------------------------------------------------


def _read_calendar(reader: _Reader, top: dict[str, Node]) -> Calendar | None:
    where = _Where()
    specs = _read(top, where, "calendars", _read_calendar_specs, reader) if "calendars" in top else {}
    if "calendar" not in top:
        if reader.first_business_day_use is not None:
            node, duration_where, duration = reader.first_business_day_use
            reader.report(
                node,
                duration_where,
                f"'{duration}' counts business days, but the protocol names no "
                "calendar; add a top-level line such as 'calendar: business-us'",
            )
        return None
    name = _read(top, where, "calendar", reader.text)
    if name is None:
        return None
    if specs is not None and name in specs:
        return None if specs[name] is None else build_calendar(name, specs[name])
    if name in BUILTIN_CALENDARS:
        return build_calendar(name)
    if specs is not None:
        known = [*BUILTIN_CALENDARS, *specs]
        reader.report(
            top["calendar"],
            where.key("calendar"),
            f"'{name}' is not a known calendar; "
            + _suggest(name, known, "calendars")
            + " (a protocol may define its own under 'calendars:')",
        )
    return None


def _read_calendar_specs(node: Node, where: _Where, reader: _Reader) -> dict[str, dict | None] | None:
    entries = reader.entries(node, where, "a mapping of calendar names to definitions")
    if entries is None:
        return None
    specs = {}
    for name, (key_node, value_node) in entries.items():
        spec_where = where.key(name, f"calendar {name}")
        if name in BUILTIN_CALENDARS:
            reader.report(key_node, spec_where, f"'{name}' is a built-in calendar; give yours another name")
        specs[name] = _read_calendar_spec(reader, value_node, spec_where)
    return specs


def _read_calendar_spec(reader: _Reader, node: Node, where: _Where) -> dict | None:
    """A spec for build_calendar, or None when it has problems."""
    known_problems = len(reader.problems)
    fields = reader.fields(node, where, (), CALENDAR_KEYS)
    if fields is None:
        return None
    spec = {
        "weekend": _read(fields, where, "weekend", _read_weekend, reader),
        "holidays": _read(fields, where, "holidays", _read_dates, reader),
        "rules": _read(fields, where, "rules", reader.choice, tuple(HOLIDAY_RULES)),
    }
    if len(reader.problems) > known_problems:
        return None
    return {key: value for key, value in spec.items() if key in fields}


def _read_weekend(node: Node, where: _Where, reader: _Reader) -> tuple[str, ...] | None:
    days = reader.texts(node, where, "day names")
    for index, day in enumerate(days or ()):
        try:
            weekday_index(day)
        except CalendarError as error:
            reader.report(node.value[index], where.item(index), str(error))
    return days


def _read_dates(node: Node, where: _Where, reader: _Reader) -> tuple[date, ...] | None:
    items = reader.items(node, where, "dates, such as [2025-12-24, 2025-12-31]")
    if items is None:
        return None
    dates = [reader.iso_date(item, where.item(index)) for index, item in enumerate(items)]
    found = tuple(day for day in dates if day is not None)
    return found if len(found) == len(dates) else None
