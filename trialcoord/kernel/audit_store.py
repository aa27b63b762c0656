"""The audit trail's rows: append (sequence allocated under the head row's lock), stream, browse, checkpoints.

Nothing here updates or deletes an entry; the triggers of migration 2 refuse it anyway. `old`/`new`
are stored as canonical JSON text and `recorded_at` as the `utc_instant` text that was hashed, so a row
reads back with exactly the bytes that were hashed, whatever the engine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trialcoord.kernel.database.engine import execute_many, fetch, fetch_rows
from trialcoord.kernel.rules.audit_entries import AuditEntry, StoredEntry, canonical_json

COLUMNS = "sequence, recorded_at, actor, action, record_type, record_id, old, new, reason, leaf_hash"
BATCH = 10_000


async def allocate(count: int) -> int:
    """Reserve `count` sequence numbers; returns the first. Locks the head row until the transaction ends,
    so concurrent writers append in commit order and a rolled-back transaction leaves no gap."""
    rows = await fetch("UPDATE audit_head SET size = size + {} WHERE id = 1 RETURNING size", count)
    return rows[0]["size"] - count + 1


async def insert(entries: Sequence[StoredEntry]) -> None:
    await execute_many(
        f"INSERT INTO audit_entries ({COLUMNS}) VALUES ({{}}, {{}}, {{}}, {{}}, {{}}, {{}}, {{}}, {{}}, {{}}, {{}})",
        [_row(stored) for stored in entries],
    )


def _row(stored: StoredEntry) -> tuple[Any, ...]:
    e = stored.entry
    as_text = lambda text, value: text if text is not None or value is None else canonical_json(value).decode()  # noqa: E731
    return (
        e.sequence,
        e.recorded_at,
        e.actor,
        e.action,
        e.record_type,
        e.record_id,
        as_text(stored.old_text, e.old),
        as_text(stored.new_text, e.new),
        e.reason,
        stored.leaf_hash.hex(),
    )


async def head_size() -> int:
    return (await fetch("SELECT size FROM audit_head WHERE id = 1"))[0]["size"]


async def stream_batches(up_to: int, batch: int = BATCH) -> AsyncIterator[list[Sequence[Any]]]:
    """Rows (COLUMNS) of entries 1 to `up_to` in ascending sequence, a batch at a time (keyset pagination:
    constant memory). Entries appended meanwhile lie beyond `up_to`: a live system can be verified."""
    after = 0
    while True:
        rows = await fetch_rows(
            f"SELECT {COLUMNS} FROM audit_entries WHERE sequence > {{}} AND sequence <= {{}}"
            f" ORDER BY sequence LIMIT {int(batch)}",
            after,
            up_to,
        )
        if rows:
            yield rows
        if len(rows) < batch or not isinstance(rows[-1][0], int):
            return
        after = rows[-1][0]


async def entries_beyond_head() -> tuple[int, int]:
    """(head size, entries numbered above it), in one statement, hence one snapshot on every engine."""
    rows = await fetch(
        "SELECT h.size, (SELECT COUNT(*) FROM audit_entries e WHERE e.sequence > h.size) AS beyond"
        " FROM audit_head h WHERE h.id = 1"
    )
    return rows[0]["size"], rows[0]["beyond"]


def stored_entry(row: Sequence[Any]) -> StoredEntry:
    """Built from whatever the row holds, even malformed: the verifier then names the entry."""
    sequence, recorded_at, actor, action, record_type, record_id, old, new, reason, leaf = row
    entry = AuditEntry(sequence, recorded_at, actor, action, record_type, record_id, _json(old), _json(new), reason)
    try:
        digest = bytes.fromhex(leaf)
    except (TypeError, ValueError):
        digest = b""
    return StoredEntry(entry, digest)


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text  # a string where a mapping belongs: it will not hash to the stored leaf


@dataclass(frozen=True, slots=True)
class TrailEntry:
    """An entry as read back, for browsing and copies: its fields and its stored leaf hash (hex)."""

    sequence: int
    recorded_at: str
    actor: str
    action: str
    record_type: str
    record_id: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    reason: str | None
    leaf_hash: str


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What the browse pages and exports filter by; every field optional."""

    record_type: str | None = None
    record_id: str | None = None  # exact, or a prefix ending in '/' (a study's or site's records)
    actor: str | None = None
    action: str | None = None
    since: str | None = None  # utc_instant text, inclusive
    until: str | None = None  # exclusive
    within: str | None = None  # record_id prefix every entry must have (the caller's scope)


async def browse(
    where: AuditFilter,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 100,
    newest_first: bool = True,
) -> list[TrailEntry]:
    """Entries matching `where`, a page at a time: `before`/`after` a sequence number (keyset pagination)."""
    clauses: list[str] = []
    args: list[int | str] = []
    for bound, operator in ((before, "<"), (after, ">")):
        if bound is not None:
            clauses.append(f"sequence {operator} {{}}")
            args.append(bound)
    for column, value in (("record_type", where.record_type), ("actor", where.actor), ("action", where.action)):
        if value:
            clauses.append(f"{column} = {{}}")
            args.append(value)
    for prefix in (where.within, where.record_id if where.record_id and where.record_id.endswith("/") else None):
        if prefix:
            # Not LIKE: codes may hold '_' and '%'. 'TST-1/' also covers the study's own record 'TST-1'.
            clauses.append("(substr(record_id, 1, {}) = {} OR record_id = {})")
            args += [len(prefix), prefix, prefix[:-1]]
    if where.record_id and not where.record_id.endswith("/"):
        clauses.append("record_id = {}")
        args.append(where.record_id)
    if where.since:
        clauses.append("recorded_at >= {}")
        args.append(where.since)
    if where.until:
        clauses.append("recorded_at < {}")
        args.append(where.until)
    condition = " AND ".join(clauses) or "1 = 1"
    order = "DESC" if newest_first else "ASC"
    rows = await fetch_rows(
        f"SELECT {COLUMNS} FROM audit_entries WHERE {condition} ORDER BY sequence {order} LIMIT {int(limit)}", *args
    )
    return [_trail_entry(row) for row in rows]


def _trail_entry(row: Sequence[Any]) -> TrailEntry:
    stored = stored_entry(row)
    e = stored.entry
    return TrailEntry(
        e.sequence,
        e.recorded_at,
        e.actor,
        e.action,
        e.record_type,
        e.record_id,
        e.old,
        e.new,
        e.reason,
        stored.leaf_hash.hex(),
    )


async def insert_checkpoint(size: int, root: str, issued_at: str, signed: Mapping[str, Any]) -> None:
    await fetch(
        "INSERT INTO audit_checkpoints (size, root, issued_at, signed) VALUES ({}, {}, {}, {})",
        size,
        root,
        issued_at,
        json.dumps(signed, sort_keys=True),
    )


async def latest_checkpoint() -> dict[str, Any] | None:
    """The newest stored checkpoint's signed JSON document."""
    rows = await fetch("SELECT signed FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
    return json.loads(rows[0]["signed"]) if rows else None


RECORD_COLUMNS = "sequence, actor, action, record_type, record_id, new, reason"


async def stream_records(
    record_types: Sequence[str], up_to: int, batch: int = BATCH
) -> AsyncIterator[list[Sequence[Any]]]:
    """Rows (RECORD_COLUMNS, `new` as stored text) of the entries 1 to `up_to` of `record_types`, in ascending
    sequence, a batch at a time (keyset pagination: constant memory): what reconciling the records reads."""
    if not record_types:
        return
    types = ", ".join("{}" for _ in record_types)
    after = 0
    while True:
        rows = await fetch_rows(
            f"SELECT {RECORD_COLUMNS} FROM audit_entries WHERE sequence > {{}} AND sequence <= {{}}"
            f" AND record_type IN ({types}) ORDER BY sequence LIMIT {int(batch)}",
            after,
            up_to,
            *record_types,
        )
        if rows:
            yield rows
        if len(rows) < batch:
            return
        after = rows[-1][0]
