"""What every command-line module shares: the error a command raises for bad arguments, who the audit trail
names, today's date at the site, running a use case against the configured database, reading and writing the
files a command names, and progress on a terminal. Public, so that command modules import it instead of each
other's private helpers."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

from trialcoord.config import get_settings

T = TypeVar("T")


class UsageError(Exception):
    """Bad command-line input; printed as one line and exit status 2."""


def today() -> date:
    return get_settings().today()


def actor() -> str:
    """Who the audit trail names for a command: whoever has a shell on the server."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for the uid (containers)
        return "cli:unknown"


def run(coroutine: Awaitable[T]) -> T:
    async def wait() -> T:
        return await coroutine

    return asyncio.run(wait())


def database(coroutine_factory: Callable[[], Awaitable[T]]) -> T:
    """A use case run against the configured database (migrated first), with the system's keys configured."""
    from trialcoord.adapters.persistence.database import open_database
    from trialcoord.services import system_keys

    system_keys.configure(get_settings())

    async def within() -> T:
        async with open_database(migrate=True):
            return await coroutine_factory()

    return run(within())


def progress() -> Callable[[str], None]:
    """On a terminal: each step of a long command on stderr, with the time since it began."""
    began = time.monotonic()
    return lambda text: print(f"  {time.monotonic() - began:6.1f} s  {text}", file=sys.stderr, flush=True)


def read_text(file: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{file}: no such file") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{file}: not a UTF-8 text file (byte {error.start}); is it a CSV?") from None
    except OSError as error:
        raise UsageError(f"{file}: cannot be read ({error.strerror})") from None


def write_file(file: str, content: bytes | str) -> None:
    """Write what a command was asked to put in a file (`--out`): a missing folder or a read-only place is bad
    input named with the file, never a traceback."""
    try:
        data = content.encode("utf-8") if isinstance(content, str) else content
        Path(file).write_bytes(data)
    except OSError as error:
        raise UsageError(f"{file}: cannot be written ({error.strerror})") from None


__all__ = ["UsageError", "actor", "database", "progress", "read_text", "run", "today", "write_file"]
