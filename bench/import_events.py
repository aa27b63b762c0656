"""`import events` of a multi-site event file (issue 12), on SQLite and PostgreSQL:

`importing.import_events` of 1,000,000 rows (100,000 participants at 100 sites, a site column; each a
randomization and nine visits of the 20-visit bench protocol, some unscheduled) vs a raw `executemany` of the
same rows (participant, event, date, site) into a table of those four columns, through the raw driver
(sqlite3 / asyncpg). The import also checks every row, enrols the participants and evaluates and stores their
schedules (20 visits each). Goal: at most 3x. Also printed: the process's peak memory growth during the
import against the size of the file (goal: under 2x).

The same for `import sdtm` (issue 12): SV (the nine visits), DS (RANDOMIZED) and DM (SITEID) of the same
participants as SAS transport v5 files written by pyreadstat, read and imported by `import_sdtm`, against the
raw `executemany` of the same rows; memory against the three files' size.

Run: `.venv/bin/python -m bench.import_events [--quick | --scale S]` (--quick: 100,000 rows).
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import sqlite3
import tempfile
import threading
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import asyncpg

from bench.common import AS_OF, PROTOCOL_TEXT, STUDY, atimed, on_each_engine, ratio_line, raw_sqlite_path, temp_database
from trialcoord.scheduling import importing, protocols, sites
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.sdtm.datasets import read_dataset

SITES, ROWS_EACH = 100, 10
RAW_TABLE = "CREATE TABLE bench_rows (participant TEXT NOT NULL, event TEXT NOT NULL, date DATE NOT NULL, site TEXT)"


def event_file(participants: int, seed: int = 7) -> tuple[str, list[tuple]]:
    """The CSV text and its rows: randomization, then V3..V11 near their targets (every 50th visit an
    unscheduled one instead), participants spread over SITES sites and the 400 days before AS_OF."""
    rng = random.Random(seed)
    lines, rows = ["participant,event,date,site"], []
    for i in range(participants):
        site = f"{100 + i % SITES}"
        subject = f"{site}-{i:06d}"
        randomized = AS_OF - timedelta(days=400 + rng.randrange(200))
        facts = [("randomization", randomized)]
        for n in range(3, 3 + ROWS_EACH - 1):  # V3 is week 2, every two weeks after
            day = randomized + timedelta(weeks=2 * (n - 2), days=rng.randint(-2, 2))
            facts.append((f"V{n}" if rng.random() > 0.02 else "UNSCHEDULED", day))
        for event, day in facts:
            rows.append((subject, event, day, site))
            lines.append(f"{subject},{event},{day.isoformat()},{site}")
    return "\n".join(lines) + "\n", rows


def _rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


class _PeakRss:
    """The largest resident size reached while inside, above the size on entering (sampled every 5 ms)."""

    def __enter__(self):
        self.start = self.peak = _rss_kb()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, _rss_kb())

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, _rss_kb())

    @property
    def growth_kb(self) -> int:
        return self.peak - self.start


async def raw_insert(kind: str, url: str, rows: list[tuple]) -> None:
    if kind == "sqlite":
        with closing(sqlite3.connect(raw_sqlite_path(url))) as connection, connection:
            connection.execute("DROP TABLE IF EXISTS bench_rows")
            connection.execute(RAW_TABLE)
            connection.executemany("INSERT INTO bench_rows VALUES (?, ?, ?, ?)", rows)
        return
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute("DROP TABLE IF EXISTS bench_rows")
            await connection.execute(RAW_TABLE)
            await connection.executemany("INSERT INTO bench_rows VALUES ($1, $2, $3, $4)", rows)
    finally:
        await connection.close()


def sdtm_files(rows: list[tuple], folder: Path) -> list[Path]:
    """SV, DS and DM of the event rows as XPT v5 (the form a CRO sends), written by pyreadstat."""
    import pandas as pd
    import pyreadstat

    numbers = {f"V{n}": float(n) for n in range(3, 3 + ROWS_EACH)}
    sv = [
        (s, numbers.get(e, 99.0), e if e != "UNSCHEDULED" else "UNSCHEDULED 99", d.isoformat())
        for s, e, d, _ in rows
        if e != "randomization"
    ]
    ds = [(s, "RANDOMIZED", "PROTOCOL MILESTONE", d.isoformat()) for s, e, d, _ in rows if e == "randomization"]
    dm = [(s, site, "") for s, e, _, site in rows if e == "randomization"]
    paths = []
    for name, columns, data in (
        ("SV", ["USUBJID", "VISITNUM", "VISIT", "SVSTDTC"], sv),
        ("DS", ["USUBJID", "DSDECOD", "DSCAT", "DSSTDTC"], ds),
        ("DM", ["USUBJID", "SITEID", "ARMCD"], dm),
    ):
        frame = pd.DataFrame(data, columns=columns)
        frame.insert(0, "STUDYID", STUDY)
        path = folder / f"{name.lower()}.xpt"
        pyreadstat.write_xport(frame, str(path), file_format_version=5, table_name=name)
        paths.append(path)
    return paths


STORED = ("participants", "recorded_events", "visits", "audit_entries")  # what an import writes


async def raw_rewrite(kind: str, url: str) -> tuple[float, int]:
    """The time a raw `executemany` takes to write the rows the import stored (read back first, not timed) into
    copies of the same tables with the same indexes (no triggers or foreign keys): the floor an import that
    stores these rows could reach. Returns (seconds, rows)."""
    total, count = 0.0, 0
    if kind == "sqlite":
        with closing(sqlite3.connect(raw_sqlite_path(url))) as connection:
            for table in STORED:
                rows = connection.execute(f"SELECT * FROM {table}").fetchall()
                ddl = connection.execute(
                    "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
                    " AND type IN ('table', 'index') ORDER BY type DESC",
                    (table,),
                ).fetchall()
                for kind_, statement in ddl:  # the table first, then its indexes, renamed
                    if kind_ == "table":
                        connection.execute(_without_references(statement, table))
                    else:
                        connection.execute(
                            re.sub(
                                rf"\bON\s+\"?{table}\"?",
                                f"ON copy_{table}",
                                statement.replace("INDEX ", "INDEX copy_", 1),
                            )
                        )
                if not rows:
                    continue
                marks = ", ".join("?" * len(rows[0]))
                start = time.perf_counter()
                with connection:
                    connection.executemany(f"INSERT INTO copy_{table} VALUES ({marks})", rows)
                total, count = total + time.perf_counter() - start, count + len(rows)
        return total, count
    connection = await asyncpg.connect(url)
    try:
        for table in STORED:
            rows = await connection.fetch(f"SELECT * FROM {table}")
            await connection.execute(f"CREATE TABLE copy_{table} (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)")
            if not rows:
                continue
            marks = ", ".join(f"${i}" for i in range(1, len(rows[0]) + 1))
            start = time.perf_counter()
            async with connection.transaction():
                await connection.executemany(f"INSERT INTO copy_{table} VALUES ({marks})", [tuple(r) for r in rows])
            total, count = total + time.perf_counter() - start, count + len(rows)
    finally:
        await connection.close()
    return total, count


def _without_references(statement: str, table: str) -> str:
    """A SQLite CREATE TABLE renamed, its foreign keys dropped (the copy holds no referenced rows' checks)."""
    renamed = re.sub(rf"\"?\b{table}\b\"?", f"copy_{table}", statement, count=1)
    return re.sub(r"\s+REFERENCES\s+\w+\s*\([^)]*\)(\s+ON\s+(DELETE|UPDATE)\s+\w+(\s+\w+)?)*", "", renamed)


async def run(kind: str, participants: int) -> None:
    await run_events(kind, participants)
    await run_sdtm(kind, participants)


async def run_sdtm(kind: str, participants: int) -> None:
    _, rows = event_file(participants)
    with tempfile.TemporaryDirectory() as folder:
        paths = sdtm_files(rows, Path(folder))
        size_kb = sum(path.stat().st_size for path in paths) // 1024
        async with temp_database(kind) as url:
            await protocols.load_protocol_version(
                parse_protocol(PROTOCOL_TEXT, "bench.yaml"), PROTOCOL_TEXT, "bench.yaml"
            )
            for n in range(SITES):
                await sites.create_site(STUDY, f"{100 + n}", f"Site {100 + n}")
            base, _ = await atimed(raw_insert(kind, url, rows))
            sampler = _PeakRss()
            with sampler:

                async def read_and_import():
                    sv, ds, dm = (read_dataset(path, name) for path, name in zip(paths, ("SV", "DS", "DM")))
                    return await importing.import_sdtm(STUDY, sv, ds, dm, today=AS_OF)

                ours, (result, _) = await atimed(read_and_import())
        growth = sampler.growth_kb
        print(
            f"  {kind:<8}  SDTM: {len(rows):,} rows (SV and DS), DM of {participants:,} participants, XPT files"
            f" {size_kb:,} KB"
        )
        print(f"  {kind:<8}  raw executemany  {base:7.3f} s")
        print(
            f"  {kind:<8}  import sdtm      {ours:7.3f} s  ({result.created_participants:,} participants,"
            f" {result.events_recorded:,} events, {result.visits_recorded:,} visits)"
        )
        print(ratio_line(f"{kind} import sdtm / raw executemany", ours / base, "<= 3x", ours / base <= 3))
        print(
            f"  {kind} import sdtm peak memory growth {growth:,} KB = {growth / size_kb:.2f}x the files"
            f" (goal under 2x) {'met' if growth < 2 * size_kb else 'MISSED'}"
        )


async def run_events(kind: str, participants: int) -> None:
    text, rows = event_file(participants)
    async with temp_database(kind) as url:
        await protocols.load_protocol_version(parse_protocol(PROTOCOL_TEXT, "bench.yaml"), PROTOCOL_TEXT, "bench.yaml")
        for n in range(SITES):
            await sites.create_site(STUDY, f"{100 + n}", f"Site {100 + n}")
        base, _ = await atimed(raw_insert(kind, url, rows))
        sampler = _PeakRss()  # the process's own peak counter cannot be reset: sample while it runs
        with sampler:
            ours, result = await atimed(importing.import_events(STUDY, text, file="edc.csv", today=AS_OF))
        growth = sampler.growth_kb
        size_kb = len(text.encode()) // 1024
        print(f"  {kind:<8}  {len(rows):,} rows, {participants:,} participants at {SITES} sites, file {size_kb:,} KB")
        print(f"  {kind:<8}  raw executemany  {base:7.3f} s")
        print(
            f"  {kind:<8}  import events    {ours:7.3f} s  ({result.created_participants:,} participants,"
            f" {result.events_recorded:,} events, {result.visits_recorded:,} visits)"
        )
        print(ratio_line(f"{kind} import / raw executemany", ours / base, "<= 3x", ours / base <= 3))
        floor, stored = await raw_rewrite(kind, url)
        print(
            f"  {kind:<8}  raw executemany of the {stored:,} rows the import stored, same indexes: {floor:.3f} s;"
            f" import / that {ours / floor:.2f}x"
        )
        print(
            f"  {kind} peak memory growth {growth:,} KB = {growth / size_kb:.2f}x the file"
            f" (goal under 2x) {'met' if growth < 2 * size_kb else 'MISSED'}"
        )


def main(quick: bool = False, scale: float | None = None) -> None:
    participants = max(int(100_000 * (scale if scale is not None else (0.1 if quick else 1.0))), SITES)
    print(f"import_events: {participants * ROWS_EACH:,} rows of an event file across {SITES} sites")
    on_each_engine(run, participants)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", type=float)
    args = parser.parse_args()
    main(args.quick, args.scale)
