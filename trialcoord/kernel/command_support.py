"""What every command-line module shares: the error a command raises for bad arguments, exit statuses and
argument types, command groups several features add to, who the audit trail names, today's date at the site,
running a use case against the configured database, reading and writing the files a command names, and progress
on a terminal. Public, so that each feature's commands import it instead of each other or `trialcoord.cli`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, TextIO, TypeVar

from trialcoord.kernel.config import get_settings
from trialcoord.kernel.installation import Installation

T = TypeVar("T")

EXIT_INVALID_PROTOCOL, EXIT_BAD_INPUT, EXIT_CONFLICT = 1, 2, 3
EXIT_TRAIL_BROKEN = 1
FORMATS = ("table", "json", "csv")


class UsageError(Exception):
    """Bad command-line input; printed as one line and exit status 2."""


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date; write it as YYYY-MM-DD") from None


# A group's own subcommands, by the group's parser: argparse can find a group by name but not its subcommands.
_groups: weakref.WeakKeyDictionary[argparse.ArgumentParser, argparse._SubParsersAction] = weakref.WeakKeyDictionary()


def group(
    commands: argparse._SubParsersAction, name: str, help: str, dest: str = "action", metavar: str = "ACTION"
) -> argparse._SubParsersAction:
    """The subcommands of group `name` (such as `protocol`), made by whichever feature comes first, so that
    several features add actions to one group."""
    parser = commands.choices.get(name)
    if parser is None:
        parser = commands.add_parser(name, help=help)
        _groups[parser] = parser.add_subparsers(dest=dest, required=True, metavar=metavar)
    elif parser not in _groups:
        raise ValueError(f"command {name} is not a group of subcommands")
    return _groups[parser]


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
    """A use case run against the configured database (migrated first)."""
    from trialcoord.kernel.database.opening import open_database

    async def within() -> T:
        async with open_database(migrate=True):
            return await coroutine_factory()

    return run(within())


def installation() -> Installation:
    """The command line's composition root: the installation of the configured settings (keys read at first use),
    made by each command that signs, publishes or renders and handed to its use case."""
    return Installation(get_settings())


class Progress:
    """A long command's progress, on stderr and only when stderr is a terminal: a pipe, a file or a cron mail gets
    nothing, and stdout (what scripts read) is never touched. Used as a context manager around the work:

        with support.progress("Importing events.csv") as shown:
            ...use_case(..., progress=shown if shown.on else None)

    `shown(text)` is a step of work that cannot be measured: a line with the time since the command began, and a
    spinner with the time spent while it runs. `shown.advance(done, text)` is measured work: a bar at `done` (0 to
    1). The bar goes when the work ends; writes to stderr meanwhile (warnings) appear above it."""

    def __init__(self, what: str, stream: TextIO | None = None):
        self.what = what
        self._stream = stream if stream is not None else sys.stderr
        self.on = self._stream.isatty()
        self._began = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.on:
            from rich.console import Console
            from rich.progress import BarColumn, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            console = Console(file=self._stream, force_terminal=True, highlight=False, markup=False)
            columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
            self._bar = Bar(*columns, TimeElapsedColumn(), console=console, transient=True, redirect_stdout=False)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(f"  {time.monotonic() - self._began:6.1f} s  {text}")
            self._bar.update(self._task, description=text)

    def advance(self, done: float, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=1.0, completed=max(0.0, min(done, 1.0)), description=text)


def progress(what: str, stream: TextIO | None = None) -> Progress:
    """The progress of a long command on a terminal (see `Progress`)."""
    return Progress(what, stream)


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


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CONFLICT",
    "EXIT_INVALID_PROTOCOL",
    "EXIT_TRAIL_BROKEN",
    "FORMATS",
    "Progress",
    "UsageError",
    "actor",
    "database",
    "group",
    "iso_date",
    "progress",
    "read_text",
    "run",
    "today",
    "write_file",
]
