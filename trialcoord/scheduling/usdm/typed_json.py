"""The typed view of the USDM JSON: each value the mapping reads of the type it expects, each problem naming its
path in the file."""

from __future__ import annotations

from typing import Any

from trialcoord.kernel.problems import InvalidInput, Problem

_KIND_NAMES: dict[type, str] = {dict: "object", list: "array", str: "text"}


class _Reader:
    """Typed access to the JSON, each problem naming its path in the file."""

    def __init__(self, file: str, ignored: list[str] | None = None):
        self.file = file
        self.problems: list[Problem] = []
        self.ignored = set(ignored or ())  # paths `_typed` dropped: of the wrong type, not missing

    def get(self, node: Any, key: str, kind: type, path: str, required: bool = True) -> Any:
        value = node.get(key) if isinstance(node, dict) else None
        if value is None:
            where = f"{path}.{key}" if path else key
            if required and where in self.ignored:
                self.problems.append(
                    Problem(f"'{key}' should be {'an array' if kind is list else 'an object'}", self.file, field=where)
                )
            elif required:
                self.problems.append(Problem(f"missing '{key}'", self.file, field=path))
            return kind()
        if not isinstance(value, kind):
            self.problems.append(
                Problem(
                    f"'{key}' should be a{'n' if kind is list else ''} {_KIND_NAMES.get(kind, kind.__name__)}",
                    self.file,
                    field=f"{path}.{key}" if path else key,
                )
            )
            return kind()
        return value

    def fail(self) -> None:
        if self.problems:
            raise InvalidInput(self.problems)


_LISTS = {
    "versions",
    "studyDesigns",
    "encounters",
    "activities",
    "epochs",
    "arms",
    "studyCells",
    "scheduleTimelines",
    "instances",
    "timings",
    "conditionAssignments",
    "studyIdentifiers",
    "organizations",
    "titles",
    "dateValues",
    "amendments",
    "conditions",
}
_CODES = {"type", "relativeToFrom"}


def _typed(node: Any, path: str, ignored: list[str]) -> Any:
    """The document with each value the mapping reads of the type it expects: ids and texts are strings, lists
    of objects are lists of objects, codes are objects. Anything else is dropped and its path kept in `ignored`,
    so a damaged or unusual file is reported, never a crash."""
    if not isinstance(node, dict):
        return node
    typed: dict[str, Any] = {}
    for key, value in node.items():
        where = f"{path}.{key}" if path else key
        if key in _LISTS:
            if not isinstance(value, list):
                ignored.append(where)
                continue
            items = [item for item in value if isinstance(item, dict)]
            if len(items) != len(value):
                ignored.append(f"{where}[]")
            typed[key] = [_typed(item, f"{where}[{i}]", ignored) for i, item in enumerate(items)]
        elif key in _CODES or key == "study":
            if isinstance(value, dict):
                typed[key] = _typed(value, where, ignored)
            else:
                ignored.append(where)
        elif key.endswith("Ids"):
            if isinstance(value, list) and all(isinstance(item, str) for item in value):
                typed[key] = value
            else:
                ignored.append(where)
        elif key == "mainTimeline":
            typed[key] = value if isinstance(value, bool) else None
        elif isinstance(value, str) or value is None:
            typed[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not key.endswith("Id"):
            typed[key] = str(value)
        elif isinstance(value, (dict, list)) and key not in ("id",) and not key.endswith("Id"):
            typed[key] = value  # not read by the mapping (extensionAttributes, notes, ...)
        else:
            ignored.append(where)
    return typed
