"""Rows <-> domain objects. Simple CRUD goes through piccolo tables; bulk paths through plain SQL.

Writes run inside the caller's `transaction()`; nothing here commits. Lists of text keys are
sorted in Python, so the order is the same on every engine whatever the database's collation.

The parts, each importing only those before it: `studies.py` (studies and their protocol versions), `sites.py`
(sites, their calendars and closures), `inputs.py` (`ScheduleInputs`, what the schedule engine needs about
participants, and their recorded events), `visits.py` (stored visits: `StoredVisit`, reading and updating them,
the worklist SQL, saving evaluations), `participants.py` (participants, their protocol changes, one
participant's engine inputs and stored visits), `consents.py` (the consent records the schedule reads). This
module holds what the parts share: `now`, `as_date`, `select_in`, `stored`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from trialcoord.kernel.database.engine import fetch_rows


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
