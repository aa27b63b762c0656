"""The one error vocabulary every layer raises (kernel/web/errors.py alone maps it to HTTP, cli/ to exit codes):
problems found in user input, each naming where it is so a person can fix it, and the errors of use cases.
Every message names the study, participant, visit or field it is about, so a person can act on it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    file: str = ""
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    field: str = ""  # path of the field, such as `visits[2].window.early`

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        prefix = f"{where}: " if where else ""
        at = f"{self.field}: " if self.field else ""
        return f"{prefix}{at}{self.message}"


class InvalidInput(Exception):
    """Raised with every problem found, never just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NotFound(LookupError):
    """The named study, site, participant, visit or protocol version does not exist."""


class Forbidden(Exception):
    """The person's grants do not allow this, whichever door they came through (web or command line)."""


class Conflict(Exception):
    """The request contradicts what is recorded, or lost a race with another change; `field`, when given, is the
    request field it is about (a missing `row_version`)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


def row_version_required(what: str) -> Conflict:
    """A write that changes a stored record must say which version its writer read, or it could silently replace
    another writer's change (issue 17); 0 stands for "no stored version yet" where a record may not exist."""
    return Conflict(f"{what}: send the row_version you read, so a change made meanwhile is not lost", "row_version")


class NotConfigured(RuntimeError):
    """The installation lacks something this use case needs (a key); the message names the setting."""


def invalid(message: str, field: str = "") -> InvalidInput:
    """An InvalidInput with one problem; `field` is the request field to fix."""
    return InvalidInput([Problem(message, field=field)])
