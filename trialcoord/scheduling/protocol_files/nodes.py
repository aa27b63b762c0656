"""Reading YAML nodes, keeping positions: typed values from PyYAML nodes, each problem recorded (never raised) with
its file, line, column and field path."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trialcoord.kernel.problems import Problem
from trialcoord.scheduling.rules.durations import BUSINESS_DAYS, Duration, DurationError, parse_duration

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Bad(Enum):
    """A value that was reported as a problem (where None would mean "absent" or "unbounded")."""

    BAD = "bad"


_BAD: Final = _Bad.BAD


# ---- reading nodes, keeping positions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Where:
    """A field path (`visits[2].window.early`) and the words that name it in messages.

    Top-level fields have no subject: their path alone names them, as in `version: expected text`.
    """

    field: str = ""
    subject: str = ""

    def key(self, name: str, subject: str | None = None) -> _Where:
        path = f"{self.field}.{name}" if self.field else name
        return _Where(path, subject or (f"{self.subject} {name}" if self.subject else ""))

    def item(self, index: int, subject: str | None = None) -> _Where:
        return _Where(f"{self.field}[{index}]", subject or f"{self.subject} item {index + 1}".strip())


class _Reader:
    """Reads typed values from nodes; every problem is recorded, never raised."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []
        self.first_business_day_use: tuple[Node, _Where, Duration] | None = None
        self._constructor = SafeConstructor()

    def report(self, node: Node, where: _Where, detail: str) -> None:
        mark = node.start_mark
        message = f"{where.subject}: {detail}" if where.subject else detail
        self.problems.append(Problem(message, self.file, mark.line + 1, mark.column + 1, where.field))

    def compose(self, text: str) -> Node | None:
        try:
            root = yaml.compose(text, Loader=_LOADER)
        except yaml.MarkedYAMLError as error:
            self._syntax_problem(error, text)
            return None
        except yaml.YAMLError as error:
            self.problems.append(Problem(f"the file is not valid YAML: {error}", self.file))
            return None
        if root is None:
            self.problems.append(Problem("the file is empty; a protocol definition starts with 'study:'", self.file))
        return root

    def _syntax_problem(self, error: yaml.MarkedYAMLError, text: str) -> None:
        mark = error.problem_mark or error.context_mark
        detail = f"not valid YAML: {error.problem or error.context}"
        if error.context and error.problem and error.context_mark:
            detail += f" ({error.context} on line {error.context_mark.line + 1})"
        if mark is not None and text[mark.index : mark.index + 1] == "\t":
            detail += "; indent with spaces, never tabs"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        self.problems.append(Problem(detail, self.file, line, column))

    def entries(self, node: Node, where: _Where, what: str) -> dict[str, tuple[Node, Node]] | None:
        """The key and value nodes of a mapping, by key text; duplicate keys are problems."""
        if not isinstance(node, MappingNode):
            self.report(node, where, f"expected {what}, found {_describe(node)}")
            return None
        found: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.report(key_node, where, f"a key must be a plain name, not {_describe(key_node)}")
            elif key_node.value in found:
                first = found[key_node.value][0].start_mark.line + 1
                self.report(key_node, where, f"'{key_node.value}' appears twice; the first is on line {first}")
            else:
                found[key_node.value] = (key_node, value_node)
        return found

    def fields(self, node: Node, where: _Where, required: tuple[str, ...], optional: tuple[str, ...] = ()):
        """Value nodes of a mapping with a fixed set of keys; unknown and missing keys are problems."""
        allowed = required + optional
        entries = self.entries(node, where, f"a mapping with keys such as {', '.join(allowed[:4])}")
        if entries is None:
            return None
        for name, (key_node, _) in entries.items():
            if name not in allowed:
                hint = _suggest(name, allowed, "allowed keys")
                self.report(key_node, where.key(name, where.subject), f"unknown key '{name}'; {hint}")
        for name in required:
            if name not in entries:
                self.report(node, where.key(name, where.subject), f"missing required key '{name}'")
        return {name: value for name, (_, value) in entries.items() if name in allowed}

    def scalar(self, node: Node, where: _Where, expected: str) -> object:
        if not isinstance(node, ScalarNode):
            self.report(node, where, f"expected {expected}, found {_describe(node)}")
            return _BAD
        try:
            return self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError) as error:
            reason = getattr(error, "problem", None) or str(error)
            what = "a valid date" if node.tag.endswith(":timestamp") else "a value this format reads"
            self.report(node, where, f"'{node.value}' is not {what} ({reason})")
            return _BAD

    def text(self, node: Node, where: _Where) -> str | None:
        value = self.scalar(node, where, "text")
        if value is _BAD:
            return None
        if isinstance(value, str) and value.strip():
            return value.strip()
        if value is None or value == "":
            self.report(node, where, "is empty; write a value")
        else:
            self.report(node, where, f'expected text, found {_describe(node)}; write it in quotes: "{node.value}"')
        return None

    def items(self, node: Node, where: _Where, what: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.report(node, where, f"expected a list of {what}, found {_describe(node)}")
            return None
        return node.value

    def texts(self, node: Node, where: _Where, what: str) -> tuple[str, ...] | None:
        items = self.items(node, where, f"{what}, such as [a, b]")
        if items is None:
            return None
        values = [self.text(item, where.item(index)) for index, item in enumerate(items)]
        found = tuple(value for value in values if value is not None)
        return found if len(found) == len(values) else None

    def choice(self, node: Node, where: _Where, choices: tuple[str, ...]) -> str | None:
        if isinstance(node, ScalarNode) and node.value and not node.tag.endswith(":str"):  # `yes`, `true`, `3`
            self.report(node, where, f"'{node.value}' is not allowed; write {' or '.join(choices)}")
            return None
        value = self.text(node, where)
        if value is not None and value not in choices:
            self.report(node, where, f"'{value}' is not allowed; write {' or '.join(choices)}")
            return None
        return value

    def boolean(self, node: Node, where: _Where) -> bool | None:
        value = self.scalar(node, where, "true or false")
        if isinstance(value, bool):
            return value
        if value is _BAD:
            return None
        self.report(node, where, f"expected true or false, found {_describe(node)}")
        return None

    def number(self, node: Node, where: _Where) -> int | float | None:
        value = self.scalar(node, where, "a number")
        if value is _BAD:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value
        self.report(node, where, f"expected a number, such as 3 or 3.1, found {_describe(node)}")
        return None

    def iso_date(self, node: Node, where: _Where) -> date | None:
        value = self.scalar(node, where, "a date")
        if value is _BAD:
            return None
        if isinstance(value, str) and _ISO_DATE.match(value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError as error:
                self.report(node, where, f"'{value}' is not a valid date ({error})")
                return None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        self.report(node, where, f"expected an ISO date such as 2025-01-15 (no time), found {_describe(node)}")
        return None

    def duration(self, node: Node, where: _Where) -> Duration | None:
        value = self.scalar(node, where, "a duration such as '14d'")
        if value is _BAD:
            return None
        try:
            duration = parse_duration(value)
        except DurationError as error:
            self.report(node, where, str(error))
            return None
        if duration.unit == BUSINESS_DAYS and self.first_business_day_use is None:
            self.first_business_day_use = (node, where, duration)
        return duration


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    kind = node.tag.rsplit(":", 1)[-1]
    if kind == "null":
        return "nothing"
    names = {"bool": "true/false value", "int": "number", "float": "number", "timestamp": "date"}
    return f"the {names[kind]} {node.value}" if kind in names else f"the text '{node.value}'"


def _suggest(name: str, known: Iterable[str], listing: str) -> str:
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"{listing}: {', '.join(known)}" if known else f"there are no {listing}"


def _peek(node: Node, key: str) -> str | None:
    """The raw text of a mapping's scalar `key`, to name the thing in messages before it is validated."""
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key and isinstance(value_node, ScalarNode):
                return value_node.value or None
    return None


def _read(fields: dict[str, Node], where: _Where, key: str, read: Callable, *args):
    """Read an optional field: None when absent or when its problem was reported."""
    return read(fields[key], where.key(key), *args) if key in fields else None
