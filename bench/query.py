"""Study-wide "missed or out of window" worklist over 1,000,000 stored visits:
`worklists.worklist(study, as_of, kind="missed_or_out_of_window")` vs the same SQL (same joins, same
WHERE, ORDER BY instead of the sort in Python) through the raw driver. Goal: at most 1.5x on both engines.

The visits (50,000 participants x 20) are seeded with raw executemany (SQLite) or COPY (PostgreSQL):
mostly done on time, about 5% of all stored visits missed, late or early.
Run: `.venv/bin/python -m bench.query [--quick]`.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from collections import Counter
from contextlib import closing

import asyncpg

from bench.common import (
    AS_OF,
    STUDY,
    VISIT_COLUMNS,
    VISITS,
    atimed,
    enrol_study,
    insert_visit_sql,
    on_each_engine,
    perturbed_actuals,
    ratio_line,
    raw_sqlite_path,
    temp_database,
    timed,
    visit_params,
)
from trialcoord.scheduling import protocols, worklists
from trialcoord.scheduling.rules.schedule import evaluate

RUNS = 3
KIND = "missed_or_out_of_window"
CONDITION = worklists._WORKLISTS[KIND][0]  # the service's own WHERE, so both sides ask the same question
RAW_SQL = (
    "SELECT x.*, p.subject_id, s.code AS site, pv.version FROM visits x"
    " JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site"
    " JOIN protocol_versions pv ON pv.id = x.protocol_version"
    " WHERE p.study = {} AND (" + CONDITION + ")"
    " ORDER BY p.subject_id, COALESCE(x.target, x.appointment), x.code"
)


def seed_rows(protocol, people, version, statuses: Counter):
    """The stored visits: every participant evaluated as of AS_OF with perturbed actual dates."""
    rng = random.Random(3)
    for participant_id, randomized in people.values():
        actuals, _ = perturbed_actuals(protocol, randomized, rng)
        for visit in evaluate(protocol, {"randomization": randomized}, actuals, AS_OF):
            statuses[visit.status] += 1
            yield visit_params(participant_id, version, visit, AS_OF)


async def seed(kind: str, url: str, rows) -> None:
    if kind == "sqlite":
        with closing(sqlite3.connect(raw_sqlite_path(url))) as connection, connection:
            connection.executemany(insert_visit_sql(lambda i: "?"), rows)
        return
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table("visits", records=rows, columns=VISIT_COLUMNS)
        await connection.execute("VACUUM ANALYZE visits")  # what autovacuum does soon after a bulk load
    finally:
        await connection.close()


def sqlite_query(path: str, study_id: int, detect_types: int = 0) -> int:
    with closing(sqlite3.connect(path, detect_types=detect_types)) as connection:
        return len(connection.execute(RAW_SQL.format("?", "?"), (study_id, AS_OF)).fetchall())


async def postgres_query(connection: asyncpg.Connection, study_id: int) -> int:
    return len(await connection.fetch(RAW_SQL.format("$1", "$2"), study_id, AS_OF))


async def run(kind: str, participants: int) -> None:
    async with temp_database(kind) as url:
        protocol, people, version = await enrol_study(participants)
        statuses = Counter()
        seconds, _ = await atimed(seed(kind, url, seed_rows(protocol, people, version, statuses)))
        stored = sum(statuses.values())
        flagged = statuses["missed"] + statuses["late"] + statuses["early"]
        study_id = (await protocols.require_study(STUDY)).id
        print(
            f"  {kind:<8}  seeded {stored:,} visits in {seconds:.1f} s; missed {statuses['missed']:,},"
            f" late {statuses['late']:,}, early {statuses['early']:,} ({flagged / stored:.1%})"
        )
        ours = base = typed = float("inf")
        connection = None if kind == "sqlite" else await asyncpg.connect(url)
        try:
            for _ in range(RUNS):
                seconds, rows = await atimed(worklists.worklist(STUDY, AS_OF, kind=KIND))
                ours = min(ours, seconds)
                if kind == "sqlite":
                    seconds, count = timed(sqlite_query, raw_sqlite_path(url), study_id)
                    typed = min(typed, timed(sqlite_query, raw_sqlite_path(url), study_id, sqlite3.PARSE_DECLTYPES)[0])
                else:
                    seconds, count = await atimed(postgres_query(connection, study_id))
                base = min(base, seconds)
                assert count == len(rows), (count, len(rows))
        finally:
            if connection is not None:
                await connection.close()
        print(f"  {'':<8}  worklist()          {ours:7.3f} s  {len(rows):,} rows")
        print(f"  {'':<8}  raw SQL             {base:7.3f} s")
        if kind == "sqlite":
            print(f"  {'':<8}  raw SQL, dates parsed (PARSE_DECLTYPES, for reference) {typed:7.3f} s")
        print(ratio_line(kind, ours / base, "<= 1.5x", ours / base <= 1.5))


def main(quick: bool = False) -> None:
    participants = 5_000 if quick else 50_000
    print(f"query: '{KIND}' worklist over {participants * VISITS:,} stored visits")
    on_each_engine(run, participants)


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
