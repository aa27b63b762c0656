"""Rows <-> domain objects. Simple CRUD goes through piccolo tables; bulk paths through plain SQL.

Writes run inside the caller's `transaction()`; nothing here commits. Lists of text keys are
sorted in Python, so the order is the same on every engine whatever the database's collation.

The parts, each importing only those before it: `studies.py` (studies and their protocol versions), `sites.py`
(sites, their calendars and closures), `inputs.py` (`ScheduleInputs`, what the schedule engine needs about
participants, and their recorded events), `visits.py` (stored visits: `StoredVisit`, reading and updating them,
the worklist SQL, saving evaluations), `participants.py` (participants, their protocol changes, one
participant's engine inputs and stored visits), `consents.py` (the consent records the schedule reads). This
module holds what the parts share: `now`, `as_date`, `select_in`, `stored`, and the keyset pages of lists
(`SortKey`, `keyset_page`, `contains`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from trialcoord.kernel.database.engine import fetch_rows
from trialcoord.kernel.problems import invalid


def now() -> datetime:
    return datetime.now(UTC)


def stored(row: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """A row just written, or known to exist, read back in the same transaction."""
    if row is None:
        raise LookupError(f"{what} is not stored")
    return row


def as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def select_in(sql: str, ids: Iterable[int], chunk: int = 500) -> list:
    """Rows (tuples) of `sql` with `IN ({})` run over chunks of ids, so no statement exceeds a parameter limit."""
    ids = sorted(ids)
    rows: list = []
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        rows += await fetch_rows(sql.replace("({})", f"({', '.join(['{}'] * len(part))})"), *part)
    return rows


# Keyset pages ----------------------------------------------------------------------------------
NO_DAY = "'0001-01-01'"  # what a missing date sorts as (first, as the pages' lists in memory put None)


@dataclass(frozen=True, slots=True)
class SortKey:
    """One column of a list's order: its SQL (never NULL: COALESCE a nullable column) and the kind of its values,
    `text`, `date` or `int`, by which a cursor's JSON value is read back."""

    sql: str
    kind: str = "text"


async def keyset_page(
    select: str,
    where: str,
    args: Sequence[Any],
    keys: Sequence[SortKey],
    descending: bool,
    after: Sequence[Any] | None,
    size: int,
) -> list[tuple[tuple[Any, ...], Sequence[Any]]]:
    """Up to `size` rows of `select ... WHERE where` past `after` (the key of the last row shown) in the order of
    `keys`, whose last is unique: `WHERE (k1, k2, id) > (...) ORDER BY k1, k2, id LIMIT size`, row values that
    SQLite (3.15 and later) and PostgreSQL both compare, so page 70 costs what page 1 costs. Each row comes with its
    key as the cursor holds it (dates as ISO text)."""
    columns, _, tables = select.partition(" FROM ")
    values = list(args)
    if after is not None:
        if len(after) != len(keys):
            raise _not_a_cursor()
        where += (
            f" AND ({', '.join(k.sql for k in keys)}) {'<' if descending else '>'} ({', '.join('{}' for _ in keys)})"
        )
        values += [_read(key, value) for key, value in zip(keys, after)]
    order = ", ".join(key.sql + (" DESC" if descending else "") for key in keys)
    rows = await fetch_rows(
        f"{columns}, {', '.join(k.sql for k in keys)} FROM {tables} WHERE {where} ORDER BY {order} LIMIT {{}}",
        *values,
        size,
    )
    width = len(keys)
    return [(tuple(_cursor_value(k, v) for k, v in zip(keys, raw[-width:])), raw[:-width]) for raw in rows]


def contains(column: str, text: str) -> tuple[str, str]:
    """A condition that `column` holds `text`, whatever the case, and its argument (LIKE with its wildcards
    escaped; LOWER on both sides, as SQLite's LIKE ignores ASCII case and PostgreSQL's does not)."""
    escaped = text.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"LOWER({column}) LIKE {{}} ESCAPE '!'", f"%{escaped}%"


def among(column: str, values: Collection[str] | None) -> tuple[str, list[str]]:
    """A condition that `column` is one of `values` (None: any; none at all: no row)."""
    if values is None:
        return "1 = 1", []
    if not values:
        return "1 = 0", []
    return f"{column} IN ({', '.join('{}' for _ in values)})", sorted(values)


def _read(key: SortKey, value: Any) -> Any:
    try:
        if key.kind == "date":
            return date.fromisoformat(value)
        if key.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(value)
            return value
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    except (TypeError, ValueError):
        raise _not_a_cursor() from None


def _cursor_value(key: SortKey, value: Any) -> Any:
    return as_date(value).isoformat() if key.kind == "date" else value


def _not_a_cursor():
    return invalid("not a cursor of this list (follow the page's Next link)", field="after")
