"""Persist the schedules of 10,000 participants (200,000 visits) with `schedules.persist_schedules`;
ratio to a raw `executemany` of the same rows into the same `visits` table on the same engine
(sqlite3 on the SQLite file, asyncpg on PostgreSQL). Goal: at most 2x on both engines.

Run: `.venv/bin/python -m bench.persist [--quick]`.
"""

from __future__ import annotations

import random
import sqlite3
import sys
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
from trialcoord.kernel.database.engine import bound_engine, fetch, is_sqlite
from trialcoord.scheduling import schedules
from trialcoord.scheduling.rules.schedule import evaluate

RUNS = 2  # alternating: ours, raw, ours, raw; the best of each counts


def sqlite_executemany(path: str, params: list[tuple]) -> None:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA foreign_keys = 1")  # as piccolo's connections
        with connection:
            connection.executemany(insert_visit_sql(lambda i: "?"), params)


async def postgres_executemany(url: str, params: list[tuple]) -> None:
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.executemany(insert_visit_sql(lambda i: f"${i}"), params)
    finally:
        await connection.close()


async def postgres_copy(url: str, params: list[tuple]) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table("visits", records=params, columns=VISIT_COLUMNS)
    finally:
        await connection.close()


async def clear_visits() -> None:
    await fetch("DELETE FROM visits")
    if not is_sqlite():
        await bound_engine().run_ddl("VACUUM ANALYZE visits")  # no dead rows left to slow the next run


async def run(kind: str, participants: int) -> None:
    async with temp_database(kind) as url:
        protocol, people, version = await enrol_study(participants)
        rng = random.Random(2)
        rows = []
        for subject, (_, randomized) in people.items():
            actuals, _ = perturbed_actuals(protocol, randomized, rng)
            rows += [(subject, visit) for visit in evaluate(protocol, {"randomization": randomized}, actuals, AS_OF)]
        params = [visit_params(people[subject][0], version, visit, AS_OF) for subject, visit in rows]
        ours = base = float("inf")
        for _ in range(RUNS):
            await clear_visits()
            seconds, saved = await atimed(schedules.persist_schedules(STUDY, rows, evaluated_on=AS_OF))
            assert saved.inserted == len(rows), saved
            ours = min(ours, seconds)
            await clear_visits()
            if kind == "sqlite":
                seconds, _ = timed(sqlite_executemany, raw_sqlite_path(url), params)
            else:
                seconds, _ = await atimed(postgres_executemany(url, params))
            base = min(base, seconds)
        print(f"  {kind:<8}  persist_schedules   {ours:7.3f} s  {len(rows) / ours / 1e3:6.1f} k rows/s")
        print(f"  {'':<8}  raw executemany     {base:7.3f} s  {len(rows) / base / 1e3:6.1f} k rows/s")
        if kind == "postgres":
            await clear_visits()
            seconds, _ = await atimed(postgres_copy(url, params))
            print(f"  {'':<8}  raw COPY (for reference) {seconds:7.3f} s")
        print(ratio_line(kind, ours / base, "<= 2x", ours / base <= 2))


def main(quick: bool = False) -> None:
    participants = 1_000 if quick else 10_000
    print(f"persist: {participants:,} participants x {VISITS} visits = {participants * VISITS:,} visits")
    on_each_engine(run, participants)


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
