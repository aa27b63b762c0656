"""Rows <-> domain objects. Simple CRUD goes through piccolo tables; bulk paths through plain SQL.

Writes run inside the caller's `transaction()`; nothing here commits. Lists of text keys are
sorted in Python, so the order is the same on every engine whatever the database's collation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from trialcoord.kernel.database.engine import execute_many, fetch, fetch_rows, is_sqlite
from trialcoord.kernel.database.tables import (
    Participant,
    ProtocolVersion,
    Site,
    Study,
    Visit,
)
from trialcoord.scheduling.calendars import Closure
from trialcoord.scheduling.rules.schedule import VisitOccurrence

VERSION_FIELDS = (
    ProtocolVersion.id,
    ProtocolVersion.version,
    ProtocolVersion.effective,
    ProtocolVersion.source_name,
    ProtocolVersion.sha256,
    ProtocolVersion.loaded_at,
)


def now() -> datetime:
    return datetime.now(UTC)


# Studies, protocol versions, sites ------------------------------------------------------------


async def find_study(code: str) -> dict | None:
    return await Study.select().where(Study.code == code).first()


async def list_studies() -> list[dict]:
    return sorted(await Study.select(), key=lambda row: row["code"])


async def insert_study(code: str, title: str) -> dict:
    stamp = now()
    await Study.insert(Study(code=code, title=title, created_at=stamp, updated_at=stamp))
    return await find_study(code)


async def list_versions(study_id: int) -> list[dict]:
    """Oldest first: by effective date, then by loading order."""
    query = ProtocolVersion.select(*VERSION_FIELDS).where(ProtocolVersion.study == study_id)
    return await query.order_by(ProtocolVersion.effective).order_by(ProtocolVersion.id)


async def find_version(study_id: int, version: str) -> dict | None:
    query = ProtocolVersion.select(*VERSION_FIELDS, ProtocolVersion.source_text)
    return await query.where((ProtocolVersion.study == study_id) & (ProtocolVersion.version == version)).first()


async def version_source(version_id: int) -> dict:
    """The version's source_text and source_name."""
    query = ProtocolVersion.select(ProtocolVersion.source_text, ProtocolVersion.source_name)
    return await query.where(ProtocolVersion.id == version_id).first()


async def insert_version(
    study_id: int, version: str, effective: date, source_name: str, source_text: str, sha256: str
) -> dict:
    row = ProtocolVersion(
        study=study_id,
        version=version,
        effective=effective,
        source_name=source_name,
        source_text=source_text,
        sha256=sha256,
        loaded_at=now(),
    )
    await ProtocolVersion.insert(row)
    return await find_version(study_id, version)


async def find_site(study_id: int, code: str) -> dict | None:
    return await Site.select().where((Site.study == study_id) & (Site.code == code)).first()


async def list_sites(study_id: int) -> list[dict]:
    return sorted(await Site.select().where(Site.study == study_id), key=lambda row: row["code"])


async def insert_site(study_id: int, code: str, name: str, time_zone: str, calendar: str | None) -> dict:
    stamp = now()
    await Site.insert(
        Site(
            study=study_id,
            code=code,
            name=name,
            time_zone=time_zone,
            calendar=calendar,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    return await find_site(study_id, code)


async def update_site(site_id: int, **values: Any) -> None:
    await Site.update({**values, Site.updated_at: now()}).where(Site.id == site_id)


async def site_calendars(study_id: int) -> dict[str, tuple[str | None, tuple[Closure, ...]]]:
    """(calendar name, closures) of each site of the study that has either."""
    found: dict[str, tuple[str | None, tuple[Closure, ...]]] = {}
    for code, name in await fetch_rows("SELECT code, calendar FROM sites WHERE study = {}", study_id):
        if name:
            found[code] = (name, ())
    for code, first, last, reason in await fetch_rows(
        "SELECT s.code, c.first_day, c.last_day, c.reason FROM site_closures c JOIN sites s ON s.id = c.site"
        " WHERE s.study = {} ORDER BY c.first_day, c.id",
        study_id,
    ):
        name, closures = found.get(code, (None, ()))
        found[code] = (name, (*closures, Closure(_date(first), _date(last), reason)))
    return found


async def insert_closure(site_id: int, first_day: date, last_day: date, reason: str) -> None:
    await fetch(
        "INSERT INTO site_closures (site, first_day, last_day, reason) VALUES ({}, {}, {}, {})",
        site_id,
        first_day,
        last_day,
        reason,
    )


async def delete_closure(site_id: int, first_day: date) -> None:
    await fetch("DELETE FROM site_closures WHERE site = {} AND first_day = {}", site_id, first_day)


# Participants --------------------------------------------------------------------------------

_PARTICIPANTS = """SELECT p.id, p.subject_id, p.arm, p.status, p.enrolled_on, p.protocol_version,
    pv.version, s.code AS site FROM participants p
    JOIN sites s ON s.id = p.site JOIN protocol_versions pv ON pv.id = p.protocol_version"""


async def find_subject(study: str, subject_id: str) -> dict | None:
    """A participant by codes, with its study's id, site code, protocol version (label and sha256) and
    recorded `events` (name -> date), in one query (a row per event): None when the study does not exist,
    `id` None when it has no such participant."""
    rows = await fetch(
        "SELECT st.id AS study_id, p.id, p.subject_id, p.arm, p.status, p.enrolled_on, p.protocol_version,"
        " p.schedule_horizon, pv.version, pv.sha256, s.code AS site, e.event, e.date FROM studies st"
        " LEFT JOIN participants p ON p.study = st.id AND p.subject_id = {}"
        " LEFT JOIN sites s ON s.id = p.site LEFT JOIN protocol_versions pv ON pv.id = p.protocol_version"
        " LEFT JOIN recorded_events e ON e.participant = p.id WHERE st.code = {}",
        subject_id,
        study,
    )
    if not rows:
        return None
    subject = rows[0]
    subject["events"] = {row["event"]: row["date"] for row in rows if row["event"] is not None}
    del subject["event"], subject["date"]
    return subject


async def site_of_subject(study: str, subject_id: str) -> str | None:
    rows = await fetch(
        "SELECT s.code FROM participants p JOIN studies st ON st.id = p.study"
        " JOIN sites s ON s.id = p.site WHERE st.code = {} AND p.subject_id = {}",
        study,
        subject_id,
    )
    return rows[0]["code"] if rows else None


async def list_participants(study_id: int, site: str | None = None) -> list[dict]:
    if site is None:
        rows = await fetch(f"{_PARTICIPANTS} WHERE p.study = {{}}", study_id)
    else:
        rows = await fetch(f"{_PARTICIPANTS} WHERE p.study = {{}} AND s.code = {{}}", study_id, site)
    return sorted(rows, key=lambda row: row["subject_id"])


async def lock_participants(study_id: int) -> None:
    """Serialise writers of a study's participants (SQLite's immediate transactions already do)."""
    if not is_sqlite():
        await fetch("SELECT id FROM participants WHERE study = {} FOR UPDATE", study_id)


async def lock_subject(study: str, subject_id: str) -> None:
    """Serialise writers of one participant; lock before reading it, so that what is read is current."""
    if not is_sqlite():  # OF p: the participant's row only, not its study's
        await fetch(
            "SELECT p.id FROM participants p JOIN studies st ON st.id = p.study"
            " WHERE st.code = {} AND p.subject_id = {} FOR UPDATE OF p",
            study,
            subject_id,
        )


async def insert_participants(study_id: int, rows: Iterable[tuple[str, int, str | None, int, date]]) -> None:
    """rows: (subject_id, site_id, arm, protocol_version_id, enrolled_on)."""
    await execute_many(
        "INSERT INTO participants (study, subject_id, site, arm, protocol_version, status, enrolled_on)"
        " VALUES ({}, {}, {}, {}, {}, 'active', {})",
        [(study_id, *row) for row in rows],
    )


async def update_participant(participant_id: int, **values: Any) -> None:
    await Participant.update({**values, Participant.updated_at: now()}).where(Participant.id == participant_id)


async def insert_protocol_changes(rows: Iterable[tuple[int, int, int, date, str]]) -> None:
    """rows: (participant_id, from_version, to_version, effective, reason)."""
    await execute_many(
        "INSERT INTO protocol_changes (participant, from_version, to_version, effective, reason)"
        " VALUES ({}, {}, {}, {}, {})",
        rows,
    )


async def set_protocol_versions(participant_ids: Iterable[int], version_id: int) -> None:
    await execute_many(
        "UPDATE participants SET protocol_version = {}, updated_at = CURRENT_TIMESTAMP WHERE id = {}",
        [(version_id, pid) for pid in participant_ids],
    )


# Inputs of the schedule engine -----------------------------------------------------------------


@dataclass
class ScheduleInputs:
    """What the engine needs about one participant, plus the ids to store its result under.

    `version_id` is the version the participant follows now; `changes` the moves recorded, (effective date,
    version id) in order, and `first_version` the version followed before the first of them."""

    id: int
    subject_id: str
    site: str
    arm: str | None
    status: str
    version_id: int
    events: dict[str, date] = field(default_factory=dict)
    actuals: dict[str, date] = field(default_factory=dict)
    marked_missed: set[str] = field(default_factory=set)
    changes: list[tuple[date, int]] = field(default_factory=list)
    first_version: int | None = None
    horizon: date | None = None  # the last day its stored schedule lists

    @property
    def versions(self) -> list[int]:
        """The versions followed, oldest first: the first one, then each change's."""
        return [self.first_version or self.version_id, *(version for _, version in self.changes)]

    def add_change(self, from_version: int, to_version: int, effective: date) -> None:
        if not self.changes:
            self.first_version = from_version
        self.changes.append((effective, to_version))

    def add_facts(self, code: str, actual: date | None, missed_reason: str | None) -> None:
        """What a coordinator recorded on a stored visit."""
        if actual is not None:
            self.actuals[code] = actual
        if missed_reason is not None:
            self.marked_missed.add(code)


async def subject_inputs(subject: dict) -> tuple[ScheduleInputs, dict[str, StoredVisit]]:
    """Engine inputs and stored visits (by code) of a participant as `find_subject` gives it, in one more
    query: the stored visits carry the recorded facts."""
    inputs = ScheduleInputs(
        subject["id"],
        subject["subject_id"],
        subject["site"],
        subject["arm"],
        subject["status"],
        subject["protocol_version"],
        subject["events"],
        horizon=_date(subject["schedule_horizon"]) if subject["schedule_horizon"] else None,
    )
    visits = await participant_visits(subject["id"])
    for visit in visits.values():
        inputs.add_facts(visit.visit, visit.actual, visit.missed_reason)
    for _, from_version, to_version, effective in await fetch_rows(
        f"{_CHANGES} WHERE x.participant = {{}} ORDER BY x.effective, x.id", subject["id"]
    ):
        inputs.add_change(from_version, to_version, _date(effective))
    return inputs, visits


_CHANGES = "SELECT x.participant, x.from_version, x.to_version, x.effective FROM protocol_changes x"


def _date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def load_inputs(
    study_id: int, participant_id: int | None = None, site: str | None = None
) -> dict[int, ScheduleInputs]:
    """Events and visit facts of one participant, or of a whole study, in three queries."""
    where, args = ("p.id = {}", [participant_id]) if participant_id is not None else ("p.study = {}", [study_id])
    if site is not None:
        where, args = f"{where} AND s.code = {{}}", [*args, site]
    people = await fetch(
        "SELECT p.id, p.subject_id, p.arm, p.status, p.protocol_version, p.schedule_horizon, s.code AS site"
        f" FROM participants p JOIN sites s ON s.id = p.site WHERE {where}",
        *args,
    )
    inputs = {
        row["id"]: ScheduleInputs(
            row["id"],
            row["subject_id"],
            row["site"],
            row["arm"],
            row["status"],
            row["protocol_version"],
            horizon=_date(row["schedule_horizon"]) if row["schedule_horizon"] else None,
        )
        for row in people
    }
    joined = f"JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site WHERE {where}"
    for participant, event, day in await fetch_rows(
        f"SELECT x.participant, x.event, x.date FROM recorded_events x {joined}", *args
    ):
        inputs[participant].events[event] = day
    facts = await fetch_rows(
        f"SELECT x.participant, x.code, x.actual, x.missed_reason FROM visits x {joined}"
        " AND (x.actual IS NOT NULL OR x.missed_reason IS NOT NULL)",
        *args,
    )
    for participant, code, actual, missed_reason in facts:
        inputs[participant].add_facts(code, actual, missed_reason)
    for participant, from_version, to_version, effective in await fetch_rows(
        f"{_CHANGES} {joined} ORDER BY x.effective, x.id", *args
    ):
        inputs[participant].add_change(from_version, to_version, _date(effective))
    return inputs


async def upsert_events(rows: Iterable[tuple[int, str, date, str | None]]) -> None:
    """rows: (participant_id, event, date, reason); replaces the date of an event already recorded."""
    rows = list(rows)
    existing = {
        (participant, event): row_id
        for row_id, participant, event in await _select_in(
            "SELECT id, participant, event FROM recorded_events WHERE participant IN ({})",
            {participant for participant, *_ in rows},
        )
    }
    await execute_many(
        "UPDATE recorded_events SET date = {}, reason = {}, updated_at = CURRENT_TIMESTAMP WHERE id = {}",
        [(day, reason, existing[(pid, event)]) for pid, event, day, reason in rows if (pid, event) in existing],
    )
    await execute_many(
        "INSERT INTO recorded_events (participant, event, date, reason) VALUES ({}, {}, {}, {})",
        [row for row in rows if row[:2] not in existing],
    )


# Visits ----------------------------------------------------------------------------------------

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

    @property
    def evaluation(self) -> VisitOccurrence:
        return _occurrence(VisitOccurrence, self[:_OCCURRENCE_WIDTH])


_OCCURRENCE_WIDTH = len(OCCURRENCE_FIELDS)
_occurrence = tuple.__new__  # positional, without NamedTuple's keyword wrapper (one per worklist row)
_CODE, _SUBJECT, _TARGET, _APPOINTMENT, _ID, _PARTICIPANT = (  # for driver rows in StoredVisit's order
    StoredVisit._fields.index(name) for name in ("visit", "subject_id", "target", "appointment", "id", "participant")
)


def _select_visits(labels: str, tables: str) -> str:
    """StoredVisit's columns in its order; only these, as each more costs a conversion per row."""
    return (
        f"SELECT x.code, {', '.join(f'x.{name}' for name in _EVALUATED)}, {labels}, x.appointment,"
        " x.appointment_reason, x.actual_reason, x.missed_reason, x.row_version, x.id, x.participant,"
        f" x.protocol_version FROM {tables}"
    )


_VISITS = _select_visits(
    "p.subject_id, s.code, pv.version",
    "visits x JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site"
    " JOIN protocol_versions pv ON pv.id = x.protocol_version",
)
_UNLABELLED_VISITS = _select_visits("NULL, NULL, NULL", "visits x")  # no joins: subject_id, site, version None
_WATCHED = ("target", "earliest", "latest", "actual")  # a change here bumps row_version


def occurrence_fields(visit: VisitOccurrence) -> dict[str, Any]:
    """The occurrence's fields by name (works whatever kind of record the domain uses)."""
    return {name: getattr(visit, name) for name in OCCURRENCE_FIELDS}


_NUMBER = _EVALUATED.index("number")
if VisitOccurrence._fields[1:] != _EVALUATED:  # an occurrence's values are a slice of it (hot path): keep the order
    raise RuntimeError("VisitOccurrence's fields changed order; update repositories._EVALUATED to match")


def _evaluated_values(visit: VisitOccurrence) -> tuple:
    values = visit[1:]
    number = values[_NUMBER]
    if number is not None and type(number) is not float:  # asyncpg encodes DOUBLE PRECISION from floats only
        values = (*values[:_NUMBER], float(number), *values[_NUMBER + 1 :])
    return values


async def find_visit(participant_id: int, code: str) -> StoredVisit | None:
    rows = await _visit_rows("x.participant = {} AND x.code = {}", participant_id, code)
    return rows[0] if rows else None


async def participant_visits(participant_id: int) -> dict[str, StoredVisit]:
    return {row.visit: row for row in await _visit_rows("x.participant = {}", participant_id)}


async def worklist_rows(study_id: int, condition: str, *args: Any, site: str | None = None) -> Iterator[StoredVisit]:
    """Stored visits of a study matching `condition` (SQL over the alias `x`), by subject and date.

    Each is built as the caller takes it: a worklist has tens of thousands, and a NamedTuple, unlike the
    driver's plain tuple, stays tracked by the garbage collector, whose passes over them cost as much as
    building them.
    """
    where, values = f"p.study = {{}} AND ({condition})", [study_id, *args]
    if site is not None:
        where, values = f"{where} AND s.code = {{}}", [*values, site]
    rows = await fetch_rows(f"{_VISITS} WHERE {where}", *values)
    return map(StoredVisit._make, sorted(rows, key=_worklist_order))


def _worklist_order(row: Sequence[Any]) -> tuple:
    """By subject, date, code; in Python, so that the order is the same whatever the database's collation."""
    return row[_SUBJECT], row[_TARGET] or row[_APPOINTMENT] or date.min, row[_CODE]


async def update_visit(visit_id: int, bump: bool = True, **values: Any) -> None:
    changes = {**values, Visit.updated_at: now()}
    if bump:
        changes[Visit.row_version] = Visit.row_version + 1
    await Visit.update(changes).where(Visit.id == visit_id)


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
    for raw in await _select_in(f"{_UNLABELLED_VISITS} WHERE x.participant IN ({{}})", stored):
        stored[raw[_PARTICIPANT]][raw[_CODE]] = raw
    inserts, updates, deletes = [], [], []
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
                updates.append((*values, version, evaluated_on, row.row_version + bump, row.id))
        deletes += [(raw[_ID],) for raw in rows.values() if not _has_recorded_facts(StoredVisit._make(raw))]
    await execute_many("DELETE FROM visits WHERE id = {}", deletes)
    await execute_many(
        f"UPDATE visits SET {', '.join(f'{name} = {{}}' for name in _EVALUATED)}, protocol_version = {{}},"
        " evaluated_on = {}, row_version = {}, updated_at = CURRENT_TIMESTAMP WHERE id = {}",
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


async def _select_in(sql: str, ids: Iterable[int], chunk: int = 500) -> list:
    """Rows (tuples) of `sql` with `IN ({})` run over chunks of ids, so no statement exceeds a parameter limit."""
    ids = sorted(ids)
    rows: list = []
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        rows += await fetch_rows(sql.replace("({})", f"({', '.join(['{}'] * len(part))})"), *part)
    return rows


# The consent records the consent feature writes, read where the schedule needs the date of first consent.
async def first_consents(study_id: int) -> dict[int, str]:
    """The date of each participant's earliest consent on record (ISO text), for the study's participants."""
    rows = await fetch(
        "SELECT pc.participant, MIN(pc.signed_on) AS first FROM participant_consents pc"
        " JOIN participants p ON p.id = pc.participant WHERE p.study = {} GROUP BY pc.participant",
        study_id,
    )
    return {row["participant"]: str(row["first"]) for row in rows}


async def first_signed(participant: int) -> dict | None:
    """The participant's earliest consent on record, with the label signed (or the paper's)."""
    rows = await fetch(
        "SELECT pc.signed_on, COALESCE(c.label, pc.paper_label, 'paper') AS label"
        " FROM participant_consents pc LEFT JOIN consent_versions c ON c.id = pc.consent_version"
        " WHERE pc.participant = {} ORDER BY pc.signed_on, pc.id LIMIT 1",
        participant,
    )
    return rows[0] if rows else None
