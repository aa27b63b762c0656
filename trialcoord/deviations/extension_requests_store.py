"""Window extension requests (migration 10): a coordinator's request for one visit and the investigator's decision.
An approval's window exception is `window_exceptions_store`'s row."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from trialcoord.kernel.database.engine import fetch, is_sqlite

_COLUMNS = (
    "r.id, r.participant, p.subject_id, s.code AS site, r.visit, r.earlier_days, r.later_days, r.reason,"
    " r.requested_by, r.requested_at, r.state, r.decided_by, r.decided_at, r.decision_reason, r.row_version"
)
_FROM = "window_extension_requests r JOIN participants p ON p.id = r.participant JOIN sites s ON s.id = p.site"


def _sites(sites: Collection[str] | None) -> tuple[str, list[str]]:
    if sites is None:
        return "", []
    return f" AND s.code IN ({', '.join('{}' for _ in sites) or 'NULL'})", list(sites)


async def insert_request(
    participant: int, visit: str, earlier: int, later: int, reason: str, actor: str, at: str
) -> int:
    rows = await fetch(
        "INSERT INTO window_extension_requests (participant, visit, earlier_days, later_days, reason, requested_by,"
        " requested_at, state, row_version) VALUES ({}, {}, {}, {}, {}, {}, {}, 'requested', 1) RETURNING id",
        participant,
        visit,
        earlier,
        later,
        reason,
        actor,
        at,
    )
    return rows[0]["id"]


async def find_request(study_id: int, request_id: int) -> dict[str, Any] | None:
    rows = await fetch(f"SELECT {_COLUMNS} FROM {_FROM} WHERE p.study = {{}} AND r.id = {{}}", study_id, request_id)
    return rows[0] if rows else None


async def open_request(participant: int, visit: str) -> dict[str, Any] | None:
    rows = await fetch(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE r.participant = {{}} AND r.visit = {{}} AND r.state = 'requested'",
        participant,
        visit,
    )
    return rows[0] if rows else None


async def lock_request(request_id: int) -> None:
    if not is_sqlite():
        await fetch("SELECT id FROM window_extension_requests WHERE id = {} FOR UPDATE", request_id)


async def decide(request_id: int, row_version: int, state: str, actor: str, at: str, reason: str | None) -> bool:
    """Optimistic: False when the request moved on meanwhile."""
    rows = await fetch(
        "UPDATE window_extension_requests SET state = {}, decided_by = {}, decided_at = {}, decision_reason = {},"
        " row_version = row_version + 1 WHERE id = {} AND row_version = {} AND state = 'requested' RETURNING id",
        state,
        actor,
        at,
        reason,
        request_id,
        row_version,
    )
    return bool(rows)


async def requests(
    study_id: int, states: Collection[str] | None, sites: Collection[str] | None
) -> list[dict[str, Any]]:
    """The study's requests (of these states, at these sites), oldest first."""
    where, args = _sites(sites)
    if states is not None:
        where += f" AND r.state IN ({', '.join('{}' for _ in states) or 'NULL'})"
        args += list(states)
    return await fetch(f"SELECT {_COLUMNS} FROM {_FROM} WHERE p.study = {{}}{where} ORDER BY r.id", study_id, *args)


async def count_open(study_id: int, sites: Collection[str] | None) -> int:
    where, args = _sites(sites)
    rows = await fetch(
        f"SELECT COUNT(*) AS n FROM {_FROM} WHERE p.study = {{}} AND r.state = 'requested'{where}", study_id, *args
    )
    return int(rows[0]["n"])
