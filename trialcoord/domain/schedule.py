"""Schedule engine: a participant's recorded events and actual visits -> every visit occurrence.

Pure and deterministic: the as-of date is an argument, never the clock. Semantics and statuses are
those of docs/protocol-format.md; each rule below names the contract line it implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Collection, Mapping

from trialcoord.domain.protocol import ACTUAL, Protocol, VisitDefinition

PENDING = "pending"
UPCOMING = "upcoming"
DUE = "due"
ON_TIME = "on_time"
EARLY = "early"
LATE = "late"
MISSED = "missed"
NOT_APPLICABLE = "not_applicable"
UNSCHEDULED = "unscheduled"
STATUSES = (PENDING, UPCOMING, DUE, ON_TIME, EARLY, LATE, MISSED, NOT_APPLICABLE, UNSCHEDULED)
DEVIATION_CANDIDATES = frozenset({EARLY, LATE, MISSED})

# Safety stop for open-ended repeats whose reference never moves past the horizon.
MAX_OCCURRENCES = 1000


@dataclass(frozen=True, slots=True)
class VisitOccurrence:
    visit: str  # the occurrence's own code, such as `C3D1`
    definition: str  # the protocol's code, such as `C{n}D1`; the recorded code when unscheduled
    occurrence: int
    name: str
    number: float | None
    target: date | None
    earliest: date | None  # None: unbounded, or no target yet
    latest: date | None
    actual: date | None
    status: str
    days_outside: int
    study_day: int | None
    optional: bool = False


def study_day(day: date, day_one: date) -> int:
    """SDTM study day: no Day 0; the day before Day 1 is Day -1."""
    delta = (day - day_one).days
    return delta + 1 if delta >= 0 else delta


def classify(
    target: date | None,
    earliest: date | None,
    latest: date | None,
    actual: date | None,
    as_of: date,
    optional: bool = False,
) -> tuple[str, int]:
    """Status and days_outside of one applicable occurrence (the contract's status table)."""
    if target is None:
        return PENDING, 0
    if actual is not None:
        if earliest is not None and actual < earliest:
            return EARLY, (actual - earliest).days
        if latest is not None and actual > latest:
            return LATE, (actual - latest).days
        return ON_TIME, 0
    if earliest is not None and as_of < earliest:
        return UPCOMING, 0
    if latest is None or as_of <= latest:
        return DUE, 0
    return (NOT_APPLICABLE, 0) if optional else (MISSED, 0)


class _Evaluation:
    """One participant's evaluation; holds the dates resolved so far, in protocol order."""

    def __init__(self, protocol, events, actuals, arm, as_of, horizon_days, marked_missed):
        self.protocol = protocol
        self.events = events
        self.actuals = actuals
        self.marked_missed = marked_missed
        self.arm = arm
        self.as_of = as_of
        self.horizon = as_of.toordinal() + horizon_days
        self.calendar = protocol.calendar
        self.day_one = events.get(protocol.day_one)
        ending = [events[e.name] for e in protocol.events.values() if e.ends_schedule and e.name in events]
        self.end_date = min(ending) if ending else None
        self.reference_dates: dict[str, tuple[date | None, date | None]] = {}  # code -> (target, actual)
        self.rows: list[VisitOccurrence] = []

    def anchor_event(self, visit: VisitDefinition) -> str:
        """The event a chain of `from` references finally rests on."""
        name = visit.reference_name
        visits = self.protocol.visits_by_code
        while name in visits:
            name = visits[name].reference_name
        return name

    def survives_ending(self, visit: VisitDefinition) -> bool:
        """Visits counted from (or conditional on) the ending event, or a later event, still apply."""
        for name in (self.anchor_event(visit), visit.when):
            if name is None:
                continue
            event = self.protocol.events.get(name)
            if event is not None and event.ends_schedule:
                return True
            recorded = self.events.get(name)
            if recorded is not None and recorded >= self.end_date:
                return True
        return False

    def reference_date(self, visit: VisitDefinition) -> date | None:
        name = visit.reference_name
        if name in self.protocol.events:
            return self.events.get(name)
        target, actual = self.reference_dates.get(name, (None, None))
        if visit.reference == ACTUAL and actual is not None:
            return actual
        return target  # planned reference, or a reference visit not (yet) done: count from its target

    def add(self, visit: VisitDefinition, occurrence: int, target: date | None, status_override: str | None):
        code = visit.code_for(occurrence)
        actual = self.actuals.get(code)
        window = visit.window
        earliest = latest = None
        if target is not None:
            if window.early is not None:
                earliest = window.early.add_to(target, self.calendar, sign=-1)
            if window.late is not None:
                latest = window.late.add_to(target, self.calendar)
        if status_override is not None:
            status, outside = status_override, 0
        elif target is None:
            ended = self.end_date is not None and not self.survives_ending(visit)
            status, outside = (NOT_APPLICABLE if ended else PENDING), 0
        elif (
            actual is None
            and self.end_date is not None
            and (earliest or target) > self.end_date
            and not self.survives_ending(visit)
        ):
            status, outside = NOT_APPLICABLE, 0
        elif actual is None and code in self.marked_missed:
            status, outside = MISSED, 0  # a coordinator recorded that it will not take place
        else:
            status, outside = classify(target, earliest, latest, actual, self.as_of, visit.optional)
        self.rows.append(
            VisitOccurrence(
                visit=code,
                definition=visit.code,
                occurrence=occurrence,
                name=visit.name_for(occurrence),
                number=visit.number,
                target=target,
                earliest=earliest,
                latest=latest,
                actual=actual,
                status=status,
                days_outside=outside,
                study_day=study_day(target, self.day_one) if target and self.day_one else None,
                optional=visit.optional,
            )
        )
        self.reference_dates[code] = (target, actual)
        return target, actual, status

    def override_for(self, visit: VisitDefinition) -> str | None:
        """Arm and condition rules decide before any date does."""
        if visit.arms is not None:
            if self.arm is None:
                return PENDING
            if self.arm not in visit.arms:
                return NOT_APPLICABLE
        if visit.when is not None and visit.when not in self.events:
            return NOT_APPLICABLE
        return None

    def run(self) -> list[VisitOccurrence]:
        for visit in self.protocol.visits:
            override = self.override_for(visit)
            start = self.reference_date(visit)
            first = visit.offset.add_to(start, self.calendar) if start is not None else None
            if visit.repeat is None:
                self.add(visit, 1, first, override)
            else:
                self.repeat(visit, first, override)
        return self.rows

    def repeat(self, visit: VisitDefinition, target: date | None, override: str | None) -> None:
        every, count = visit.repeat.every, visit.repeat.count
        last_recorded = self.last_recorded_occurrence(visit)
        occurrence = 1
        while True:
            target, actual, status = self.add(visit, occurrence, target, override)
            if count is not None:
                if occurrence >= count:
                    return
            elif occurrence >= last_recorded and (
                target is None
                or status == NOT_APPLICABLE
                or target.toordinal() > self.horizon
                or occurrence >= MAX_OCCURRENCES
            ):
                return  # open-ended: stop at the first occurrence past the horizon, or once ended
            if target is None:
                next_reference = None
            else:
                next_reference = actual if (visit.chain == ACTUAL and actual is not None) else target
            target = every.add_to(next_reference, self.calendar) if next_reference is not None else None
            occurrence += 1

    def last_recorded_occurrence(self, visit: VisitDefinition) -> int:
        """Occurrences already recorded are always listed, even past the horizon."""
        highest = 0
        for code in self.actuals:
            resolved = self.protocol.resolve_visit_code(code)
            if resolved is not None and resolved[0] is visit:
                highest = max(highest, resolved[1])
        return highest


def evaluate(
    protocol: Protocol,
    events: Mapping[str, date],
    actuals: Mapping[str, date],
    as_of: date,
    arm: str | None = None,
    horizon_days: int = 0,
    marked_missed: Collection[str] = (),
) -> list[VisitOccurrence]:
    """Every visit occurrence of one participant as of a date, ordered by target date.

    `events` maps event names to recorded dates; `actuals` maps visit codes (expanded for repeats,
    such as `C3D1`) to actual dates. Codes the protocol does not define are unscheduled visits.
    Open-ended repeats are listed up to the first occurrence whose target lies past
    `as_of + horizon_days`. `marked_missed` holds codes a coordinator recorded as missed.
    """
    evaluation = _Evaluation(protocol, events, actuals, arm, as_of, horizon_days, frozenset(marked_missed))
    rows = evaluation.run()
    for code, actual in actuals.items():
        if protocol.resolve_visit_code(code) is None:
            rows.append(
                VisitOccurrence(
                    visit=code,
                    definition=code,
                    occurrence=1,
                    name="Unscheduled visit",
                    number=None,
                    target=None,
                    earliest=None,
                    latest=None,
                    actual=actual,
                    status=UNSCHEDULED,
                    days_outside=0,
                    study_day=study_day(actual, evaluation.day_one) if evaluation.day_one else None,
                )
            )
    rows.sort(key=_row_order)
    return rows


def _row_order(row: VisitOccurrence):
    when = row.target or row.actual
    return (when is None, when or date.min, row.number if row.number is not None else float("inf"), row.occurrence)
