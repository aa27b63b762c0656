"""Rows of deviations, their review steps and signatures, window exceptions, CAPA records and detection
runs (migration 6)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date
from typing import Any

from trialcoord.kernel.database.engine import execute_many, fetch, fetch_rows, is_sqlite

COLUMNS = (
    "d.id, d.visit, d.occurrence, d.rule, d.source, d.category, d.subcategory, d.classification, d.state,"
    " d.occurred_on, d.days_outside, d.description, d.site_reason, d.corrective_action, d.capa,"
    " d.detected_at, d.updated_at, d.closed_at, d.resolved_by_entry, d.row_version, d.participant,"
    " p.subject_id, s.code AS site"
)
_FROM = "deviations d JOIN sites s ON s.id = d.site LEFT JOIN participants p ON p.id = d.participant"
# Visits a detection run must look at: out of window or missed as stored, or still open once their window
# closed (missed as of the run's date); the rest cannot be a schedule deviation.
CANDIDATES = (
    "x.status IN ('early', 'late', 'missed') OR (x.actual IS NULL AND x.missed_reason IS NULL"
    " AND x.status <> 'not_applicable' AND x.latest < {} AND NOT x.optional)"
)


def among(column: str, ids: Collection[int] | None) -> str:
    """` AND column IN (...)` for a scope of integer ids (inlined: they are ints, and a scope can be large)."""
    if ids is None:
        return ""
    return f" AND {column} IN ({', '.join(str(int(i)) for i in ids) or 'NULL'})"


async def lock_study(study_id: int) -> None:
    """Serialise detection runs of a study (SQLite's immediate transactions already do)."""
    if not is_sqlite():
        await fetch("SELECT id FROM studies WHERE id = {} FOR UPDATE", study_id)


async def last_run(study_id: int) -> dict | None:
    rows = await fetch(
        "SELECT as_of, audit_size FROM deviation_runs WHERE study = {} ORDER BY id DESC LIMIT 1", study_id
    )
    return rows[0] if rows else None


async def insert_run(study_id: int, as_of: str, audit_size: int, scope: str, counts: Sequence[int], at: str) -> None:
    await fetch(
        "INSERT INTO deviation_runs (study, as_of, audit_size, scope, created, updated, resolved, ran_at)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
        study_id,
        as_of,
        audit_size,
        scope,
        *counts,
        at,
    )


async def audit_size() -> int:
    return (await fetch("SELECT size FROM audit_head WHERE id = 1"))[0]["size"]


async def changes_since(size: int, prefix: str) -> list[tuple[int, str, str]]:
    """(sequence, record type, record id) of the audit entries past `size` naming the study's records."""
    return [
        tuple(row)
        for row in await fetch_rows(
            "SELECT sequence, record_type, record_id FROM audit_entries WHERE sequence > {}"
            " AND substr(record_id, 1, {}) = {}",
            size,
            len(prefix),
            prefix,
        )
    ]


async def due_since(study_id: int, after: date, until: date) -> set[int]:
    """Participants whose facts a run as of `until` knows and the run as of `after` did not: an open visit whose
    window closed in between (missed now), or a visit done in between (recorded earlier with that date)."""
    # `+p.study`: SQLite keeps no statistics and would otherwise walk every visit of the study through the
    # participants index instead of the few in the date range through visits_latest (portable: unary plus).
    joined = (
        "SELECT DISTINCT x.participant FROM visits x JOIN participants p ON p.id = x.participant WHERE +p.study = {}"
    )
    closed = await fetch_rows(
        f"{joined} AND x.actual IS NULL AND x.missed_reason IS NULL AND x.latest >= {{}} AND x.latest < {{}}",
        study_id,
        after,
        until,
    )
    done = await fetch_rows(f"{joined} AND x.actual > {{}} AND x.actual <= {{}}", study_id, after, until)
    return {row[0] for row in (*closed, *done)}


async def participants(study_id: int, scope: Collection[int] | None) -> list[dict]:
    return await fetch(
        "SELECT p.id, p.subject_id, p.protocol_version, p.site AS site_id, s.code AS site"
        " FROM participants p JOIN sites s ON s.id = p.site"
        f" WHERE p.study = {{}}{among('p.id', scope)}",
        study_id,
    )


async def detected_at(study_id: int, at: str, participants: Collection[int]) -> list[dict]:
    """The deviations a run created for these participants (they carry its instant)."""
    return await fetch(
        f"SELECT {COLUMNS} FROM {_FROM} WHERE d.study = {{}} AND d.detected_at = {{}}"
        f"{among('d.participant', participants)}",
        study_id,
        at,
    )


async def latest_entry(visit_rid: str, prefix: str, record_types: Collection[str]) -> int | None:
    """The latest audit entry of that visit, else of that participant's records of the given types."""
    record_types = sorted(record_types)
    for where, args in (
        ("record_id = {}", [visit_rid]),
        ("substr(record_id, 1, {}) = {}", [len(prefix) + 1, prefix + "/"]),
    ):
        types = ", ".join("{}" for _ in record_types)
        rows = await fetch(
            f"SELECT MAX(sequence) AS s FROM audit_entries WHERE {where} AND record_type IN ({types})",
            *args,
            *record_types,
        )
        if rows and rows[0]["s"] is not None:
            return int(rows[0]["s"])
    return None


async def participant_ids(study_id: int, subjects: Collection[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    subjects = sorted(subjects)
    for start in range(0, len(subjects), 500):
        chunk = subjects[start : start + 500]
        names = ", ".join("{}" for _ in chunk)
        for row in await fetch(
            f"SELECT id, subject_id FROM participants WHERE study = {{}} AND subject_id IN ({names})", study_id, *chunk
        ):
            found[row["subject_id"]] = row["id"]
    return found


async def ending_dates(
    study_id: int, events: Collection[str], scope: Collection[int] | None
) -> dict[int, tuple[set[int], dict[str, date]]]:
    """By participant recording one of these events: the protocol versions it has followed (now and before a
    change) and the dates of those events."""
    if not events:
        return {}
    names = ", ".join("{}" for _ in events)
    rows = await fetch_rows(
        "SELECT e.participant, p.protocol_version, e.event, e.date FROM recorded_events e"
        f" JOIN participants p ON p.id = e.participant WHERE p.study = {{}} AND e.event IN"
        f" ({names}){among('e.participant', scope)}",
        study_id,
        *events,
    )
    ended: dict[int, tuple[set[int], dict[str, date]]] = {}
    for participant, version, event, day in rows:
        ended.setdefault(participant, ({version}, {}))[1][event] = (
            day if isinstance(day, date) else date.fromisoformat(str(day))
        )
    if ended:
        for participant, version in await fetch_rows(
            f"SELECT participant, from_version FROM protocol_changes WHERE 1 = 1{among('participant', ended)}"
        ):
            ended[participant][0].add(version)
    return ended


def candidates(ending: Collection[str]) -> str:
    """SQL over visits `x`: the visits a detection run looks at (`CANDIDATES`, or done after one of the `ending`
    events, those after which collection stops), leaving out visits done after the run's date (not known
    then). Arguments: `candidate_args`."""
    names = ", ".join("{}" for _ in ending)
    after_end = (
        (
            " OR (x.actual IS NOT NULL AND EXISTS (SELECT 1 FROM recorded_events e WHERE e.participant ="
            f" x.participant AND e.event IN ({names}) AND e.date < x.actual))"
        )
        if ending
        else ""
    )
    return f"({CANDIDATES}{after_end}) AND (x.actual IS NULL OR x.actual <= {{}})"


def candidate_args(as_of: date, ending: Collection[str]) -> tuple:
    return (as_of, *ending, as_of)


async def occurrences(participants: Collection[int]) -> dict[int, dict[str, int]]:
    """Visit code -> occurrence of each participant's visits that took place."""
    found: dict[int, dict[str, int]] = {}
    if participants:
        for participant, code, occurrence in await fetch_rows(
            f"SELECT x.participant, x.code, x.occurrence FROM visits x WHERE x.actual IS NOT NULL"
            f"{among('x.participant', participants)}"
        ):
            found.setdefault(participant, {})[code] = occurrence
    return found


async def exceptions(study_id: int, scope: Collection[int] | None) -> list[dict]:
    return await fetch(
        "SELECT w.participant, p.subject_id, w.visit, w.earlier_days, w.later_days, w.approved_on,"
        " w.approved_by, w.reason, w.recorded_at FROM window_exceptions w JOIN participants p"
        f" ON p.id = w.participant WHERE p.study = {{}}{among('w.participant', scope)}",
        study_id,
    )


async def insert_exception(
    participant: int, visit: str, earlier: int, later: int, approved_on: str, approved_by: str, reason: str, at: str
) -> None:
    await fetch(
        "INSERT INTO window_exceptions (participant, visit, earlier_days, later_days, approved_on,"
        " approved_by, reason, recorded_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
        participant,
        visit,
        earlier,
        later,
        approved_on,
        approved_by,
        reason,
        at,
    )


KEPT = (
    "id",
    "participant",
    "visit",
    "occurrence",
    "rule",
    "state",
    "occurred_on",
    "days_outside",
    "description",
    "row_version",
    "resolved_by_entry",
)


async def kept(study_id: int, scope: Collection[int] | None) -> list[Sequence[Any]]:
    """Automatic deviations of the study (of the participants in `scope`): the `KEPT` columns, as driver rows
    (a detection run compares tens of thousands; it names only the ones that changed)."""
    # For a scope, `+d.study` keeps SQLite (no statistics) on the participant index instead of walking every
    # deviation of the study through the study's.
    study = "d.study" if scope is None else "+d.study"
    return await fetch_rows(
        f"SELECT {', '.join(f'd.{name}' for name in KEPT)} FROM deviations d"
        f" WHERE {study} = {{}} AND d.rule IS NOT NULL{among('d.participant', scope)}",
        study_id,
    )


async def insert_deviations(rows: Iterable[Sequence[Any]]) -> None:
    """rows: (study, participant, site, visit, occurrence, rule, source, category, subcategory, classification,
    state, occurred_on, days_outside, description, detected_at)."""
    await execute_many(
        "INSERT INTO deviations (study, participant, site, visit, occurrence, rule, source, category, subcategory,"
        " classification, state, occurred_on, days_outside, description, detected_at, updated_at, row_version)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 1)",
        [(*row, row[-1]) for row in rows],
    )


async def insert_deviation(row: Sequence[Any]) -> int:
    rows = await fetch(
        "INSERT INTO deviations (study, participant, site, visit, occurrence, rule, source, category, subcategory,"
        " classification, state, occurred_on, days_outside, description, detected_at, updated_at, row_version)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 1) RETURNING id",
        *row,
        row[-1],
    )
    return rows[0]["id"]


async def find(study_id: int, deviation_id: int) -> dict | None:
    rows = await fetch(f"SELECT {COLUMNS} FROM {_FROM} WHERE d.study = {{}} AND d.id = {{}}", study_id, deviation_id)
    return rows[0] if rows else None


async def lock(deviation_id: int) -> None:
    if not is_sqlite():
        await fetch("SELECT id FROM deviations WHERE id = {} FOR UPDATE", deviation_id)


async def update(deviation_id: int, row_version: int, **values: Any) -> bool:
    """Optimistic: False when the row moved on meanwhile."""
    sets = ", ".join(f"{name} = {{}}" for name in values)
    rows = await fetch(
        f"UPDATE deviations SET {sets}, row_version = row_version + 1 WHERE id = {{}}"
        " AND row_version = {} RETURNING id",
        *values.values(),
        deviation_id,
        row_version,
    )
    return bool(rows)


async def insert_step(
    deviation: int,
    step: str,
    from_state: str,
    to_state: str,
    actor: str,
    at: str,
    reason: str | None,
    detail: str | None,
) -> int:
    rows = await fetch(
        "INSERT INTO deviation_steps (deviation, step, from_state, to_state, actor, at, reason, detail)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}) RETURNING id",
        deviation,
        step,
        from_state,
        to_state,
        actor,
        at,
        reason,
        detail,
    )
    return rows[0]["id"]


async def steps(deviation: int) -> list[dict]:
    return await fetch(
        "SELECT id, step, from_state, to_state, actor, at, reason, detail FROM deviation_steps"
        " WHERE deviation = {} ORDER BY id",
        deviation,
    )


async def insert_signature(
    deviation: int,
    step: int,
    decision: str,
    content_sha256: str,
    record: str,
    signer_id: str,
    printed_name: str,
    meaning: str,
    instant: str,
    key_id: str,
    value: str,
) -> None:
    await fetch(
        "INSERT INTO deviation_signatures (deviation, step, decision, content_sha256, record, signer_id,"
        " printed_name, meaning, instant, key_id, value) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        deviation,
        step,
        decision,
        content_sha256,
        record,
        signer_id,
        printed_name,
        meaning,
        instant,
        key_id,
        value,
    )


async def signatures(deviation: int | None = None) -> list[dict]:
    """With the signing step's target state and the deviation's audit name parts, for verification."""
    where = "WHERE g.deviation = {}" if deviation is not None else ""
    return await fetch(
        "SELECT g.deviation, g.step, g.decision, g.content_sha256, g.record, g.signer_id,"
        " g.printed_name, g.meaning, g.instant, g.key_id, g.value, t.step AS step_name,"
        " t.to_state, st.code AS study, s.code AS site, p.subject_id, d.state AS current_state,"
        " d.classification AS current_classification, d.category AS current_category,"
        " d.subcategory AS current_subcategory"
        " FROM deviation_signatures g JOIN deviation_steps t ON t.id = g.step"
        " JOIN deviations d ON d.id = g.deviation JOIN studies st ON st.id = d.study"
        " JOIN sites s ON s.id = d.site LEFT JOIN participants p ON p.id = d.participant"
        f" {where} ORDER BY g.id",
        *([deviation] if deviation is not None else []),
    )


async def listing(
    study_id: int,
    where: str = "",
    args: Sequence[Any] = (),
    order: str = "d.id",
    limit: int | None = None,
    offset: int = 0,
) -> list[dict]:
    """`where` filters the deviation row `d` only: the page's ids come from an index (study, detected_at, id)
    alone, and only those rows are joined (a deep page costs an index walk, not a join per skipped row)."""
    page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    ids = [
        row[0]
        for row in await fetch_rows(
            f"SELECT d.id FROM deviations d WHERE d.study = {{}}{where} ORDER BY {order}{page}", study_id, *args
        )
    ]
    rows: dict[int, dict] = {}
    for start in range(0, len(ids), 1000):
        for row in await fetch(
            f"SELECT {COLUMNS} FROM {_FROM} WHERE d.id IN ({', '.join(str(int(i)) for i in ids[start : start + 1000])})"
        ):
            rows[row["id"]] = row
    return [rows[i] for i in ids]


async def count(study_id: int, where: str = "", args: Sequence[Any] = ()) -> int:
    rows = await fetch(f"SELECT COUNT(*) AS n FROM deviations d WHERE d.study = {{}}{where}", study_id, *args)
    return int(rows[0]["n"])


# CAPA ---------------------------------------------------------------------------------------------

CAPA_COLUMNS = (
    "id, title, root_cause, corrective_action, preventive_action, owner, due_on, state, created_by,"
    " created_at, closed_at, row_version"
)


async def insert_capa(
    study_id: int,
    title: str,
    root_cause: str,
    corrective: str,
    preventive: str,
    owner: str,
    due_on: str | None,
    actor: str,
    at: str,
) -> int:
    rows = await fetch(
        "INSERT INTO capas (study, title, root_cause, corrective_action, preventive_action, owner,"
        " due_on, state, created_by, created_at, row_version) VALUES ({}, {}, {}, {}, {}, {}, {},"
        " 'open', {}, {}, 1) RETURNING id",
        study_id,
        title,
        root_cause,
        corrective,
        preventive,
        owner,
        due_on,
        actor,
        at,
    )
    return rows[0]["id"]


async def capas(study_id: int) -> list[dict]:
    return await fetch(f"SELECT {CAPA_COLUMNS} FROM capas WHERE study = {{}} ORDER BY id", study_id)


async def find_capa(study_id: int, capa_id: int) -> dict | None:
    rows = await fetch(f"SELECT {CAPA_COLUMNS} FROM capas WHERE study = {{}} AND id = {{}}", study_id, capa_id)
    return rows[0] if rows else None


async def grouped(study_id: int) -> list[tuple[int, int, str]]:
    """(deviation, CAPA, site code) of the study's deviations grouped under a CAPA record."""
    return [
        tuple(row)
        for row in await fetch_rows(
            "SELECT d.id, d.capa, s.code FROM deviations d JOIN sites s ON s.id = d.site"
            " WHERE d.study = {} AND d.capa IS NOT NULL ORDER BY d.id",
            study_id,
        )
    ]


async def close_capa(capa_id: int, at: str) -> bool:
    """False when it was closed meanwhile."""
    return bool(
        await fetch(
            "UPDATE capas SET state = 'closed', closed_at = {}, row_version = row_version + 1"
            " WHERE id = {} AND state = 'open' RETURNING id",
            at,
            capa_id,
        )
    )


async def lock_capa(capa_id: int) -> None:
    """Serialise linking to and closing a CAPA record (SQLite's immediate transactions already do)."""
    if not is_sqlite():
        await fetch("SELECT id FROM capas WHERE id = {} FOR UPDATE", capa_id)
