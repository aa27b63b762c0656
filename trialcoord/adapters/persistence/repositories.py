"""Rows <-> domain objects. Simple CRUD goes through piccolo tables; bulk paths through plain SQL.

Writes run inside the caller's `transaction()`; nothing here commits. Lists of text keys are
sorted in Python, so the order is the same on every engine whatever the database's collation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from trialcoord.adapters.persistence.engine import execute_many, fetch, is_sqlite
from trialcoord.adapters.persistence.tables import (
    Participant,
    ProtocolChange,
    ProtocolVersion,
    Site,
    Study,
    Visit,
)
from trialcoord.domain.schedule import VisitOccurrence

VERSION_FIELDS = (ProtocolVersion.id, ProtocolVersion.version, ProtocolVersion.effective,
                  ProtocolVersion.source_name, ProtocolVersion.sha256, ProtocolVersion.loaded_at)


def now() -> datetime:
    return datetime.now(timezone.utc)


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


async def version_source(version_id: int) -> str:
    row = await ProtocolVersion.select(ProtocolVersion.source_text).where(ProtocolVersion.id == version_id).first()
    return row["source_text"]


async def insert_version(study_id: int, version: str, effective: date, source_name: str, source_text: str,
                         sha256: str) -> dict:
    row = ProtocolVersion(study=study_id, version=version, effective=effective, source_name=source_name,
                          source_text=source_text, sha256=sha256, loaded_at=now())
    await ProtocolVersion.insert(row)
    return await find_version(study_id, version)


async def find_site(study_id: int, code: str) -> dict | None:
    return await Site.select().where((Site.study == study_id) & (Site.code == code)).first()


async def list_sites(study_id: int) -> list[dict]:
    return sorted(await Site.select().where(Site.study == study_id), key=lambda row: row["code"])


async def insert_site(study_id: int, code: str, name: str, time_zone: str, calendar: str | None) -> dict:
    stamp = now()
    await Site.insert(Site(study=study_id, code=code, name=name, time_zone=time_zone, calendar=calendar,
                           created_at=stamp, updated_at=stamp))
    return await find_site(study_id, code)


# Participants --------------------------------------------------------------------------------

_PARTICIPANTS = """SELECT p.id, p.subject_id, p.arm, p.status, p.enrolled_on, p.protocol_version,
    pv.version, s.code AS site FROM participants p
    JOIN sites s ON s.id = p.site JOIN protocol_versions pv ON pv.id = p.protocol_version"""


async def find_participant(study_id: int, subject_id: str) -> dict | None:
    rows = await fetch(f"{_PARTICIPANTS} WHERE p.study = {{}} AND p.subject_id = {{}}", study_id, subject_id)
    return rows[0] if rows else None


async def list_participants(study_id: int, site: str | None = None) -> list[dict]:
    if site is None:
        rows = await fetch(f"{_PARTICIPANTS} WHERE p.study = {{}}", study_id)
    else:
        rows = await fetch(f"{_PARTICIPANTS} WHERE p.study = {{}} AND s.code = {{}}", study_id, site)
    return sorted(rows, key=lambda row: row["subject_id"])


async def lock_participants(study_id: int, participant_id: int | None = None) -> None:
    """Serialise writers of the same participants (SQLite's immediate transactions already do)."""
    if is_sqlite():
        return
    if participant_id is None:
        await fetch("SELECT id FROM participants WHERE study = {} FOR UPDATE", study_id)
    else:
        await fetch("SELECT id FROM participants WHERE id = {} FOR UPDATE", participant_id)


async def insert_participants(study_id: int, rows: Iterable[tuple[str, int, str | None, int, date]]) -> None:
    """rows: (subject_id, site_id, arm, protocol_version_id, enrolled_on)."""
    await execute_many(
        "INSERT INTO participants (study, subject_id, site, arm, protocol_version, status, enrolled_on)"
        " VALUES ({}, {}, {}, {}, {}, 'active', {})",
        [(study_id, *row) for row in rows],
    )


async def update_participant(participant_id: int, **values: Any) -> None:
    await Participant.update({**values, Participant.updated_at: now()}).where(Participant.id == participant_id)


async def insert_protocol_change(participant_id: int, from_version: int, to_version: int, effective: date,
                                 reason: str) -> None:
    await ProtocolChange.insert(ProtocolChange(participant=participant_id, from_version=from_version,
                                               to_version=to_version, effective=effective, reason=reason,
                                               recorded_at=now()))


# Inputs of the schedule engine -----------------------------------------------------------------

@dataclass
class ScheduleInputs:
    """What the engine needs about one participant, plus the ids to store its result under."""

    id: int
    subject_id: str
    site: str
    arm: str | None
    status: str
    version_id: int
    events: dict[str, date] = field(default_factory=dict)
    actuals: dict[str, date] = field(default_factory=dict)
    marked_missed: set[str] = field(default_factory=set)


async def load_inputs(study_id: int, participant_id: int | None = None, site: str | None = None
                      ) -> dict[int, ScheduleInputs]:
    """Events and visit facts of one participant, or of a whole study, in three queries."""
    where, args = ("p.id = {}", [participant_id]) if participant_id is not None else ("p.study = {}", [study_id])
    if site is not None:
        where, args = f"{where} AND s.code = {{}}", [*args, site]
    people = await fetch(
        "SELECT p.id, p.subject_id, p.arm, p.status, p.protocol_version, s.code AS site FROM participants p"
        f" JOIN sites s ON s.id = p.site WHERE {where}", *args)
    inputs = {row["id"]: ScheduleInputs(row["id"], row["subject_id"], row["site"], row["arm"], row["status"],
                                        row["protocol_version"]) for row in people}
    joined = f"JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site WHERE {where}"
    for row in await fetch(f"SELECT x.participant, x.event, x.date FROM recorded_events x {joined}", *args):
        inputs[row["participant"]].events[row["event"]] = row["date"]
    facts = await fetch(f"SELECT x.participant, x.code, x.actual, x.missed_reason FROM visits x {joined}"
                        " AND (x.actual IS NOT NULL OR x.missed_reason IS NOT NULL)", *args)
    for row in facts:
        if row["actual"] is not None:
            inputs[row["participant"]].actuals[row["code"]] = row["actual"]
        if row["missed_reason"] is not None:
            inputs[row["participant"]].marked_missed.add(row["code"])
    return inputs


async def upsert_events(rows: Iterable[tuple[int, str, date, str | None]]) -> None:
    """rows: (participant_id, event, date, reason); replaces the date of an event already recorded."""
    rows = list(rows)
    existing = {
        (row["participant"], row["event"]): row["id"]
        for row in await _select_in("SELECT id, participant, event FROM recorded_events WHERE participant IN ({})",
                                    {participant for participant, *_ in rows})
    }
    await execute_many("UPDATE recorded_events SET date = {}, reason = {}, updated_at = CURRENT_TIMESTAMP"
                       " WHERE id = {}",
                       [(day, reason, existing[(pid, event)]) for pid, event, day, reason in rows
                        if (pid, event) in existing])
    await execute_many("INSERT INTO recorded_events (participant, event, date, reason) VALUES ({}, {}, {}, {})",
                       [row for row in rows if row[:2] not in existing])


# Visits ----------------------------------------------------------------------------------------

_EVALUATED = ("definition", "occurrence", "name", "number", "target", "earliest", "latest", "actual", "status",
              "days_outside", "study_day", "optional")
_WATCHED = ("target", "earliest", "latest", "actual")  # a change here bumps row_version
_DIFFED = ("id", "participant", "code", *_EVALUATED, "protocol_version", "row_version", "appointment",
           "missed_reason")  # what save_evaluations compares: fewer columns load faster


OCCURRENCE_FIELDS = ("visit", *_EVALUATED)


def occurrence_fields(visit: VisitOccurrence) -> dict[str, Any]:
    """The occurrence's fields by name (works whatever kind of record the domain uses)."""
    return {name: getattr(visit, name) for name in OCCURRENCE_FIELDS}


def occurrence_from_row(row: dict) -> VisitOccurrence:
    values = {name: row[name] for name in _EVALUATED}
    return VisitOccurrence(**{**values, "visit": row["code"], "optional": bool(row["optional"])})


def _evaluated_values(visit: VisitOccurrence) -> tuple:
    values = {name: getattr(visit, name) for name in _EVALUATED}
    if visit.number is not None:
        values["number"] = float(visit.number)  # asyncpg encodes DOUBLE PRECISION from floats only
    return tuple(values.values())


async def find_visit(participant_id: int, code: str) -> dict | None:
    rows = await _visit_rows("x.participant = {} AND x.code = {}", participant_id, code)
    return rows[0] if rows else None


async def participant_visits(participant_id: int) -> dict[str, dict]:
    return {row["code"]: row for row in await _visit_rows("x.participant = {}", participant_id)}


async def worklist_rows(study_id: int, condition: str, *args: Any, site: str | None = None) -> list[dict]:
    """Stored visits of a study matching `condition` (SQL over the alias `x`), by subject and date."""
    where, values = f"p.study = {{}} AND ({condition})", [study_id, *args]
    if site is not None:
        where, values = f"{where} AND s.code = {{}}", [*values, site]
    rows = await _visit_rows(where, *values)
    return sorted(rows, key=lambda row: (row["subject_id"], row["target"] or row["appointment"] or date.min,
                                         row["code"]))


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


async def save_evaluations(results: Iterable[tuple[ScheduleInputs, list[VisitOccurrence]]], evaluated_on: date,
                           keep: Callable[[dict, VisitOccurrence, ScheduleInputs], VisitOccurrence | None] | None = None
                           ) -> Saved:
    """Store each participant's evaluated visits: insert new codes, update changed rows, delete rows the
    evaluation no longer produces unless a coordinator recorded something on them. A row whose values
    did not change is not written, so it keeps the `evaluated_on` of the evaluation that produced it.

    `keep(stored_row, evaluated, inputs)` returns the occurrence to store for a row that keeps its stored
    evaluation (a visit done under an earlier protocol version), or None to store the evaluation.
    """
    results = list(results)
    stored: dict[int, dict[str, dict]] = {inputs.id: {} for inputs, _ in results}
    for row in await _select_in(f"SELECT {', '.join(_DIFFED)} FROM visits WHERE participant IN ({{}})", stored):
        stored[row["participant"]][row["code"]] = row
    inserts, updates, deletes = [], [], []
    for inputs, visits in results:
        rows = stored[inputs.id]
        for visit in visits:
            row = rows.pop(visit.visit, None)
            if row is None:
                inserts.append((inputs.id, visit.visit, *_evaluated_values(visit), inputs.version_id, evaluated_on))
                continue
            kept = keep(row, visit, inputs) if keep else None
            version = row["protocol_version"] if kept else inputs.version_id
            values = _evaluated_values(kept or visit)
            if version != row["protocol_version"] or values != tuple(row[name] for name in _EVALUATED):
                bump = any(row[name] != getattr(kept or visit, name) for name in _WATCHED)
                updates.append((*values, version, evaluated_on, row["row_version"] + bump, row["id"]))
        deletes += [(row["id"],) for row in rows.values() if not _has_recorded_facts(row)]
    await execute_many("DELETE FROM visits WHERE id = {}", deletes)
    await execute_many(
        f"UPDATE visits SET {', '.join(f'{name} = {{}}' for name in _EVALUATED)}, protocol_version = {{}},"
        " evaluated_on = {}, row_version = {}, updated_at = CURRENT_TIMESTAMP WHERE id = {}", updates)
    await execute_many(  # created_at and updated_at take their defaults
        f"INSERT INTO visits (participant, code, {', '.join(_EVALUATED)}, protocol_version, evaluated_on,"
        f" row_version) VALUES ({', '.join(['{}'] * (len(_EVALUATED) + 4))}, 1)", inserts)
    return Saved(len(inserts), len(updates), len(deletes))


def _has_recorded_facts(row: dict) -> bool:
    return any(row[name] is not None for name in ("actual", "appointment", "missed_reason"))


async def _visit_rows(where: str, *args: Any) -> list[dict]:
    return await fetch(
        "SELECT x.*, p.subject_id, s.code AS site, pv.version FROM visits x"
        " JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site"
        f" JOIN protocol_versions pv ON pv.id = x.protocol_version WHERE {where}", *args)


async def _select_in(sql: str, ids: Iterable[int], chunk: int = 500) -> list[dict]:
    """`sql` with `IN ({})` run over chunks of ids, so no statement exceeds a parameter limit."""
    ids = sorted(ids)
    rows: list[dict] = []
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        rows += await fetch(sql.replace("({})", f"({', '.join(['{}'] * len(part))})"), *part)
    return rows
