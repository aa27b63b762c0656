"""The one place where database integrity errors become domain errors (409 / 422, never a 500).

Services check uniqueness and references first, with precise messages; these translations cover
what only the database can see, such as two requests enrolling the same participant at once.
"""

from __future__ import annotations

import sqlite3

from asyncpg import exceptions as pg

from trialcoord.kernel.problems import Conflict, InvalidInput, Problem


def translate_integrity_error(exc: BaseException, about: str = "") -> Exception | None:
    """The domain error for an integrity error of either engine; None for any other exception."""
    prefix = f"{about}: " if about else ""
    if isinstance(exc, pg.UniqueViolationError) or _sqlite_says(exc, "UNIQUE"):
        return Conflict(f"{prefix}already recorded by someone else ({_detail(exc)}); reload and try again")
    if isinstance(exc, pg.ForeignKeyViolationError) or _sqlite_says(exc, "FOREIGN KEY"):
        return Conflict(f"{prefix}refers to a record that does not exist (any more) ({_detail(exc)})")
    if isinstance(exc, (pg.NotNullViolationError, pg.CheckViolationError)) or isinstance(exc, sqlite3.IntegrityError):
        return InvalidInput([Problem(f"{prefix}{_detail(exc)}")])
    return None


def _sqlite_says(exc: BaseException, kind: str) -> bool:
    return isinstance(exc, sqlite3.IntegrityError) and str(exc).startswith(kind)


def _detail(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None)  # asyncpg: "Key (study, subject_id)=(1, 101-001) already exists."
    return str(detail or exc).rstrip(".")
