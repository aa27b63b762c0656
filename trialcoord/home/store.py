"""What the home page and the navigation count in one statement each, across every study and site a role works
at: visits, deviations in some states, audit entries since an instant; the document versions a user signed;
failed sign-ins; each study's last detection run.

Like the sponsor package's store, it reads the tables of the features below it directly (docs/architecture.md):
a count per study and source through their use cases would cost a read each on every page the navigation is on.
Each condition is the one the list it counts shows (tests pin them to the worklists' and the queue's).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, timedelta
from typing import Any

from trialcoord.home.rules.tasks import Scope
from trialcoord.kernel.database.engine import fetch, fetch_rows

# A visit still to do: not done, not marked missed, applicable (scheduling.worklists' condition).
OPEN = "x.actual IS NULL AND x.missed_reason IS NULL AND x.status <> 'not_applicable'"
# Its window closes within the days asked, and nothing is booked from today on: (today, last day, today).
CLOSING = (
    f"{OPEN} AND NOT x.optional AND x.latest BETWEEN {{}} AND {{}} AND (x.appointment IS NULL OR x.appointment < {{}})"
)
BOOKED = f"{OPEN} AND x.appointment = {{}}"  # (today,)
OVERDUE = f"{OPEN} AND NOT x.optional AND x.latest < {{}}"  # (today,): the worklist "overdue"


def closing_args(today: date, days: int) -> tuple[date, date, date]:
    return today, today + timedelta(days=days - 1), today


def scoped(scopes: Sequence[Scope], study: str = "st.code", site: str = "s.code") -> tuple[str, list[Any]]:
    """SQL keeping the rows of these scopes (none: no row), and its arguments."""
    parts, args = [], []
    for scope in scopes:
        if scope.sites is None:
            parts.append(f"{study} = {{}}")
            args.append(scope.study)
        else:
            parts.append(f"({study} = {{}} AND {site} IN ({', '.join('{}' for _ in scope.sites)}))")
            args += [scope.study, *sorted(scope.sites)]
    return (f"({' OR '.join(parts)})" if parts else "1 = 0"), args


async def visit_counts(scopes: Sequence[Scope], today: date, closing_days: int) -> tuple[int, int, int]:
    """(booked today, windows closing without a booking, overdue) at these scopes' participants."""
    if not scopes:
        return 0, 0, 0
    where, args = scoped(scopes)
    rows = await fetch(
        f"SELECT SUM(CASE WHEN {BOOKED} THEN 1 ELSE 0 END) AS booked,"
        f" SUM(CASE WHEN {CLOSING} THEN 1 ELSE 0 END) AS closing,"
        f" SUM(CASE WHEN {OVERDUE} THEN 1 ELSE 0 END) AS overdue"
        " FROM visits x JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site"
        f" JOIN studies st ON st.id = p.study WHERE {where} AND {OPEN}"
        " AND (x.appointment = {} OR x.latest <= {})",  # what may count, narrowed by the indexes
        today,
        *closing_args(today, closing_days),
        today,
        *args,
        today,
        today + timedelta(days=closing_days - 1),
    )
    row = rows[0]
    return int(row["booked"] or 0), int(row["closing"] or 0), int(row["overdue"] or 0)


async def deviation_count(scopes: Sequence[Scope], states: Collection[str]) -> int:
    """Deviations in `states` at these scopes' sites."""
    if not scopes or not states:
        return 0
    where, args = scoped(scopes)
    rows = await fetch(
        "SELECT COUNT(*) AS n FROM deviations d JOIN studies st ON st.id = d.study JOIN sites s ON s.id = d.site"
        f" WHERE {where} AND d.state IN ({', '.join('{}' for _ in states)})",
        *args,
        *sorted(states),
    )
    return int(rows[0]["n"])


async def trail_count(prefixes: Collection[str], since: str) -> int:
    """Audit entries recorded at or after `since` whose record ID starts with one of `prefixes` (each ending in
    '/', and covering the record it names: `STUDY/` covers `STUDY`), as the trail's own filter reads them."""
    if not prefixes:
        return 0
    parts, args = [], []
    for prefix in sorted(prefixes):
        parts.append("substr(record_id, 1, {}) = {} OR record_id = {}")
        args += [len(prefix), prefix, prefix[:-1]]
    rows = await fetch(
        f"SELECT COUNT(*) AS n FROM audit_entries WHERE recorded_at >= {{}} AND ({' OR '.join(parts)})", since, *args
    )
    return int(rows[0]["n"])


async def records_changed(prefixes: Collection[str], record_type: str, since: str) -> set[str]:
    """The IDs of the records of `record_type` under `prefixes` with an audit entry at or after `since`."""
    if not prefixes:
        return set()
    parts, args = [], []
    for prefix in sorted(prefixes):
        parts.append("substr(record_id, 1, {}) = {}")
        args += [len(prefix), prefix]
    rows = await fetch_rows(
        "SELECT DISTINCT record_id FROM audit_entries WHERE record_type = {} AND recorded_at >= {}"
        f" AND ({' OR '.join(parts)})",
        record_type,
        since,
        *args,
    )
    return {row[0] for row in rows}


async def signed_by(user_id: str) -> set[tuple[str, str | None, str, str]]:
    """(study, site or None, document, version label) of every version `user_id` signed."""
    rows = await fetch_rows(
        "SELECT d.study, d.site, d.name, v.label FROM document_signatures g"
        " JOIN document_versions v ON v.id = g.version JOIN documents d ON d.id = v.document WHERE g.signer_id = {}",
        user_id,
    )
    return {(study, site or None, name, label) for study, site, name, label in rows}


async def failures_since(since: str) -> list[tuple[str, str]]:
    """(user ID, instant) of failed sign-ins after `since` and after the user's last successful one: what a
    lock-out is judged on."""
    rows = await fetch_rows(
        "SELECT a.user_id, a.attempted_at FROM login_attempts a WHERE a.outcome = 'failed' AND a.attempted_at > {}"
        " AND a.attempted_at > COALESCE((SELECT MAX(b.attempted_at) FROM login_attempts b"
        " WHERE b.user_id = a.user_id AND b.outcome = 'succeeded'), '')",
        since,
    )
    return [(user_id, at) for user_id, at in rows]


async def sign_in_problems_since(since: str) -> int:
    """Failed and refused sign-ins at or after `since`."""
    rows = await fetch(
        "SELECT COUNT(*) AS n FROM login_attempts WHERE outcome IN ('failed', 'refused') AND attempted_at >= {}", since
    )
    return int(rows[0]["n"])


async def last_detection_runs() -> list[dict[str, Any]]:
    """Each study's latest detection run (study, ran_at, as_of, scope; None when it never had one)."""
    return await fetch(
        "SELECT st.code AS study, r.ran_at, r.as_of, r.scope FROM studies st LEFT JOIN deviation_runs r"
        " ON r.id = (SELECT MAX(q.id) FROM deviation_runs q WHERE q.study = st.id)"
    )
