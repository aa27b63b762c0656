"""A protocol version's Schedule of Activities as value objects (see docs/protocol-format.md).

Built by the protocol file adapter after validation; the schedule engine reads nothing else. A protocol
also carries the classification defaults of its `deviations:` section (DEFAULTS when it has none).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from trialcoord.kernel.rules.access import Blinding
from trialcoord.scheduling.rules.classification import DEFAULTS, ClassificationDefaults
from trialcoord.scheduling.rules.durations import Calendar, Duration

ACTUAL, PLANNED = "actual", "planned"
OCCURRENCE = "{n}"
CONSENT_EVENT_NAMES = ("consent", "informed_consent")  # the consent event when none is marked `consent: true`


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    ends_schedule: bool = False
    stops_collection: bool = False  # `collection: stops` (consent withdrawn): nothing may be done after it
    consent: bool = False  # the protocol's informed consent event (`consent: true`, or the event named consent)


@dataclass(frozen=True, slots=True)
class Arm:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Window:
    """Allowed dates are [target - early, target + late], both inclusive; None is unbounded."""

    early: Duration | None
    late: Duration | None


@dataclass(frozen=True, slots=True)
class Repeat:
    every: Duration
    count: int | None  # None: open-ended, until an ending event


@dataclass(frozen=True, slots=True)
class VisitDefinition:
    code: str  # may hold '{n}' when repeating
    name: str
    number: float
    reference_name: str  # 'from': an event name or an earlier visit's code
    offset: Duration
    window: Window
    reference: str = ACTUAL
    repeat: Repeat | None = None
    chain: str = ACTUAL
    arms: frozenset[str] | None = None
    when: str | None = None
    optional: bool = False
    procedures: tuple[str, ...] = ()
    after_end: bool = False  # `after_end: expected`: still expected after an ending event (safety follow-up)

    def code_for(self, occurrence: int) -> str:
        return self.code.replace(OCCURRENCE, str(occurrence))

    def name_for(self, occurrence: int) -> str:
        return self.name.replace(OCCURRENCE, str(occurrence))


@dataclass(frozen=True, slots=True)
class Protocol:
    study: str
    title: str
    version: str
    effective: date
    day_one: str
    events: dict[str, Event]
    visits: tuple[VisitDefinition, ...]
    arms: tuple[Arm, ...] = ()
    calendar: Calendar | None = None
    deviations: ClassificationDefaults = DEFAULTS  # `deviations:` over DEFAULTS
    blinding: Blinding = Blinding.OPEN  # `blinding:`; single or double hides the arm from who lacks view_allocation
    _code_patterns: tuple[tuple[re.Pattern[str], VisitDefinition], ...] = field(
        default=(), init=False, repr=False, compare=False
    )
    visits_by_code: dict[str, VisitDefinition] = field(default_factory=dict, init=False, repr=False, compare=False)
    compiled: object = field(default=None, init=False, repr=False, compare=False)  # the schedule engine's plan

    def __post_init__(self) -> None:
        patterns = []
        for visit in self.visits:
            if visit.repeat is not None:
                head, _, tail = visit.code.partition(OCCURRENCE)
                patterns.append((re.compile(f"^{re.escape(head)}([1-9][0-9]*){re.escape(tail)}$"), visit))
        object.__setattr__(self, "_code_patterns", tuple(patterns))
        object.__setattr__(self, "visits_by_code", {visit.code: visit for visit in self.visits})

    @property
    def stopping_events(self) -> frozenset[str]:
        """The events after which nothing is collected (`collection: stops`)."""
        return frozenset(name for name, event in self.events.items() if event.stops_collection)

    @property
    def consent_event(self) -> str | None:
        """The event that records informed consent: the one marked `consent: true`, else one named `consent`
        or `informed_consent`; None when the protocol has none."""
        marked = [event.name for event in self.events.values() if event.consent]
        if marked:
            return marked[0]
        return next((name for name in CONSENT_EVENT_NAMES if name in self.events), None)

    @property
    def arm_codes(self) -> frozenset[str]:
        return frozenset(arm.code for arm in self.arms)

    def resolve_visit_code(self, code: str) -> tuple[VisitDefinition, int] | None:
        """Map a recorded visit code (`V2`, or an expanded repeat such as `C3D1`) to its definition."""
        visit = self.visits_by_code.get(code)
        if visit is not None and visit.repeat is None:
            return visit, 1
        for pattern, visit in self._code_patterns:
            match = pattern.match(code)
            if match:
                occurrence = int(match.group(1))
                count = visit.repeat.count if visit.repeat is not None else None  # patterns are repeats'
                if count is None or occurrence <= count:
                    return visit, occurrence
        return None


def renumbered(earlier: Iterable[Protocol], new: Protocol) -> list[str]:
    """How `new` would give a visit another number than an earlier version, or a number another visit has had
    (visit codes keep their meaning across versions, and VISITNUM with them): one line each, empty if none."""
    numbers: dict[str, tuple[float, str]] = {}  # code -> (number, version), and number -> (code, version)
    owners: dict[float, tuple[str, str]] = {}
    for version in earlier:
        for visit in version.visits:
            numbers.setdefault(visit.code, (visit.number, version.version))
            owners.setdefault(visit.number, (visit.code, version.version))
    problems = []
    for visit in new.visits:
        had = numbers.get(visit.code)
        owner = owners.get(visit.number)
        if had is not None and had[0] != visit.number:
            problems.append(
                f"visit {visit.code} has number {visit.number:g} here but {had[0]:g} in version {had[1]};"
                " visit numbers never change across versions"
            )
        elif had is None and owner is not None and owner[0] != visit.code:
            problems.append(
                f"visit {visit.code} takes number {visit.number:g}, which is {owner[0]}'s in version"
                f" {owner[1]}; give {visit.code} a number of its own (`number:`)"
            )
    return problems
