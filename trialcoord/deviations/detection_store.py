"""What a detection run reads and records beyond the deviations themselves (migration 6): the runs, the
audit trail's entries past the previous run, the participants and visits it looks at, the events after which
collection stops, the visits that took place."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date
from typing import Any

from trialcoord.deviations.store import among
from trialcoord.kernel.database.engine import fetch, fetch_rows, is_sqlite

# Visits a detection run must look at: out of window or missed as stored, or still open once their window
# closed (missed as of the run's date); the rest cannot be a schedule deviation.
CANDIDATES = (
    "x.status IN ('early', 'late', 'missed') OR (x.actual IS NULL AND x.missed_reason IS NULL"
    " AND x.status <> 'not_applicable' AND x.latest < {} AND NOT x.optional)"
)


async def lock_study(study_id: int) -> None:
    """Serialise detection runs of a study (SQLite's immediate transactions already do)."""
    if not is_sqlite():
        await fetch("SELECT id FROM studies WHERE id = {} FOR UPDATE", study_id)


async def last_run(study_id: int) -> dict[str, Any] | None:
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


async def participants(study_id: int, scope: Collection[int] | None) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT p.id, p.subject_id, p.protocol_version, p.site AS site_id, s.code AS site"
        " FROM participants p JOIN sites s ON s.id = p.site"
        f" WHERE p.study = {{}}{among('p.id', scope)}",
        study_id,
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
