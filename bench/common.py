"""Shared pieces of the database benchmarks: temporary databases, a 20-visit protocol, bulk set-up."""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from trialcoord.kernel.database.engine import bind_engine, build_engine, close_pool, start_pool, transaction
from trialcoord.kernel.database.migrations import migrate
from trialcoord.scheduling import protocols, sites
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.rules.protocol import Protocol
from trialcoord.scheduling.store import inputs as inputs_store
from trialcoord.scheduling.store import participants as participants_store
from trialcoord.scheduling.store import sites as sites_store
from trialcoord.scheduling.store import studies as studies_store

POSTGRES_URL = os.environ.get("TRIALCOORD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ENGINES = ("sqlite", "postgres")
AS_OF = date(2026, 11, 27)
STUDY, SITE = "BENCH-20", "101"
VISITS = 20

# A realistic 20-visit schedule: screening, baseline, then a visit every 2 weeks from randomization.
PROTOCOL_TEXT = f"""\
study: {STUDY}
title: Benchmark study with 20 visits
version: "1.0"
effective: 2024-01-01
day_one: randomization
events:
  consent: {{}}
  randomization: {{}}
  withdrawal: {{ends_schedule: true}}
visits:
  - {{code: V1, name: Screening, from: randomization, offset: -14d, window: {{early: 0d, late: 13d}}}}
  - {{code: V2, name: Baseline, from: randomization, offset: 0d}}
""" + "".join(
    f"  - {{code: V{i}, name: Week {2 * (i - 2)}, from: randomization, offset: {2 * (i - 2)}w,"
    f" window: {{early: 3d, late: 3d}}}}\n"
    for i in range(3, VISITS + 1)
)


def on_each_engine(run, participants: int) -> None:
    """Run `run(kind, participants)` on SQLite, then on PostgreSQL when a server answers."""

    async def all_engines():
        for kind in ENGINES:
            if kind == "postgres" and not await postgres_available():
                print("  postgres  skipped: no server at TRIALCOORD_BENCH_POSTGRES_URL")
                continue
            await run(kind, participants)

    asyncio.run(all_engines())


def timed(fn, *args):
    """(seconds, result) of one call."""
    began = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - began, result


async def atimed(coroutine):
    began = time.perf_counter()
    result = await coroutine
    return time.perf_counter() - began, result


def ratio_line(name: str, ratio: float, goal: str, met: bool) -> str:
    return f"  {name}: ratio {ratio:.2f}x (goal {goal}) {'met' if met else 'MISSED'}"


@asynccontextmanager
async def temp_database(kind: str):
    """A fresh migrated database bound to every table: yields its URL (SQLite file, or a new PG database)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="trialcoord-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
            await migrate(bind_engine(build_engine(url)))
            yield url
        return
    server = await asyncpg.connect(POSTGRES_URL, timeout=5)
    name = f"trialcoord_bench_{uuid.uuid4().hex[:12]}"
    await server.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        engine = bind_engine(build_engine(url))
        await start_pool(engine)
        try:
            await migrate(engine)
            yield url
        finally:
            await close_pool(engine)
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()


async def postgres_available() -> bool:
    try:
        await (await asyncpg.connect(POSTGRES_URL, timeout=5)).close()
        return True
    except (OSError, asyncpg.PostgresError):
        return False


def raw_sqlite_path(url: str) -> str:
    return url[len("sqlite:///") :]


async def enrol_study(participants: int, seed: int = 1) -> tuple[Protocol, dict[str, tuple[int, date]], int]:
    """Load the 20-visit protocol, one site and `participants` randomised participants (bulk, not timed).

    Returns the protocol, subject_id -> (participant id, randomization date) and the protocol version id.
    Randomization dates spread over the 400 days before AS_OF, so schedules are at every stage.
    """
    rng = random.Random(seed)
    protocol = parse_protocol(PROTOCOL_TEXT, "bench.yaml")
    await protocols.load_protocol_version(protocol, PROTOCOL_TEXT, "bench.yaml")
    await sites.create_site(STUDY, SITE, "Bench Clinic")
    randomized = {f"{SITE}-{i:06d}": AS_OF - timedelta(days=rng.randrange(400)) for i in range(1, participants + 1)}
    async with transaction("bench set-up"):
        study = await protocols.require_study(STUDY)
        site = await sites_store.find_site(study.id, SITE)
        version = (await studies_store.list_versions(study.id))[0]["id"]
        await participants_store.insert_participants(
            study.id, [(s, site["id"], None, version, d - timedelta(days=14)) for s, d in randomized.items()]
        )
        ids = {row["subject_id"]: row["id"] for row in await participants_store.list_participants(study.id)}
        await inputs_store.upsert_events([(ids[s], "randomization", d, None) for s, d in randomized.items()])
    return protocol, {s: (ids[s], d) for s, d in randomized.items()}, version


def perturbed_actuals(protocol: Protocol, randomized: date, rng: random.Random) -> tuple[dict[str, date], set[str]]:
    """Actual dates of the visits whose window has closed by AS_OF: mostly on time, 3% late, 1% early,
    3% never done (missed). Returns (actuals, codes left undone)."""
    from trialcoord.scheduling.rules.schedule import evaluate

    actuals, undone = {}, set()
    for visit in evaluate(protocol, {"randomization": randomized}, {}, AS_OF):
        if visit.latest is None or visit.latest >= AS_OF:
            continue
        draw = rng.random()
        if draw < 0.03:
            undone.add(visit.visit)
        elif draw < 0.06:
            actuals[visit.visit] = min(visit.latest + timedelta(days=rng.randint(1, 10)), AS_OF)
        elif draw < 0.07:
            actuals[visit.visit] = visit.earliest - timedelta(days=rng.randint(1, 5))
        else:
            actuals[visit.visit] = visit.earliest + timedelta(days=rng.randint(0, (visit.latest - visit.earliest).days))
    return actuals, undone


def visit_params(participant_id: int, version_id: int, visit, evaluated_on: date) -> tuple:
    """One `visits` row as the raw drivers take it (the column order of INSERT_VISIT)."""
    return (
        participant_id,
        visit.visit,
        visit.definition,
        visit.occurrence,
        visit.name,
        None if visit.number is None else float(visit.number),
        visit.target,
        visit.earliest,
        visit.latest,
        visit.actual,
        visit.status,
        visit.days_outside,
        visit.study_day,
        visit.optional,
        version_id,
        evaluated_on,
        1,
    )


VISIT_COLUMNS = (
    "participant",
    "code",
    "definition",
    "occurrence",
    "name",
    "number",
    "target",
    "earliest",
    "latest",
    "actual",
    "status",
    "days_outside",
    "study_day",
    "optional",
    "protocol_version",
    "evaluated_on",
    "row_version",
)


def insert_visit_sql(placeholder) -> str:
    """INSERT INTO visits for VISIT_COLUMNS; `placeholder(i)` spells parameter i (1-based)."""
    marks = ", ".join(placeholder(i) for i in range(1, len(VISIT_COLUMNS) + 1))
    return f"INSERT INTO visits ({', '.join(VISIT_COLUMNS)}) VALUES ({marks})"
