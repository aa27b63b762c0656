"""Problems found in user input, each naming where it is, so a person can fix it."""

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
