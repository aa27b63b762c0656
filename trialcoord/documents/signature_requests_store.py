"""Rows of signature requests (migration 9): who was asked to sign which version with which meaning, by whom, the
reminders sent, and the signature that fulfilled it. Writes run in the caller's `transaction()`."""

from __future__ import annotations

from trialcoord.kernel.database.engine import fetch

COLUMNS = (
    "r.id, r.version, r.signer_id, r.meaning, r.requested_by, r.requested_at, r.reminders, r.reminded_at,"
    " r.fulfilled_at, r.signature"
)
# A request with its version and document: what the lists show and the use cases judge.
WITH_VERSION = (
    f"SELECT {COLUMNS}, v.label, v.status, d.study, d.site, d.name FROM signature_requests r"
    " JOIN document_versions v ON v.id = r.version JOIN documents d ON d.id = v.document"
)


async def insert(version_id: int, signer_id: str, meaning: str, requested_by: str, at: str) -> int:
    rows = await fetch(
        "INSERT INTO signature_requests (version, signer_id, meaning, requested_by, requested_at, reminders)"
        " VALUES ({}, {}, {}, {}, {}, 0) RETURNING id",
        version_id,
        signer_id,
        meaning,
        requested_by,
        at,
    )
    return rows[0]["id"]


async def open_request(version_id: int, signer_id: str, meaning: str) -> dict | None:
    rows = await fetch(
        f"{WITH_VERSION} WHERE r.version = {{}} AND r.signer_id = {{}} AND r.meaning = {{}} AND r.fulfilled_at IS NULL",
        version_id,
        signer_id,
        meaning,
    )
    return rows[0] if rows else None


async def find(request_id: int) -> dict | None:
    rows = await fetch(f"{WITH_VERSION} WHERE r.id = {{}}", request_id)
    return rows[0] if rows else None


async def of_version(version_id: int) -> list[dict]:
    """The version's requests, oldest first."""
    return await fetch(f"{WITH_VERSION} WHERE r.version = {{}} ORDER BY r.id", version_id)


async def open_for(signer_id: str) -> list[dict]:
    """The signer's open requests, oldest first."""
    return await fetch(f"{WITH_VERSION} WHERE r.signer_id = {{}} AND r.fulfilled_at IS NULL ORDER BY r.id", signer_id)


async def remind(request_id: int, at: str) -> int:
    """One more reminder of an open request; the number sent so far (0: the request was fulfilled meanwhile)."""
    rows = await fetch(
        "UPDATE signature_requests SET reminders = reminders + 1, reminded_at = {} WHERE id = {}"
        " AND fulfilled_at IS NULL RETURNING reminders",
        at,
        request_id,
    )
    return rows[0]["reminders"] if rows else 0


async def fulfil(version_id: int, signer_id: str, meaning: str, at: str, signature_id: int) -> list[int]:
    """The open requests this signature answers, marked fulfilled by it; their IDs."""
    rows = await fetch(
        "UPDATE signature_requests SET fulfilled_at = {}, signature = {} WHERE version = {} AND signer_id = {}"
        " AND meaning = {} AND fulfilled_at IS NULL RETURNING id",
        at,
        signature_id,
        version_id,
        signer_id,
        meaning,
    )
    return [row["id"] for row in rows]
