"""Build domain protocols in tests without YAML, so domain tests need no adapter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from trialcoord.scheduling.rules.durations import Calendar, parse_duration
from trialcoord.scheduling.rules.protocol import Arm, Event, Protocol, Repeat, VisitDefinition, Window

EVENTS = ("consent", "randomization", "first_dose", "last_dose")
ENDING = ("withdrawal", "early_termination", "end_of_treatment")


def window(early="0d", late="0d") -> Window:
    side = lambda text: None if text == "unbounded" else parse_duration(text)  # noqa: E731
    return Window(side(early), side(late))


def visit(code, frm="randomization", offset="0d", early="0d", late="0d", number=None, **kw) -> VisitDefinition:
    repeat = kw.pop("repeat", None)
    if repeat is not None:
        every, count = repeat
        repeat = Repeat(parse_duration(every), count)
    arms = kw.pop("arms", None)
    return VisitDefinition(
        code=code,
        name=kw.pop("name", code),
        number=number if number is not None else 0,
        reference_name=frm,
        offset=parse_duration(offset),
        window=window(early, late),
        repeat=repeat,
        arms=frozenset(arms) if arms is not None else None,
        **kw,
    )


def protocol(*visits: VisitDefinition, day_one="randomization", calendar: Calendar | None = None) -> Protocol:
    numbered = tuple(v if v.number else VisitDefinition(**{**_fields(v), "number": i}) for i, v in enumerate(visits, 1))
    events = {name: Event(name) for name in EVENTS}
    events.update({name: Event(name, ends_schedule=True) for name in ENDING})
    return Protocol(
        study="TEST-1",
        title="Test study",
        version="1.0",
        effective=date(2024, 1, 1),
        day_one=day_one,
        events=events,
        visits=numbered,
        arms=(Arm("A", "Active"), Arm("P", "Placebo")),
        calendar=calendar,
    )


def _fields(v: VisitDefinition) -> dict:
    return {name: getattr(v, name) for name in VisitDefinition.__dataclass_fields__}


@dataclass
class Row:
    """A visit row as the web layer renders it (timeline, calendar)."""

    visit: str
    status: str
    target: date | None = None
    earliest: date | None = None
    latest: date | None = None
    actual: date | None = None
    appointment: date | None = None
    name: str = "Visit"
