"""Use cases that read schedules: a participant's schedule, a study's visits as the engine gives them, worklists
(SQL over the stored visits, with the as-of date as a parameter) and a site's schedule.

Each read runs on one connection (`protocols.reads`).
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from trialcoord.kernel.exporter import ListExporter
from trialcoord.kernel.problems import invalid
from trialcoord.scheduling import rows
from trialcoord.scheduling.participants import PARTICIPANT_SORTS, Subject, narrowed, sort_keys
from trialcoord.scheduling.protocols import protocol_of, reads, require_study
from trialcoord.scheduling.rules.schedule import (
    DUE,
    EARLY,
    LATE,
    MISSED,
    ON_TIME,
    PENDING,
    UNSCHEDULED,
    UPCOMING,
    VisitOccurrence,
)
from trialcoord.scheduling.schedules import ScheduledVisit, Versions, restated, scheduled
from trialcoord.scheduling.sites import study_with_site
from trialcoord.scheduling.store import NO_DAY, SortKey
from trialcoord.scheduling.store import inputs as inputs_store
from trialcoord.scheduling.store import participants as participants_store
from trialcoord.scheduling.store import studies as studies_store
from trialcoord.scheduling.store import visits as visits_store
from trialcoord.scheduling.store import window_exceptions as exceptions_store

WORKLISTS = ("today", "week", "overdue", "missed_or_out_of_window")


@reads
async def participant_schedule(study: str, subject_id: str, as_of: date) -> list[ScheduledVisit]:
    """The participant's visits evaluated as of `as_of`, with what is recorded about each and the approved
    extension of its window, if any."""
    subject = await Subject.load(study, subject_id, lock=False)
    versions = await Versions.load(subject.study_id)
    extended = await exceptions_store.extensions(subject.id)  # investigators' approved window extensions
    schedule = []
    for visit, version in await versions.judged(subject.inputs, as_of):
        row = subject.visits.get(visit.visit)
        label, extension = versions.label(version), extended.get(visit.visit)
        if row is None:
            schedule.append(ScheduledVisit(subject_id, subject.inputs.site, visit, label, extension=extension))
        else:
            schedule.append(scheduled(row, visit)._replace(protocol_version=label, extension=extension))
    return schedule


@reads
async def study_visits(
    study: str, as_of: date, site: str | None = None, statuses: Collection[str] | None = None, horizon_days: int = 0
) -> list[tuple[str, VisitOccurrence]]:
    """Exactly what `evaluate` gives for each participant as of `as_of`, by subject ID then visit order."""
    study_row = await study_with_site(study, site)
    versions = await Versions.load(study_row.id)
    inputs = await inputs_store.load_inputs(study_row.id, site=site)
    result = []
    for person in sorted(inputs.values(), key=lambda person: person.subject_id):
        for visit, _ in await versions.judged(person, as_of, horizon_days):
            if statuses is None or visit.status in statuses:
                result.append((person.subject_id, visit))
    return result


_OPEN = "x.actual IS NULL AND x.missed_reason IS NULL AND x.status <> 'not_applicable'"
_OVERLAPS = "x.target IS NOT NULL AND (x.earliest IS NULL OR x.earliest <= {}) AND (x.latest IS NULL OR x.latest >= {})"
_OVERDUE = f"{_OPEN} AND x.latest < {{}} AND NOT x.optional"
_WORKLISTS = {  # SQL over stored visits, and its arguments for an as-of date
    "today": (f"({_OPEN} AND {_OVERLAPS}) OR x.appointment = {{}}", lambda day: (day, day, day)),
    "week": (
        f"({_OPEN} AND {_OVERLAPS}) OR (x.actual IS NULL AND x.appointment BETWEEN {{}} AND {{}})",
        lambda day: (day + timedelta(days=6), day, day, day + timedelta(days=6)),
    ),
    "overdue": (_OVERDUE, lambda day: (day,)),
    "missed_or_out_of_window": (f"x.status IN ('missed', 'early', 'late') OR ({_OVERDUE})", lambda day: (day,)),
}


@reads
async def worklist(study: str, as_of: date, site: str | None = None, kind: str = "today") -> list[ScheduledVisit]:
    """Stored visits needing attention: 'today' (window open or booked today), 'week' (window overlaps the
    next 7 days), 'overdue' (window closed, not done, not marked missed), 'missed_or_out_of_window'."""
    if kind not in _WORKLISTS:
        raise invalid(f"'{kind}' is not a worklist; choose one of {', '.join(WORKLISTS)}", field="kind")
    condition, arguments = _WORKLISTS[kind]
    rows = await visits_store.worklist_rows(
        (await study_with_site(study, site)).id, condition, *arguments(as_of), site=site
    )
    return [scheduled(row, restated(row, as_of)) for row in rows]


def _day(*columns: str) -> SortKey:
    return SortKey(f"COALESCE({', '.join(columns)}, {NO_DAY})", "date")


_SUBJECT, _VISIT_ID, _WHEN = SortKey("p.subject_id"), SortKey("x.id", "int"), _day("x.target", "x.appointment")
# The worklist pages' orders, each ending in the visit's id (unique); a visit's date is its target, else its
# appointment (an unscheduled visit's), and a missing date sorts first. Not by status: a listed status is restated
# as of the day asked, which the stored rows do not hold.
WORKLIST_SORTS: dict[str, tuple[SortKey, ...]] = {
    "participant": (_SUBJECT, _WHEN, SortKey("x.code"), _VISIT_ID),
    "site": (SortKey("s.code"), _SUBJECT, _WHEN, _VISIT_ID),
    "visit": (SortKey("x.code"), _SUBJECT, _VISIT_ID),
    "target": (_day("x.target"), _SUBJECT, _VISIT_ID),
    "appointment": (_day("x.appointment"), _SUBJECT, _VISIT_ID),
    "actual": (_day("x.actual"), _SUBJECT, _VISIT_ID),
}
# The statuses the "missed or out of window" list is narrowed to (a window closed without the visit: missed).
OUT_OF_WINDOW = {
    "missed": (f"x.status = 'missed' OR ({_OVERDUE})", lambda day: (day,)),
    "early": ("x.status = 'early'", lambda day: ()),
    "late": ("x.status = 'late'", lambda day: ()),
}


@reads
async def worklist_page(
    study: str,
    as_of: date,
    kind: str = "today",
    site: str | None = None,
    within: Collection[str] | None = None,
    status: str | None = None,
    text: str | None = None,
    sort: str = "participant",
    descending: bool = False,
    after: Sequence[Any] | None = None,
    limit: int = 51,
) -> list[tuple[tuple[Any, ...], ScheduledVisit]]:
    """Up to `limit` visits of the worklist `kind` (see `worklist`) past `after`, the key of the last one shown, in
    the order `sort` (`WORKLIST_SORTS`): at `site`, among the sites `within` (None: every site), whose subject ID
    holds `text`; on the "missed or out of window" list, of one `status` (`OUT_OF_WINDOW`). Each with its key."""
    if kind not in _WORKLISTS:
        raise invalid(f"'{kind}' is not a worklist; choose one of {', '.join(WORKLISTS)}", field="kind")
    condition, arguments = _WORKLISTS[kind]
    args = list(arguments(as_of))
    if status:
        if kind != "missed_or_out_of_window" or status not in OUT_OF_WINDOW:
            raise invalid(
                f"'{status}' narrows only the missed or out of window list: {', '.join(OUT_OF_WINDOW)}", "status"
            )
        narrower, more = OUT_OF_WINDOW[status]
        condition, args = f"({condition}) AND ({narrower})", [*args, *more(as_of)]
    study_row = await study_with_site(study, site)
    rows = await visits_store.worklist_page(
        study_row.id,
        condition,
        args,
        narrowed(site, within),
        text,
        sort_keys(WORKLIST_SORTS, sort),
        descending,
        after,
        limit,
    )
    return [(key, scheduled(row, restated(row, as_of))) for key, row in rows]


@reads
async def site_schedule(study: str, site: str, as_of: date) -> Iterator[ScheduledVisit]:
    """Every stored visit of a site's participants, with appointments; statuses as of `as_of`. Read at once,
    made visit by visit as the caller takes them (hundreds of thousands at a large site: the caller may take them
    in a worker thread, off the event loop)."""
    study_row = await study_with_site(study, site)
    rows = await visits_store.worklist_rows(study_row.id, "x.status <> 'not_applicable'", site=site, stamped=True)
    return (scheduled(row, restated(row, as_of)) for row in rows)


@dataclass(frozen=True, slots=True)
class GridColumn:
    """A column of the visit grid: a visit definition of the study's protocol versions (a repeat's, such as
    C{n}D1, holds all its occurrences), or every unscheduled visit (`UNSCHEDULED_COLUMN`)."""

    definition: str
    name: str
    repeats: bool
    arm_limited: bool  # only some arms have it: its statuses would tell a participant's arm


@dataclass(frozen=True, slots=True)
class GridRow:
    """A participant's row of the visit grid: per column, each status its occurrences have and how many, the most
    pressing first (a visit done once: one status, once)."""

    subject_id: str
    site: str
    cells: dict[str, tuple[tuple[str, int], ...]]


UNSCHEDULED_COLUMN = "unscheduled"
GRID_SORTS = {name: PARTICIPANT_SORTS[name] for name in ("participant", "site")}
# Most pressing first: what a monitor looks for in a cell of several occurrences.
_PRESSING = {status: rank for rank, status in enumerate((MISSED, LATE, EARLY, DUE, UPCOMING, PENDING, ON_TIME))}


@reads
async def grid_columns(study: str) -> list[GridColumn]:
    """The visit definitions of every protocol version of the study, by visit number (the latest version's), then
    unscheduled visits."""
    versions = await studies_store.list_versions((await require_study(study)).id)
    found: dict[str, tuple[float, GridColumn]] = {}
    for row in versions:  # oldest first: a later version's number and name win
        for visit in (await protocol_of(row["id"], row["sha256"])).visits:
            limited = visit.arms is not None or (visit.code in found and found[visit.code][1].arm_limited)
            column = GridColumn(visit.code, visit.name, visit.repeat is not None, limited)
            found[visit.code] = (visit.number, column)
    ordered = [column for _, column in sorted(found.values(), key=lambda item: (item[0], item[1].definition))]
    return [*ordered, GridColumn(UNSCHEDULED_COLUMN, "Unscheduled visits", True, False)]


@reads
async def visit_grid(
    study: str,
    as_of: date,
    site: str | None = None,
    within: Collection[str] | None = None,
    text: str | None = None,
    sort: str = "participant",
    descending: bool = False,
    after: Sequence[Any] | None = None,
    limit: int = 51,
) -> list[tuple[tuple[Any, ...], GridRow]]:
    """Up to `limit` participants past `after` (a keyset page, as `participants_page`), each with its stored
    visits' statuses as of `as_of` by visit definition: two queries whatever the page's size."""
    study_row = await study_with_site(study, site)
    keys = sort_keys(GRID_SORTS, sort)
    page = await participants_store.participants_page(
        study_row.id, narrowed(site, within), None, text, keys, descending, after, limit
    )
    cells: dict[int, dict[str, dict[str, int]]] = {row["id"]: {} for _, row in page}
    for visit in await visits_store.visits_of(cells):
        column = UNSCHEDULED_COLUMN if visit.status == UNSCHEDULED else visit.definition
        counts = cells[visit.participant].setdefault(column, {})
        status = restated(visit, as_of).status
        counts[status] = counts.get(status, 0) + 1
    return [
        (key, GridRow(row["subject_id"], row["site"], {c: _pressing(n) for c, n in cells[row["id"]].items()}))
        for key, row in page
    ]


def _pressing(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda item: (_PRESSING.get(item[0], len(_PRESSING)), item[0])))


class VisitsListing(ListExporter):
    """A stored study's visits as the engine gives them as of a day (the command line's `visits`): one row per
    participant and visit, filtered by site and status."""

    identifier = "schedule"
    columns = ("participant", *rows.COLUMNS)
    forms = ("table", "json", "csv")

    def __init__(self, study: str, as_of: date, site: str | None, statuses: Collection[str] | None) -> None:
        scope = f"{study}/{site}" if site else study
        super().__init__(scope, {"as_of": as_of.isoformat(), "statuses": sorted(statuses or [])})
        self.study, self.as_of, self.site, self.statuses = study, as_of, site, statuses

    async def read(self, limit: int | None) -> list[tuple[str, VisitOccurrence]]:
        return await study_visits(self.study, self.as_of, site=self.site, statuses=self.statuses)

    async def render(self, pairs: Sequence[tuple[str, VisitOccurrence]], form: str) -> bytes:
        out = io.StringIO()
        rows.WRITERS[form](pairs, out, True)  # streamed by the writers: a study's visits can be many
        return out.getvalue().encode()
