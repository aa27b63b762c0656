"""Opening the configured database for a process (the web app, a command): above both the engine and the
migrations, so neither imports the other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from piccolo.engine.base import Engine

from trialcoord.kernel.config import Settings, get_settings
from trialcoord.kernel.database.engine import bind_engine, build_engine, close_pool, start_pool
from trialcoord.kernel.database.migrations import migrate as run_migrations


@asynccontextmanager
async def open_database(settings: Settings | None = None, migrate: bool = False) -> AsyncIterator[Engine]:
    """The configured database, bound and pooled for the duration of the block."""
    engine = bind_engine(build_engine((settings or get_settings()).database_url))
    await start_pool(engine)
    try:
        if migrate:
            await run_migrations(engine)
        yield engine
    finally:
        await close_pool(engine)
