"""CAPA records (migration 6): root cause, corrective and preventive action, and the deviations grouped under
each."""

from __future__ import annotations

from typing import Any

from trialcoord.kernel.database.engine import fetch, fetch_rows, is_sqlite

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


async def capas(study_id: int) -> list[dict[str, Any]]:
    return await fetch(f"SELECT {CAPA_COLUMNS} FROM capas WHERE study = {{}} ORDER BY id", study_id)


async def find_capa(study_id: int, capa_id: int) -> dict[str, Any] | None:
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
