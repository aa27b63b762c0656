"""Stored visits: each occurrence as last evaluated, with what coordinators recorded on it; read one by one, by
participant or as a worklist (SQL over the windows), updated, and saved from the engine's evaluations in bulk."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from piccolo.columns import Column

from trialcoord.kernel.database.engine import execute_many, fetch_rows
from trialcoord.kernel.database.tables import Visit
from trialcoord.scheduling.rules.schedule import VisitOccurrence
from trialcoord.scheduling.store import SortKey, among, contains, keyset_page, now, select_in
from trialcoord.scheduling.store.inputs import ScheduleInputs

_EVALUATED = (
    "definition",
    "occurrence",
    "name",
    "number",
    "target",
    "earliest",
    "latest",
    "actual",
    "status",
    "days_outside",
    "study_day",
    "optional",
)
OCCURRENCE_FIELDS = ("visit", *_EVALUATED)


class StoredVisit(NamedTuple):
    """A stored visit: the occurrence's fields as last evaluated (the first 13, in `VisitOccurrence`'s
    order), then its participant's and protocol version's codes and what coordinators recorded."""

    visit: str
    definition: str
    occurrence: int
    name: str
    number: float | None
    target: date | None
    earliest: date | None
    latest: date | None
    actual: date | None
    status: str
    days_outside: int
    study_day: int | None
    optional: bool
    subject_id: str
    site: str
    version: str  # the label of the protocol version it was evaluated under
    appointment: date | None
    appointment_reason: str | None
    actual_reason: str | None
    missed_reason: str | None
    row_version: int
    id: int
    participant: int
    protocol_version: int  # that version's id
    updated_at: datetime | None  # when the row last changed (None where a bulk read leaves it out)

    @property
    def evaluation(self) -> VisitOccurrence:
        return _occurrence(VisitOccurrence, self[:_OCCURRENCE_WIDTH])


_OCCURRENCE_WIDTH = len(OCCURRENCE_FIELDS)
_occurrence = tuple.__new__  # positional, without NamedTuple's keyword wrapper (one per worklist row)
_CODE, _SUBJECT, _TARGET, _APPOINTMENT, _ID, _PARTICIPANT = (  # for driver rows in StoredVisit's order
    StoredVisit._fields.index(name) for name in ("visit", "subject_id", "target", "appointment", "id", "participant")
)


def _select_visits(labels: str, tables: str, updated: str = "x.updated_at") -> str:
    """StoredVisit's columns in its order; only these, as each more costs a conversion per row (bulk reads leave
    `updated_at` out: `updated` NULL)."""
    return (
        f"SELECT x.code, {', '.join(f'x.{name}' for name in _EVALUATED)}, {labels}, x.appointment,"
        " x.appointment_reason, x.actual_reason, x.missed_reason, x.row_version, x.id, x.participant,"
        f" x.protocol_version, {updated} FROM {tables}"
    )


_LABELLED = (
    "visits x JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site"
    " JOIN protocol_versions pv ON pv.id = x.protocol_version"
)
_VISITS = _select_visits("p.subject_id, s.code, pv.version", _LABELLED)
_BULK_VISITS = _select_visits("p.subject_id, s.code, pv.version", _LABELLED, "NULL")
_UNLABELLED_VISITS = _select_visits("NULL, NULL, NULL", "visits x", "NULL")  # no joins: subject_id, site, version None
_WATCHED = ("target", "earliest", "latest", "actual")  # a change here bumps row_version


def occurrence_fields(visit: VisitOccurrence) -> dict[str, Any]:
    """The occurrence's fields by name (works whatever kind of record the domain uses)."""
    return {name: getattr(visit, name) for name in OCCURRENCE_FIELDS}


_NUMBER = _EVALUATED.index("number")
if VisitOccurrence._fields[1:] != _EVALUATED:  # an occurrence's values are a slice of it (hot path): keep the order
    raise RuntimeError("VisitOccurrence's fields changed order; update repositories._EVALUATED to match")


def _evaluated_values(visit: VisitOccurrence) -> tuple[Any, ...]:
    values: tuple[Any, ...] = visit[1:]
    number = values[_NUMBER]
    if number is not None and type(number) is not float:  # asyncpg encodes DOUBLE PRECISION from floats only
        values = (*values[:_NUMBER], float(number), *values[_NUMBER + 1 :])
    return values


async def find_visit(participant_id: int, code: str) -> StoredVisit | None:
    rows = await _visit_rows("x.participant = {} AND x.code = {}", participant_id, code)
    return rows[0] if rows else None


async def participant_visits(participant_id: int) -> dict[str, StoredVisit]:
    return {row.visit: row for row in await _visit_rows("x.participant = {}", participant_id)}


async def worklist_rows(
    study_id: int, condition: str, *args: Any, site: str | None = None, stamped: bool = False
) -> Iterator[StoredVisit]:
    """Stored visits of a study matching `condition` (SQL over the alias `x`), by subject and date; with when
    each last changed if `stamped` (a calendar feed's LAST-MODIFIED).

    Each is built as the caller takes it: a worklist has tens of thousands, and a NamedTuple, unlike the
    driver's plain tuple, stays tracked by the garbage collector, whose passes over them cost as much as
    building them.
    """
    where, values = f"p.study = {{}} AND ({condition})", [study_id, *args]
    if site is not None:
        where, values = f"{where} AND s.code = {{}}", [*values, site]
    return _in_order(await fetch_rows(f"{_VISITS if stamped else _BULK_VISITS} WHERE {where}", *values))


def _in_order(rows: list[Sequence[Any]]) -> Iterator[StoredVisit]:
    """Sorted when first taken, not when read: a large site's feed takes its rows in a worker thread."""
    yield from map(StoredVisit._make, sorted(rows, key=_worklist_order))


async def worklist_page(
    study_id: int,
    condition: str,
    args: Sequence[Any],
    sites: Collection[str] | None,
    text: str | None,
    keys: Sequence[SortKey],
    descending: bool,
    after: Sequence[Any] | None,
    size: int,
) -> list[tuple[tuple[Any, ...], StoredVisit]]:
    """A keyset page of the stored visits of a study matching `condition` (as `worklist_rows`), at `sites` (None:
    every site) whose subject ID holds `text`; each with its key (see `keyset_page`)."""
    where, values = f"p.study = {{}} AND ({condition})", [study_id, *args]
    at, codes = among("s.code", sites)
    where, values = f"{where} AND {at}", [*values, *codes]
    if text:
        holds, pattern = contains("p.subject_id", text)
        where, values = f"{where} AND {holds}", [*values, pattern]
    rows = await keyset_page(_VISITS, where, values, keys, descending, after, size)
    return [(key, StoredVisit._make(raw)) for key, raw in rows]


async def visits_of(participant_ids: Iterable[int]) -> list[StoredVisit]:
    """The stored visits of the participants, in no order."""
    return list(
        map(StoredVisit._make, await select_in(f"{_BULK_VISITS} WHERE x.participant IN ({{}})", participant_ids))
    )


def _worklist_order(row: Sequence[Any]) -> tuple:
    """By subject, date, code; in Python, so that the order is the same whatever the database's collation."""
    return row[_SUBJECT], row[_TARGET] or row[_APPOINTMENT] or date.min, row[_CODE]


async def update_visit(visit_id: int, bump: bool = True, **values: Any) -> None:
    changes: dict[Column | str, Any] = {name: value for name, value in values.items()}
    changes[Visit.updated_at] = now()
    if bump:
        changes[Visit.row_version] = Visit.row_version + 1
    await Visit.update(changes).where(Visit._meta.primary_key == visit_id)


@dataclass(frozen=True, slots=True)
class Saved:
    inserted: int
    updated: int
    deleted: int


async def save_evaluations(
    results: Iterable[tuple[ScheduleInputs, list[tuple[VisitOccurrence, int]]]],
    evaluated_on: date,
    horizon: date | None = None,
) -> Saved:
    """Store each participant's evaluated visits, each with the id of the protocol version that judged it:
    insert new codes, update changed rows, delete rows the evaluation no longer produces unless a coordinator
    recorded something on them. A row whose values did not change is not written, so it keeps the
    `evaluated_on` of the evaluation that produced it. `horizon`: the last day the schedules now list.
    """
    results = list(results)
    # Driver rows, each made a StoredVisit only when compared (see worklist_rows); unlabelled, as the joins
    # would cost more than the comparison.
    stored: dict[int, dict[str, Sequence[Any]]] = {inputs.id: {} for inputs, _ in results}
    for raw in await select_in(f"{_UNLABELLED_VISITS} WHERE x.participant IN ({{}})", stored):
        stored[raw[_PARTICIPANT]][raw[_CODE]] = raw
    inserts, updates, deletes = [], [], []
    changed_at = now()  # the server's clock, as `update_visit`'s: a calendar feed's LAST-MODIFIED compares them
    for inputs, visits in results:
        rows = stored[inputs.id]
        for visit, version in visits:
            raw = rows.pop(visit.visit, None)
            if raw is None:
                inserts.append((inputs.id, visit.visit, *_evaluated_values(visit), version, evaluated_on))
                continue
            row = StoredVisit._make(raw)
            values = _evaluated_values(visit)
            if version != row.protocol_version or values != row[1:_OCCURRENCE_WIDTH]:
                bump = any(getattr(row, name) != getattr(visit, name) for name in _WATCHED)
                updates.append((*values, version, evaluated_on, row.row_version + bump, changed_at, row.id))
        deletes += [(raw[_ID],) for raw in rows.values() if not _has_recorded_facts(StoredVisit._make(raw))]
    await execute_many("DELETE FROM visits WHERE id = {}", deletes)
    await execute_many(
        f"UPDATE visits SET {', '.join(f'{name} = {{}}' for name in _EVALUATED)}, protocol_version = {{}},"
        " evaluated_on = {}, row_version = {}, updated_at = {} WHERE id = {}",
        updates,
    )
    await execute_many(  # created_at and updated_at take their defaults
        f"INSERT INTO visits (participant, code, {', '.join(_EVALUATED)}, protocol_version, evaluated_on,"
        f" row_version) VALUES ({', '.join(['{}'] * (len(_EVALUATED) + 4))}, 1)",
        inserts,
    )
    if horizon is not None:
        await execute_many(
            "UPDATE participants SET schedule_horizon = {} WHERE id = {}",
            [(horizon, inputs.id) for inputs, _ in results if inputs.horizon != horizon],
        )
        for inputs, _ in results:
            inputs.horizon = horizon
    return Saved(len(inserts), len(updates), len(deletes))


def _has_recorded_facts(row: StoredVisit) -> bool:
    return row.actual is not None or row.appointment is not None or row.missed_reason is not None


async def _visit_rows(where: str, *args: Any) -> list[StoredVisit]:
    return list(map(StoredVisit._make, await fetch_rows(f"{_VISITS} WHERE {where}", *args)))
