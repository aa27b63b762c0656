"""The database engine: built from the URL, bound to every table, and used through a few helpers.

Services never touch piccolo's engine API directly: `transaction()` hides the SQLite/PostgreSQL
difference (immediate transactions on SQLite) and translates integrity errors; `read()` gives a read
use case one connection; `fetch`, `fetch_rows` and `execute_many` run plain SQL with `{}` placeholders
on whichever engine is bound.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType, dict_factory

from trialcoord.kernel.config import SQLITE, DatabaseUrl, parse_database_url
from trialcoord.kernel.database.errors import translate_integrity_error
from trialcoord.kernel.database.tables import TABLES

POOL_MIN_SIZE, POOL_MAX_SIZE = 1, 5  # asyncpg opens 10 connections unless told otherwise; also SQLite's pool
SQLITE_BUSY_TIMEOUT = 30  # seconds a writer waits for another writer's lock

_bound: Engine | None = None

# How the database tells the application's connections, whose writes are the recorded (audited) paths, from any other
# client: migration 12's triggers refuse UPDATE and DELETE of regulated rows without it. On SQLite, a function every
# connection of the engine defines; on PostgreSQL, a setting every connection starts with.
RECORDED_PATH, RECORDED_PATH_SETTING = "trialcoord_recorded_path", "trialcoord.recorded_path"


def build_engine(url: DatabaseUrl | str) -> Engine:
    url = parse_database_url(url) if isinstance(url, str) else url
    if url.kind == SQLITE:
        Path(url.path).parent.mkdir(parents=True, exist_ok=True)
        return PooledSQLiteEngine(path=url.path, timeout=SQLITE_BUSY_TIMEOUT)
    return PostgresEngine(config={"dsn": url.url, "server_settings": {RECORDED_PATH_SETTING: "on"}})


class PooledSQLiteEngine(SQLiteEngine):
    """piccolo's SQLite engine that, once `start_pool` ran, keeps its transactions' connections open for the
    next ones: opening one (a thread, the file, a PRAGMA) costs several times a small read. `transaction()`
    and `read()` let at most POOL_MAX_SIZE hold one at a time, so that all of them are reused."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.idle: list[_PooledConnection] | None = None  # None: no pool
        self.slots: asyncio.Semaphore | None = None

    async def get_connection(self) -> aiosqlite.Connection:
        """piccolo's hook for a transaction's connection."""
        if self.idle is None:
            connection = await super().get_connection()
            await connection.create_function(RECORDED_PATH, 0, _recorded_path, deterministic=True)
            return connection
        return self.idle.pop() if self.idle else await self._open()

    async def _open(self) -> _PooledConnection:
        connection = _PooledConnection(self, partial(sqlite3.connect, **self.connection_kwargs))
        await connection  # starts its thread and connects
        # What piccolo's own connections get. aiosqlite types row_factory as a class; sqlite3 takes any callable.
        connection.row_factory = dict_factory  # type: ignore[assignment]
        await connection.execute("PRAGMA foreign_keys = 1")
        await connection.create_function(RECORDED_PATH, 0, _recorded_path, deterministic=True)
        return connection

    async def release(self, connection: _PooledConnection) -> None:
        pool = self.idle
        if pool is not None and connection.pool is pool and len(pool) < POOL_MAX_SIZE:
            pool.append(connection)
        else:  # its pool was closed meanwhile, or is full
            await aiosqlite.Connection.close(connection)

    def start_pool(self) -> None:
        self.idle, self.slots = [], asyncio.Semaphore(POOL_MAX_SIZE)

    async def close_pool(self) -> None:
        idle, self.idle, self.slots = self.idle or [], None, None
        for connection in idle:
            await aiosqlite.Connection.close(connection)


def _recorded_path() -> int:
    return 1


class _PooledConnection(aiosqlite.Connection):
    """Goes back to its engine's pool when piccolo closes it at the end of a transaction (if piccolo does
    not, after a failed COMMIT or ROLLBACK, it is dropped: the slot it held is freed all the same)."""

    def __init__(self, engine: PooledSQLiteEngine, connector: Any):
        super().__init__(connector, iter_chunk_size=64)
        self.engine, self.pool = engine, engine.idle

    async def close(self) -> None:
        await self.engine.release(self)


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
    if isinstance(engine, PooledSQLiteEngine):
        engine.start_pool()
    elif isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE)


async def close_pool(engine: Engine) -> None:
    if isinstance(engine, PooledSQLiteEngine):
        await engine.close_pool()
    elif isinstance(engine, PostgresEngine) and engine.pool is not None:
        await engine.close_connection_pool()


@asynccontextmanager
async def transaction(about: str = "", engine: Engine | None = None) -> AsyncIterator[None]:
    """One unit of work: commits on leaving, rolls back on error; nested calls join the outer one.

    `about` names what is being written (study, participant) for messages of integrity errors.
    """
    engine = engine or bound_engine()
    # Deferred SQLite transactions fail with "database is locked" under concurrent writers.
    options = {"transaction_type": TransactionType.immediate} if is_sqlite(engine) else {}
    try:
        async with _slot(engine), engine.transaction(**options):
            yield
    except Exception as exc:
        translated = translate_integrity_error(exc, about)
        if translated is None:
            raise
        raise translated from exc


@asynccontextmanager
async def read(engine: Engine | None = None) -> AsyncIterator[None]:
    """One connection for all queries of a read use case; inside a unit of work, joins it.

    Outside a transaction piccolo opens a SQLite connection per query (a thread, the file, a PRAGMA):
    here a deferred transaction holds one, with one snapshot, and under WAL never blocks the writer.
    On PostgreSQL it holds one pooled connection instead of acquiring one per query. Never start a
    `transaction()` inside it: it would join this deferred one, which on SQLite cannot wait for another
    writer once it has read ("database is locked").
    """
    engine = engine or bound_engine()
    async with _slot(engine), engine.transaction():
        yield


@asynccontextmanager
async def _slot(engine: Engine) -> AsyncIterator[None]:
    """An outermost unit of work on a pooled SQLite engine waits for one of its POOL_MAX_SIZE slots (asyncpg's
    pool bounds itself): more at once would need connections the pool does not keep."""
    slots = engine.slots if isinstance(engine, PooledSQLiteEngine) else None
    if slots is None or engine.current_transaction.get() is not None:
        yield
    else:
        async with slots:
            yield


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows as dicts by column name."""
    return await _run(sql, args, as_dicts=True)


async def fetch_rows(sql: str, *args: Any) -> list[Sequence[Any]]:
    """Rows as the driver gives them (tuples, asyncpg Records), columns in the SELECT's order: for reads of
    many rows, which a dict per row slows down."""
    return await _run(sql, args, as_dicts=False)


async def _run(sql: str, args: Sequence[Any], as_dicts: bool) -> list:
    # Straight to the driver on the transaction's connection: piccolo adds a PRAGMA round trip per query on
    # SQLite (foreign_keys is already on, since engine.get_connection sets it) and a dict per row.
    engine = bound_engine()
    async with read(engine):
        transaction = engine.current_transaction.get()
        if transaction is None:
            raise RuntimeError("read() opened no transaction")  # it always does: one is open until it exits
        connection = transaction.connection
        if is_sqlite(engine):
            connection.row_factory = dict_factory if as_dicts else None  # as piccolo does before each query
            return await connection.execute_fetchall(_with_markers(sql, engine), args)
        rows = await connection.fetch(_with_markers(sql, engine), *args)
        return [dict(row) for row in rows] if as_dicts else rows


def _with_markers(sql: str, engine: Engine) -> str:
    """`{}` placeholders spelled for the engine's driver."""
    count = sql.count("{}")
    return sql.format(*(["?"] * count if is_sqlite(engine) else [f"${i}" for i in range(1, count + 1)]))


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
    await current.connection.executemany(_with_markers(sql, engine), rows)
