"""Schedule engine: a participant's recorded events and actual visits -> every visit occurrence.

Kept whole past the project's ~400 lines: the compiled per-visit plans, the evaluation loop over them and the
judging of visits across protocol versions call each other (`evaluate` with `changes` is `evaluate_judged`,
which evaluates each version), and they are the hot path every worklist, import and check runs through.

Pure and deterministic: the as-of date is an argument, never the clock. Semantics and statuses are
those of docs/protocol-format.md. A protocol is compiled once into per-visit plans (durations in
calendar days become timedeltas) so that evaluating a participant is little more than date arithmetic.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, timedelta
from typing import NamedTuple

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.rules.durations import DAYS, Calendar, Duration
from trialcoord.scheduling.rules.protocol import ACTUAL, Protocol, VisitDefinition

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

_OUT_OF_RANGE = (
    "a visit date computed from these dates falls outside the years 1 to 9999; check the recorded dates"
    " against protocol {protocol.study} version {protocol.version}"
)

# Safety stop for open-ended repeats whose reference never moves past the horizon.
MAX_OCCURRENCES = 1000


class VisitOccurrence(NamedTuple):
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


_new_row = tuple.__new__  # positional construction without NamedTuple's keyword wrapper (hot path)


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


class _Shift:
    """A duration applied to dates: a timedelta when it counts calendar days, else the general rule."""

    __slots__ = ("duration", "delta", "calendar", "sign")

    def __init__(self, duration: Duration, calendar: Calendar | None, sign: int = 1) -> None:
        self.duration, self.calendar, self.sign = duration, calendar, sign
        self.delta = timedelta(days=duration.amount * sign) if duration.unit == DAYS else None

    def __call__(self, day: date) -> date:
        if self.delta is not None:
            return day + self.delta
        return self.duration.add_to(day, self.calendar, self.sign)


class _VisitPlan:
    """One visit definition, compiled: everything that does not depend on the participant."""

    __slots__ = (
        "visit",
        "code",
        "name",
        "number",
        "optional",
        "reference_name",
        "reference_is_event",
        "use_actual",
        "offset",
        "early",
        "late",
        "early_delta",
        "late_delta",
        "arms",
        "when",
        "repeat",
        "every",
        "chain_actual",
        "anchor_event",
        "count",
        "conditional",
        "referenced",
        "after_end",
    )

    def __init__(self, visit: VisitDefinition, protocol: Protocol):
        calendar = protocol.calendar
        self.visit, self.code, self.name = visit, visit.code, visit.name
        self.number, self.optional = visit.number, visit.optional
        self.reference_name = visit.reference_name
        self.reference_is_event = visit.reference_name in protocol.events
        self.use_actual = visit.reference == ACTUAL
        self.offset = _Shift(visit.offset, calendar)
        self.early = _Shift(visit.window.early, calendar, -1) if visit.window.early is not None else None
        self.late = _Shift(visit.window.late, calendar) if visit.window.late is not None else None
        self.early_delta = self.early.delta if self.early is not None else None
        self.late_delta = self.late.delta if self.late is not None else None
        self.arms, self.when, self.repeat = visit.arms, visit.when, visit.repeat
        self.conditional = visit.arms is not None or visit.when is not None
        self.every = _Shift(visit.repeat.every, calendar) if visit.repeat is not None else None
        self.count = visit.repeat.count if visit.repeat is not None else None
        self.chain_actual = visit.chain == ACTUAL
        self.anchor_event = _anchor_event(visit, protocol)
        self.referenced = any(other.reference_name == visit.code for other in protocol.visits)
        self.after_end = visit.after_end

    def survives(self, event: str, stops_collection: bool) -> bool:
        """Whether the visit is still expected after this ending event: never once collection stops; else when
        it is marked `after_end: expected`, or counted from (or conditional on) that very event."""
        if stops_collection:
            return False
        return self.after_end or event == self.anchor_event or event == self.when


def _anchor_event(visit: VisitDefinition, protocol: Protocol) -> str:
    """The event a chain of `from` references finally rests on."""
    name, seen = visit.reference_name, set()
    while name in protocol.visits_by_code and name not in seen:
        seen.add(name)
        name = protocol.visits_by_code[name].reference_name
    return name


class _Plan:
    __slots__ = ("visits", "ending_events")

    def __init__(self, protocol: Protocol):
        self.visits = tuple(_VisitPlan(v, protocol) for v in protocol.visits)
        self.ending_events = tuple(
            sorted((e.name, e.stops_collection) for e in protocol.events.values() if e.ends_schedule)
        )


def _plan(protocol: Protocol) -> _Plan:
    plan = protocol.compiled
    if not isinstance(plan, _Plan):  # not compiled yet (None)
        plan = _Plan(protocol)
        object.__setattr__(protocol, "compiled", plan)
    return plan


class _Participant:
    """The per-participant state of one evaluation."""

    __slots__ = (
        "protocol",
        "plan",
        "events",
        "actuals",
        "arm",
        "as_of",
        "horizon",
        "day_one",
        "endings",
        "marked_missed",
        "references",
        "rows",
        "last_target",
        "in_order",
    )

    def __init__(
        self,
        protocol: Protocol,
        events: Mapping[str, date],
        actuals: Mapping[str, date],
        arm: str | None,
        as_of: date,
        horizon_days: int,
        marked_missed: Collection[str],
    ) -> None:
        self.protocol, self.plan = protocol, _plan(protocol)
        self.events, self.actuals, self.arm, self.as_of = events, actuals, arm, as_of
        self.horizon = as_of + timedelta(days=horizon_days)
        self.marked_missed = marked_missed
        self.day_one = events.get(protocol.day_one)
        # The ending events recorded, earliest first: (date, name, stops collection).
        self.endings: list[tuple[date, str, bool]] = sorted(
            (events[name], name, stops) for name, stops in self.plan.ending_events if name in events
        )
        self.references: dict[str, tuple[date | None, date | None]] = {}  # code -> (target, actual)
        self.rows: list[VisitOccurrence] = []
        self.last_target: date | None = None
        self.in_order = True

    def end_of(self, plan: _VisitPlan) -> date | None:
        """The date of the first recorded ending event this visit does not survive."""
        for day, name, stops in self.endings:
            if not plan.survives(name, stops):
                return day
        return None

    def reference_date(self, plan: _VisitPlan) -> date | None:
        """The date a visit counts from when its `from` is another visit."""
        target, actual = self.references.get(plan.reference_name, (None, None))
        if plan.use_actual and actual is not None:
            return actual
        return target  # planned reference, or a reference visit not (yet) done: count from its target

    def override(self, plan: _VisitPlan) -> str | None:
        """Arm and condition rules decide before any date does."""
        if plan.arms is not None:
            if self.arm is None:
                return PENDING
            if self.arm not in plan.arms:
                return NOT_APPLICABLE
        if plan.when is not None and plan.when not in self.events:
            return NOT_APPLICABLE
        return None

    def add(
        self,
        plan: _VisitPlan,
        occurrence: int,
        code: str,
        name: str,
        target: date | None,
        override: str | None,
        end_date: date | None,
    ) -> tuple[date | None, bool]:
        # The hot path of the whole product: locals and one inlined status rule instead of calls.
        actual = self.actuals.get(code) if self.actuals else None
        earliest = latest = day = None
        outside = 0
        if target is not None:
            delta = plan.early_delta
            earliest = target + delta if delta is not None else (plan.early(target) if plan.early else None)
            delta = plan.late_delta
            latest = target + delta if delta is not None else (plan.late(target) if plan.late else None)
            if self.day_one is not None:
                day = (target - self.day_one).days
                if day >= 0:
                    day += 1
        closed = False  # by an arm or condition, or by the end of the schedule: later occurrences are too
        if override is not None:
            status, closed = override, override == NOT_APPLICABLE
        elif end_date is not None and (target is None or (actual is None and (earliest or target) > end_date)):
            status, closed = NOT_APPLICABLE, True  # the schedule ended before this window opens
        elif actual is None and self.marked_missed and code in self.marked_missed:
            status = MISSED  # a coordinator recorded that it will not take place
        else:
            status, outside = classify(target, earliest, latest, actual, self.as_of, plan.optional)
        self.rows.append(
            _new_row(
                VisitOccurrence,
                (
                    code,
                    plan.code,
                    occurrence,
                    name,
                    plan.number,
                    target,
                    earliest,
                    latest,
                    actual,
                    status,
                    outside,
                    day,
                    plan.optional,
                ),
            )
        )
        if plan.referenced:
            self.references[code] = (target, actual)
        if target is None or (self.last_target is not None and target <= self.last_target):
            self.in_order = False  # rows are sorted afterwards only when added out of target order
        self.last_target = target
        return actual, closed

    def run(self) -> list[VisitOccurrence]:
        endings = self.endings
        for plan in self.plan.visits:
            override = self.override(plan) if plan.conditional else None
            if plan.reference_is_event:
                start = self.events.get(plan.reference_name)
            else:
                start = self.reference_date(plan)
            if start is None:
                target = None
            else:
                delta = plan.offset.delta
                target = start + delta if delta is not None else plan.offset(start)
            end_date = self.end_of(plan) if endings else None
            if plan.repeat is None:
                self.add(plan, 1, plan.code, plan.name, target, override, end_date)
            else:
                self.repeat(plan, target, override, end_date)
        return self.rows

    def repeat(self, plan: _VisitPlan, target: date | None, override: str | None, end_date: date | None) -> None:
        last_recorded = self.last_recorded_occurrence(plan)
        occurrence = 1
        while True:
            visit = plan.visit
            actual, closed = self.add(
                plan, occurrence, visit.code_for(occurrence), visit.name_for(occurrence), target, override, end_date
            )
            if plan.count is not None:
                if occurrence >= plan.count:
                    return
            elif occurrence >= last_recorded and (
                target is None or closed or target > self.horizon or occurrence >= MAX_OCCURRENCES
            ):
                return  # open-ended: stop at the first occurrence past the horizon, or once ended
                # (an optional occurrence whose window closed undone is not an end: the next one follows)
            if target is not None and plan.every is not None:  # a repeat always has its step
                target = plan.every(actual if (plan.chain_actual and actual is not None) else target)
            occurrence += 1

    def last_recorded_occurrence(self, plan: _VisitPlan) -> int:
        """Occurrences already recorded are always listed, even past the horizon."""
        highest = 0
        for code in self.actuals:
            resolved = self.protocol.resolve_visit_code(code)
            if resolved is not None and resolved[0] is plan.visit:
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
    changes: Sequence[tuple[date, Protocol]] = (),
) -> list[VisitOccurrence]:
    """Every visit occurrence of one participant as of a date, ordered by target date.

    `events` maps event names to recorded dates; `actuals` maps visit codes (expanded for repeats,
    such as `C3D1`) to actual dates. Codes the protocol does not define are unscheduled visits.
    Open-ended repeats are listed up to the first occurrence whose target lies past
    `as_of + horizon_days`. `marked_missed` holds codes a coordinator recorded as missed.
    `changes`: the participant's moves to other protocol versions, (effective date, version), in order;
    `protocol` is the version followed before the first (see `evaluate_judged`).
    """
    if changes:
        return [
            row
            for row, _ in evaluate_judged(protocol, events, actuals, as_of, arm, horizon_days, marked_missed, changes)
        ]
    try:
        participant = _Participant(protocol, events, actuals, arm, as_of, horizon_days, marked_missed)
        rows = participant.run()
    except OverflowError:
        raise InvalidInput([Problem(_OUT_OF_RANGE.format(protocol=protocol), field="date")]) from None
    if actuals:
        _add_unscheduled(protocol, participant, rows)
    if not participant.in_order:
        rows.sort(key=_row_order)
    return rows


def evaluate_judged(
    protocol: Protocol,
    events: Mapping[str, date],
    actuals: Mapping[str, date],
    as_of: date,
    arm: str | None = None,
    horizon_days: int = 0,
    marked_missed: Collection[str] = (),
    changes: Sequence[tuple[date, Protocol]] = (),
) -> list[tuple[VisitOccurrence, int]]:
    """`evaluate` across protocol versions: each occurrence with the version that judges it (0 for `protocol`,
    i for the i-th change).

    The version in force for the participant on the day a visit was done judges it; a visit not done is judged
    by the version in force on the day its window closes, read from the window the visit had until then (the
    earlier version's, when it defined the visit). So a visit a new version adds is expected only if its
    window closes on or after the change, and one it removes is not applicable from the change date unless
    it was done, or its window had closed, before. An occurrence of a repeat that a later version lists only
    past the horizon (a longer interval) is left out while still open at the change, and stays as judged when
    it was done or closed before.
    """
    history = ((date.min, protocol), *changes)
    evaluations = [
        evaluate(version, events, actuals, as_of, arm, horizon_days, marked_missed) for _, version in history
    ]
    return judge(history, evaluations)


def judge(
    history: Sequence[tuple[date, Protocol]], evaluations: Sequence[Sequence[VisitOccurrence]]
) -> list[tuple[VisitOccurrence, int]]:
    """Which version judges each visit (the rule of `evaluate_judged`), given the participant's evaluation
    under each version of `history` ((in force from, version), oldest first; the first one's date unused)."""
    evaluated = [{row.visit: row for row in rows} for rows in evaluations]
    codes = dict.fromkeys(evaluated[0])  # every code, in first-listed order
    for rows in evaluated[1:]:
        codes.update(dict.fromkeys(rows))
    later = list(zip(range(1, len(history)), history[1:], evaluated[1:]))
    first_version, first_rows = history[0][1], evaluated[0]
    judged = []
    for code in codes:
        row = first_rows.get(code)
        # a row of its own schedule answers without the code lookup (only unscheduled rows are undefined)
        defines = row.status != UNSCHEDULED if row is not None else first_version.resolve_visit_code(code) is not None
        chosen: tuple[int, VisitOccurrence] | None = (0, row) if row is not None else None
        latest_defined: tuple[int, VisitOccurrence] | None = (0, row) if defines and row is not None else None
        dropped = False
        for index, (start, version), rows in later:
            row = rows.get(code)
            defines = row.status != UNSCHEDULED if row is not None else version.resolve_visit_code(code) is not None
            if defines and row is None:  # an occurrence this version lists only past the horizon
                if dropped or (
                    chosen is not None
                    and chosen[1].actual is None
                    and chosen[1].status != UNSCHEDULED
                    and (chosen[1].latest is None or chosen[1].latest >= start)
                ):
                    chosen, dropped = None, True  # still open at the change: not (yet) one of this version's
                continue  # done, or closed before the change: judged as it was
            if defines and row is not None:  # (a defining version without a row went on above)
                latest_defined = index, row
            if not dropped:  # else far off under the version in force until this one: open when this one began
                basis = chosen[1] if chosen is not None and chosen[1].status != UNSCHEDULED else row
                if basis is None:
                    continue
                decisive = basis.actual if basis.actual is not None else basis.latest  # still open on `start`?
                if decisive is not None and decisive < start:
                    continue
            elif row is None:
                continue  # removed by this version before it was ever listed
            dropped = False
            if row is None:
                if basis is not None:  # always: not dropped, so `basis` was found above
                    chosen = index, _not_applicable(basis)  # removed by this version while still open
            elif row.actual is None and row.latest is not None and row.latest < start:
                # open until this version took effect, whose own window for it had closed by then: this version
                # never expected it while in force (as for a visit it adds after its window), so not missed
                chosen = index, _not_applicable(row)
            else:
                chosen = index, row  # its own row; an unscheduled one when done under a version that lacks it
        if chosen is None and latest_defined is not None and not dropped:  # added after its window had closed
            chosen = latest_defined[0], _not_applicable(latest_defined[1])
        if chosen is not None:
            judged.append((chosen[1], chosen[0]))
    judged.sort(key=lambda pair: _row_order(pair[0]))
    return judged


def _not_applicable(row: VisitOccurrence) -> VisitOccurrence:
    return row._replace(status=NOT_APPLICABLE, days_outside=0)


def _add_unscheduled(protocol: Protocol, participant: _Participant, rows: list[VisitOccurrence]) -> None:
    for code, actual in participant.actuals.items():
        if protocol.resolve_visit_code(code) is not None:
            continue
        day = study_day(actual, participant.day_one) if participant.day_one else None
        rows.append(
            VisitOccurrence(code, code, 1, "Unscheduled visit", None, None, None, None, actual, UNSCHEDULED, 0, day)
        )
        participant.in_order = False


_FAR = date.max


def _row_order(row: VisitOccurrence) -> tuple[date, float, int]:
    when = row[5] or row[8] or _FAR
    number = row[4]
    return (when, number if number is not None else float("inf"), row[2])
