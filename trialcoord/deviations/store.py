"""Rows of deviations (migration 6): the queue's columns, manual and detected records, their optimistic updates,
the records a detection run compares and creates.

The feature's other rows (migration 6 too) have stores of their own: review steps and signatures
`review_store`, window exceptions `window_exceptions_store`, CAPA records `capa_store`, detection runs and what
they read beyond the deviations `detection_store`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from trialcoord.kernel.database.engine import execute_many, fetch, fetch_rows, is_sqlite

COLUMNS = (
    "d.id, d.visit, d.occurrence, d.rule, d.source, d.category, d.subcategory, d.classification, d.state,"
    " d.occurred_on, d.days_outside, d.description, d.site_reason, d.corrective_action, d.capa,"
    " d.detected_at, d.updated_at, d.closed_at, d.resolved_by_entry, d.row_version, d.participant,"
    " p.subject_id, s.code AS site"
)
_FROM = "deviations d JOIN sites s ON s.id = d.site LEFT JOIN participants p ON p.id = d.participant"


def among(column: str, ids: Collection[int] | None) -> str:
    """` AND column IN (...)` for a scope of integer ids (inlined: they are ints, and a scope can be large)."""
    if ids is None:
        return ""
    return f" AND {column} IN ({', '.join(str(int(i)) for i in ids) or 'NULL'})"


async def detected_at(study_id: int, at: str, participants: Collection[int]) -> list[dict[str, Any]]:
    """The deviations a run created for these participants (they carry its instant)."""
    return await fetch(
        f"SELECT {COLUMNS} FROM {_FROM} WHERE d.study = {{}} AND d.detected_at = {{}}"
        f"{among('d.participant', participants)}",
        study_id,
        at,
    )


KEPT = (
    "id",
    "participant",
    "visit",
    "occurrence",
    "rule",
    "state",
    "occurred_on",
    "days_outside",
    "description",
    "row_version",
    "resolved_by_entry",
)


async def kept(study_id: int, scope: Collection[int] | None) -> list[Sequence[Any]]:
    """Automatic deviations of the study (of the participants in `scope`): the `KEPT` columns, as driver rows
    (a detection run compares tens of thousands; it names only the ones that changed)."""
    # For a scope, `+d.study` keeps SQLite (no statistics) on the participant index instead of walking every
    # deviation of the study through the study's.
    study = "d.study" if scope is None else "+d.study"
    return await fetch_rows(
        f"SELECT {', '.join(f'd.{name}' for name in KEPT)} FROM deviations d"
        f" WHERE {study} = {{}} AND d.rule IS NOT NULL{among('d.participant', scope)}",
        study_id,
    )


async def insert_deviations(rows: Iterable[Sequence[Any]]) -> None:
    """rows: (study, participant, site, visit, occurrence, rule, source, category, subcategory, classification,
    state, occurred_on, days_outside, description, detected_at)."""
    await execute_many(
        "INSERT INTO deviations (study, participant, site, visit, occurrence, rule, source, category, subcategory,"
        " classification, state, occurred_on, days_outside, description, detected_at, updated_at, row_version)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 1)",
        [(*row, row[-1]) for row in rows],
    )


async def insert_deviation(row: Sequence[Any]) -> int:
    rows = await fetch(
        "INSERT INTO deviations (study, participant, site, visit, occurrence, rule, source, category, subcategory,"
        " classification, state, occurred_on, days_outside, description, detected_at, updated_at, row_version)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 1) RETURNING id",
        *row,
        row[-1],
    )
    return rows[0]["id"]


async def find(study_id: int, deviation_id: int) -> dict[str, Any] | None:
    rows = await fetch(f"SELECT {COLUMNS} FROM {_FROM} WHERE d.study = {{}} AND d.id = {{}}", study_id, deviation_id)
    return rows[0] if rows else None


async def lock(deviation_id: int) -> None:
    if not is_sqlite():
        await fetch("SELECT id FROM deviations WHERE id = {} FOR UPDATE", deviation_id)


async def update(deviation_id: int, row_version: int, **values: Any) -> bool:
    """Optimistic: False when the row moved on meanwhile."""
    sets = ", ".join(f"{name} = {{}}" for name in values)
    rows = await fetch(
        f"UPDATE deviations SET {sets}, row_version = row_version + 1 WHERE id = {{}}"
        " AND row_version = {} RETURNING id",
        *values.values(),
        deviation_id,
        row_version,
    )
    return bool(rows)


async def listing(
    study_id: int,
    where: str = "",
    args: Sequence[Any] = (),
    order: str = "d.id",
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """`where` filters the deviation row `d` only: the page's ids come from an index (study, detected_at, id)
    alone, and only those rows are joined (a deep page costs an index walk, not a join per skipped row)."""
    page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    ids = [
        row[0]
        for row in await fetch_rows(
            f"SELECT d.id FROM deviations d WHERE d.study = {{}}{where} ORDER BY {order}{page}", study_id, *args
        )
    ]
    return await rows_of(ids)


async def keyset_page(
    study_id: int,
    where: str,
    args: Sequence[Any],
    sort: str,
    descending: bool,
    after: tuple[Any, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A page of the queue sorted by the SQL expression `sort` (over `d`, its site `s` and participant `p`), then by
    id, `limit` rows past the cursor `after` (the last row's sort value and id): no OFFSET, so a deep page costs
    what the first does. `where` filters `d` as in `listing`."""
    direction, beyond = ("DESC", "<") if descending else ("ASC", ">")
    keyset, past = "", []
    if after is not None:
        keyset = f" AND ({sort} {beyond} {{}} OR ({sort} = {{}} AND d.id {beyond} {{}}))"
        past = [after[0], after[0], after[1]]
    ids = [
        row[0]
        for row in await fetch_rows(
            "SELECT d.id FROM deviations d JOIN sites s ON s.id = d.site"
            f" LEFT JOIN participants p ON p.id = d.participant WHERE d.study = {{}}{where}{keyset}"
            f" ORDER BY {sort} {direction}, d.id {direction} LIMIT {int(limit)}",
            study_id,
            *args,
            *past,
        )
    ]
    return await rows_of(ids)


async def rows_of(ids: Sequence[int]) -> list[dict[str, Any]]:
    """The queue's rows of these deviations, in this order."""
    rows: dict[int, dict] = {}
    for start in range(0, len(ids), 1000):
        for row in await fetch(
            f"SELECT {COLUMNS} FROM {_FROM} WHERE d.id IN ({', '.join(str(int(i)) for i in ids[start : start + 1000])})"
        ):
            rows[row["id"]] = row
    return [rows[i] for i in ids]


async def counts_by_site(study_id: int, sites: Collection[str] | None) -> list[tuple[str, str, int]]:
    """(site code, state, how many) of the study's deviations at `sites` (None: all)."""
    scope = ""
    if sites is not None:
        scope = f" AND s.code IN ({', '.join('{}' for _ in sites) or 'NULL'})"
    return [
        (row[0], row[1], int(row[2]))
        for row in await fetch_rows(
            f"SELECT s.code, d.state, COUNT(*) FROM deviations d JOIN sites s ON s.id = d.site WHERE d.study = {{}}"
            f"{scope} GROUP BY s.code, d.state",
            study_id,
            *(sites or ()),
        )
    ]


async def count(study_id: int, where: str = "", args: Sequence[Any] = ()) -> int:
    rows = await fetch(f"SELECT COUNT(*) AS n FROM deviations d WHERE d.study = {{}}{where}", study_id, *args)
    return int(rows[0]["n"])
