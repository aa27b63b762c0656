"""Rows of `sponsor_packages`: one per build of a package, its transfer number, state, progress, file and what it
delivered (the DV records' fingerprints, the audit checkpoint it carries)."""

from __future__ import annotations

from typing import Any

from trialcoord.kernel.database.engine import fetch

_COLUMNS = (
    "p.id, s.code AS study, p.transfer, p.rebuild_of, p.as_of, p.sites, p.privacy, p.unblinded, p.state, p.progress,"
    " p.message, p.made_by, p.created_at, p.finished_at, p.sha256, p.size"
)
_FROM = "FROM sponsor_packages p JOIN studies s ON s.id = p.study"


async def insert(values: dict[str, Any]) -> int:
    names = ", ".join(values)
    marks = ", ".join("{}" for _ in values)
    rows = await fetch(f"INSERT INTO sponsor_packages ({names}) VALUES ({marks}) RETURNING id", *values.values())
    return int(rows[0]["id"])


async def update(package_id: int, **values: Any) -> None:
    assignments = ", ".join(f"{name} = {{}}" for name in values)
    await fetch(f"UPDATE sponsor_packages SET {assignments} WHERE id = {{}}", *values.values(), package_id)


async def of_study(study_id: int) -> list[dict[str, Any]]:
    return await fetch(f"SELECT {_COLUMNS} {_FROM} WHERE p.study = {{}} ORDER BY p.id DESC", study_id)


async def find(study_id: int, package_id: int) -> dict[str, Any] | None:
    rows = await fetch(f"SELECT {_COLUMNS} {_FROM} WHERE p.study = {{}} AND p.id = {{}}", study_id, package_id)
    return rows[0] if rows else None


async def first_build(study_id: int, transfer: int) -> dict[str, Any] | None:
    """The finished build that made `transfer` (not a rebuild of it), with its checkpoint."""
    rows = await fetch(
        f"SELECT {_COLUMNS}, p.checkpoint {_FROM} WHERE p.study = {{}} AND p.transfer = {{}} AND p.rebuild_of IS NULL"
        " AND p.state = 'done'",
        study_id,
        transfer,
    )
    return rows[0] if rows else None


async def last_transfer(study_id: int) -> int:
    """The highest transfer number taken: a failed first build gives its number back."""
    rows = await fetch(
        "SELECT MAX(transfer) AS last FROM sponsor_packages WHERE study = {} AND rebuild_of IS NULL"
        " AND state <> 'failed'",
        study_id,
    )
    return int(rows[0]["last"] or 0)


async def delivered(study_id: int, before: int, sites: str, privacy: str, unblinded: int) -> dict[str, Any] | None:
    """The latest earlier transfer with the same sites, privacy and blinding, as its first build delivered it: its
    transfer and DV records (JSON). Packages of another scope deliver other records: no basis to compare. First
    builds only, so a rebuild of a transfer compares with what its first build compared with, whatever was rebuilt
    since."""
    rows = await fetch(
        "SELECT transfer, deviations FROM sponsor_packages WHERE study = {} AND transfer < {} AND state = 'done'"
        " AND rebuild_of IS NULL AND sites = {} AND privacy = {} AND unblinded = {} ORDER BY transfer DESC LIMIT 1",
        study_id,
        before,
        sites,
        privacy,
        unblinded,
    )
    return rows[0] if rows else None


async def building(study_id: int) -> bool:
    rows = await fetch("SELECT id FROM sponsor_packages WHERE study = {} AND state = 'building' LIMIT 1", study_id)
    return bool(rows)


async def finish(package_id: int, **values: Any) -> bool:
    """Record a build as done, unless it is no longer building (a server start judged it dead): True if recorded."""
    assignments = ", ".join(f"{name} = {{}}" for name in values)
    rows = await fetch(
        f"UPDATE sponsor_packages SET {assignments} WHERE id = {{}} AND state = 'building' RETURNING id",
        *values.values(),
        package_id,
    )
    return bool(rows)


async def fail_stale(message: str, now: str, stale_before: str) -> int:
    """Builds whose process stopped saying it is alive before `stale_before`: failed, with why (nothing half-made
    is ever offered). A build another process is running keeps its heartbeat fresh and is left alone."""
    rows = await fetch(
        "UPDATE sponsor_packages SET state = 'failed', message = {}, finished_at = {} WHERE state = 'building'"
        " AND (heartbeat IS NULL OR heartbeat < {}) RETURNING id",
        message,
        now,
        stale_before,
    )
    return len(rows)
