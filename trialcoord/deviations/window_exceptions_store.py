"""Window exceptions (migration 6): an investigator's approved extension of one visit's window, approved directly
or by deciding a request (`extension_requests_store`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from trialcoord.deviations.store import among
from trialcoord.kernel.database.engine import fetch


async def exceptions(study_id: int, scope: Collection[int] | None) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT w.participant, p.subject_id, s.code AS site, w.visit, w.earlier_days, w.later_days, w.approved_on,"
        " w.approved_by, w.reason, w.recorded_at FROM window_exceptions w JOIN participants p"
        " ON p.id = w.participant JOIN sites s ON s.id = p.site"
        f" WHERE p.study = {{}}{among('w.participant', scope)} ORDER BY w.id",
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


async def exception_of(participant: int, visit: str) -> dict[str, Any] | None:
    """The visit's approved exception, if any (one per visit)."""
    rows = await fetch(
        "SELECT earlier_days, later_days, approved_on, approved_by FROM window_exceptions"
        " WHERE participant = {} AND visit = {}",
        participant,
        visit,
    )
    return rows[0] if rows else None
