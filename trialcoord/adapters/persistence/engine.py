"""The database engine: built from the URL, bound to every table, and used through a few helpers.

Services never touch piccolo's engine API directly: `transaction()` hides the SQLite/PostgreSQL
difference (immediate transactions on SQLite) and translates integrity errors; `fetch` and
`execute_many` run plain SQL with `{}` placeholders on whichever engine is bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.querystring import QueryString

from trialcoord.adapters.persistence.errors import translate_integrity_error
from trialcoord.adapters.persistence.tables import TABLES
from trialcoord.config import SQLITE, DatabaseUrl, Settings, get_settings, parse_database_url

POOL_MIN_SIZE, POOL_MAX_SIZE = 1, 5  # asyncpg opens 10 connections unless told otherwise
SQLITE_BUSY_TIMEOUT = 30  # seconds a writer waits for another writer's lock

_bound: Engine | None = None


def build_engine(url: DatabaseUrl | str) -> Engine:
    url = parse_database_url(url) if isinstance(url, str) else url
    if url.kind == SQLITE:
        Path(url.path).parent.mkdir(parents=True, exist_ok=True)
        return SQLiteEngine(path=url.path, timeout=SQLITE_BUSY_TIMEOUT)
    return PostgresEngine(config={"dsn": url.url})


def bind_engine(engine: Engine) -> Engine:
    """Make every table, and the helpers below, use `engine`."""
    global _bound
    for table in TABLES:
        table._meta.db = engine
    _bound = engine
    return engine


def bound_engine() -> Engine:
    if _bound is None:
        raise RuntimeError("no database engine is bound; call bind_engine(build_engine(url)) first")
    return _bound


def is_sqlite(engine: Engine | None = None) -> bool:
    return isinstance(engine or bound_engine(), SQLiteEngine)


async def start_pool(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE)


async def close_pool(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine) and engine.pool is not None:
        await engine.close_connection_pool()


@asynccontextmanager
async def open_database(settings: Settings | None = None, migrate: bool = False) -> AsyncIterator[Engine]:
    """The configured database, bound and (on PostgreSQL) pooled for the duration of the block."""
    from trialcoord.adapters.persistence.migrations import migrate as run_migrations  # it imports this module

    engine = bind_engine(build_engine((settings or get_settings()).database_url))
    await start_pool(engine)
    try:
        if migrate:
            await run_migrations(engine)
        yield engine
    finally:
        await close_pool(engine)


@asynccontextmanager
async def transaction(about: str = "", engine: Engine | None = None) -> AsyncIterator[None]:
    """One unit of work: commits on leaving, rolls back on error; nested calls join the outer one.

    `about` names what is being written (study, participant) for messages of integrity errors.
    """
    engine = engine or bound_engine()
    # Deferred SQLite transactions fail with "database is locked" under concurrent writers.
    options = {"transaction_type": TransactionType.immediate} if is_sqlite(engine) else {}
    try:
        async with engine.transaction(**options):
            yield
    except Exception as exc:
        translated = translate_integrity_error(exc, about)
        if translated is None:
            raise
        raise translated from exc


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    engine = bound_engine()
    response = await engine.run_querystring(QueryString(sql, *args))
    return engine.transform_response_to_dicts(response)


async def execute_many(sql: str, rows: Iterable[Sequence[Any]]) -> None:
    """One statement over many parameter rows, on the current transaction's connection.

    Bulk paths use this instead of piccolo's per-object inserts, which are far slower.
    """
    rows = list(rows)
    if not rows:
        return
    engine = bound_engine()
    current = engine.current_transaction.get()
    if current is None:
        raise RuntimeError("execute_many must run inside transaction()")
    count = sql.count("{}")
    markers = ["?"] * count if is_sqlite(engine) else [f"${i}" for i in range(1, count + 1)]
    await current.connection.executemany(sql.format(*markers), rows)
