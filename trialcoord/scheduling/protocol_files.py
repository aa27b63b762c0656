"""Protocol definition files (YAML; see docs/protocol-format.md) -> the domain `Protocol`.

Every problem in a file is reported at once, each with its file, line, column and field path. Values are
built from PyYAML nodes rather than from `yaml.safe_load` output so that each one keeps its position.
Field paths index lists from 0 (`visits[2]` is the third visit); messages name the visit by its code.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.calendars import (
    BUILTIN_CALENDARS,
    CALENDAR_KEYS,
    HOLIDAY_RULES,
    CalendarError,
    build_calendar,
    weekday_index,
)
from trialcoord.scheduling.rules.classification import DEFAULTS, Classification, ClassificationDefaults, Rule, Threshold
from trialcoord.scheduling.rules.durations import BUSINESS_DAYS, DAYS, Calendar, Duration, DurationError, parse_duration
from trialcoord.scheduling.rules.protocol import (
    ACTUAL,
    OCCURRENCE,
    PLANNED,
    Arm,
    Event,
    Protocol,
    Repeat,
    VisitDefinition,
    Window,
)

SCHEMA_PATH = Path(__file__).with_name("protocol.schema.json")

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TOP_REQUIRED = ("study", "title", "version", "effective", "day_one", "events", "visits")
_TOP_OPTIONAL = ("calendar", "calendars", "arms", "description", "deviations")
_EVENT_KEYS = ("ends_schedule", "collection", "consent", "description")
_COLLECTION = ("stops", "continues")  # an ending event's `collection:`
_AFTER_END = ("expected", "not_applicable")  # a visit's `after_end:`
_ARM_KEYS = ("code", "name")
_VISIT_REQUIRED = ("code", "name", "from", "offset")
_VISIT_OPTIONAL = (
    "number",
    "window",
    "reference",
    "repeat",
    "chain",
    "arms",
    "when",
    "optional",
    "after_end",
    "procedures",
    "description",
)
_WINDOW_KEYS = ("early", "late")
_REPEAT_KEYS = ("every", "count")
_MODES = (ACTUAL, PLANNED)
_DEVIATION_RULES = tuple(str(rule) for rule in Rule)
_RULES_WITH_DAYS = (Rule.VISIT_EARLY, Rule.VISIT_LATE, Rule.SCREENING_OUT_OF_WINDOW)  # thresholds apply to them
_DEVIATION_RULE_KEYS = ("classification", "thresholds")
_THRESHOLD_KEYS = ("over_days", "classification")
_CLASSIFICATIONS = tuple(str(classification) for classification in Classification)
_STUDY_CODE = re.compile(r"^[A-Za-z0-9_-]+$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNBOUNDED, _OPEN = "unbounded", "open"
_ZERO = Duration(0, DAYS, "0d")
_BAD = object()  # a value that was reported as a problem (where None would mean "absent" or "unbounded")


# ---- public API ------------------------------------------------------------------------------------


def parse_protocol(text: str, file: str = "<protocol>") -> Protocol:
    """Build a Protocol from YAML text; raise InvalidInput listing every problem found."""
    reader = _Reader(file)
    root = reader.compose(text)
    protocol = _read_protocol(reader, root) if root is not None else None
    if reader.problems or protocol is None:
        raise InvalidInput(sorted(reader.problems, key=lambda p: (p.line or 0, p.column or 0)))
    return protocol


def load_protocol(path: str | Path) -> Protocol:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        message = f"the file is not UTF-8 text (byte {error.start}); save it as UTF-8"
        raise InvalidInput([Problem(message, str(path))]) from None
    except OSError as error:
        raise InvalidInput([Problem(f"cannot read the file: {error.strerror or error}", str(path))]) from None
    return parse_protocol(text, file=str(path))


def validate_protocol_file(path: str | Path) -> list[Problem]:
    try:
        load_protocol(path)
    except InvalidInput as error:
        return error.problems
    return []


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
        values = tuple(self.text(item, where.item(index)) for index, item in enumerate(items))
        return None if None in values else values

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
        if value is _BAD or isinstance(value, bool):
            return None if value is _BAD else value
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


# ---- the protocol ----------------------------------------------------------------------------------


@dataclass
class _Context:
    """Names that references are checked against; None when that section could not be read."""

    events: dict[str, Event] | None
    arm_codes: frozenset[str] | None


@dataclass
class _VisitDraft:
    index: int
    node: Node
    where: _Where
    fields: dict[str, Node]
    values: dict[str, object] = field(default_factory=dict)  # VisitDefinition's arguments

    @property
    def code(self) -> str | None:
        return self.values.get("code")

    @property
    def repeating(self) -> bool:
        return "repeat" in self.fields

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1


def _read_protocol(reader: _Reader, root: Node) -> Protocol | None:
    where = _Where()
    if not isinstance(root, MappingNode):
        detail = f"a protocol definition is a mapping that starts with 'study:'; this file holds {_describe(root)}"
        reader.report(root, where, detail)
        return None
    top = reader.fields(root, where, _TOP_REQUIRED, _TOP_OPTIONAL)
    study = _read(top, where, "study", _read_study, reader)
    title = _read(top, where, "title", reader.text)
    version = _read(top, where, "version", reader.text)
    effective = _read(top, where, "effective", reader.iso_date)
    events = _read(top, where, "events", _read_events, reader)
    arms = _read(top, where, "arms", _read_arms, reader) if "arms" in top else ()
    context = _Context(events, None if arms is None else frozenset(arm.code for arm in arms))
    day_one = _read(top, where, "day_one", _read_event_name, reader, context)
    drafts = _read(top, where, "visits", _read_visits, reader, context)
    calendar = _read_calendar(reader, top)
    deviations = _read(top, where, "deviations", _read_deviations, reader) if "deviations" in top else DEFAULTS
    if reader.problems:
        return None
    visits = tuple(VisitDefinition(**draft.values) for draft in drafts)
    return Protocol(study, title, version, effective, day_one, events, visits, arms, calendar, deviations)


def _read_study(node: Node, where: _Where, reader: _Reader) -> str | None:
    study = reader.text(node, where)
    if study is not None and not _STUDY_CODE.match(study):
        reader.report(node, where, f"study code '{study}' may hold only letters, digits, '-' and '_'")
        return None
    return study


def _read_event_name(node: Node, where: _Where, reader: _Reader, context: _Context) -> str | None:
    name = reader.text(node, where)
    if name is not None and context.events is not None and name not in context.events:
        hint = _suggest(name, context.events, "events")
        reader.report(node, where, f"'{name}' is not an event of this protocol; {hint}")
        return None
    return name


def _read_events(node: Node, where: _Where, reader: _Reader) -> dict[str, Event] | None:
    entries = reader.entries(node, where, "a mapping of event names, such as 'consent: {}'")
    if entries is None:
        return None
    events = {}
    for name, (_, value_node) in entries.items():
        event_where = where.key(name, f"event {name}")
        is_empty = isinstance(value_node, ScalarNode) and value_node.tag.endswith(":null")  # `consent:`
        options = {} if is_empty else reader.fields(value_node, event_where, (), _EVENT_KEYS) or {}
        ends = bool(_read(options, event_where, "ends_schedule", reader.boolean))
        collection = _read(options, event_where, "collection", reader.choice, _COLLECTION)
        if collection is not None and not ends:
            reader.report(
                options["collection"],
                event_where.key("collection"),
                "'collection' applies only to an event that ends the schedule; add 'ends_schedule: true'",
            )
        consent = bool(_read(options, event_where, "consent", reader.boolean))
        events[name] = Event(name, ends, collection == "stops", consent)
    marked = [name for name, event in events.items() if event.consent]
    for name in marked[1:]:
        reader.report(
            entries[name][1],
            where.key(name, f"event {name}").key("consent"),
            f"only one event records informed consent; '{marked[0]}' already says 'consent: true'",
        )
    return events


def _read_arms(node: Node, where: _Where, reader: _Reader) -> tuple[Arm, ...] | None:
    """The arms; None when an arm code is unreadable, so visits' arm lists are not checked against them."""
    items = reader.items(node, where, "arms such as '- {code: A, name: Active}'")
    if items is None:
        return None
    arms: dict[str, Arm] = {}
    readable = True
    for index, item in enumerate(items):
        arm_where = where.item(index, f"arm {_peek(item, 'code') or index + 1}")
        fields = reader.fields(item, arm_where, _ARM_KEYS) or {}
        code = _read(fields, arm_where, "code", reader.text)
        name = _read(fields, arm_where, "name", reader.text)
        readable = readable and code is not None
        if code in arms:
            reader.report(fields["code"], arm_where.key("code"), f"arm code '{code}' is listed twice")
        elif code is not None:
            arms[code] = Arm(code, name)
    return tuple(arms.values()) if readable else None


# ---- visits ----------------------------------------------------------------------------------------


def _read_visits(node: Node, where: _Where, reader: _Reader, context: _Context) -> list[_VisitDraft] | None:
    items = reader.items(node, where, "visits, each starting with '- code:'")
    if items is None:
        return None
    if not items:
        reader.report(node, where, "list at least one visit")
        return None
    drafts = [_read_visit(reader, item, index, where, context) for index, item in enumerate(items)]
    first = _check_codes(reader, drafts, context)
    _check_numbers(reader, drafts)
    complete = all(draft.code is not None for draft in drafts)
    for draft in drafts:
        _check_from(reader, draft, drafts, first, context, complete)
    return drafts


def _read_visit(reader: _Reader, node: Node, index: int, visits: _Where, context: _Context) -> _VisitDraft:
    where = visits.item(index, f"visit {_peek(node, 'code') or f'at position {index + 1}'}")
    fields = reader.fields(node, where, _VISIT_REQUIRED, _VISIT_OPTIONAL) or {}
    draft = _VisitDraft(index, node, where, fields)

    def get(key: str, read: Callable, *args):
        return _read(fields, where, key, read, *args)

    draft.values = {
        "code": get("code", reader.text),
        "name": get("name", reader.text),
        "number": get("number", reader.number) if "number" in fields else index + 1,
        "reference_name": get("from", reader.text),
        "offset": get("offset", reader.duration),
        "window": _read_window(reader, fields.get("window"), where.key("window")),
        "reference": get("reference", reader.choice, _MODES) or ACTUAL,
        "repeat": get("repeat", _read_repeat, reader),
        "chain": get("chain", reader.choice, _MODES) or ACTUAL,
        "arms": get("arms", _read_visit_arms, reader, context),
        "when": get("when", _read_event_name, reader, context),
        "optional": bool(get("optional", reader.boolean)),
        "after_end": get("after_end", reader.choice, _AFTER_END) == "expected",
        "procedures": get("procedures", reader.texts, "procedure names") or (),
    }
    _check_occurrence_mark(reader, draft)
    if "chain" in fields and not draft.repeating:
        reader.report(
            fields["chain"], where.key("chain"), "'chain' applies only to a repeating visit; remove it, or add 'repeat'"
        )
    return draft


def _read_window(reader: _Reader, node: Node | None, where: _Where) -> Window | None:
    if node is None:
        return Window(_ZERO, _ZERO)
    fields = reader.fields(node, where, (), _WINDOW_KEYS)
    if fields is None:
        return None
    early, late = (_read_window_side(reader, fields.get(key), where.key(key)) for key in _WINDOW_KEYS)
    return None if early is _BAD or late is _BAD else Window(early, late)


def _read_window_side(reader: _Reader, node: Node | None, where: _Where) -> object:
    """A duration, None for `unbounded`, or _BAD; an omitted side is zero days."""
    if node is None:
        return _ZERO
    if isinstance(node, ScalarNode) and node.value.strip().lower() == _UNBOUNDED:
        return None
    duration = reader.duration(node, where)
    if duration is None:
        return _BAD
    if duration.amount < 0:
        reader.report(
            node,
            where,
            f"'{duration}' is negative; a window side is a distance from the target, such as 3d (or 'unbounded')",
        )
        return _BAD
    return duration


def _read_repeat(node: Node, where: _Where, reader: _Reader) -> Repeat | None:
    fields = reader.fields(node, where, _REPEAT_KEYS)
    if fields is None:
        return None
    every = _read(fields, where, "every", reader.duration)
    if every is not None and every.amount <= 0:
        reader.report(
            fields["every"], where.key("every"), f"'{every}' does not move forward; write a positive step, such as 21d"
        )
        every = None
    count = _read_count(reader, fields["count"], where.key("count")) if "count" in fields else _BAD
    return None if every is None or count is _BAD else Repeat(every, count)


def _read_count(reader: _Reader, node: Node, where: _Where) -> object:
    """A positive int, None for 'open', or _BAD."""
    value = reader.scalar(node, where, "a number of occurrences")
    if value == _OPEN:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if value is not _BAD:
        reader.report(
            node, where, f"expected a whole number of occurrences (1 or more) or 'open', found {_describe(node)}"
        )
    return _BAD


def _read_visit_arms(node: Node, where: _Where, reader: _Reader, context: _Context) -> frozenset[str] | None:
    codes = reader.texts(node, where, "arm codes")
    if codes is None:
        return None
    if not codes:
        reader.report(node, where, "lists no arm; list at least one, or remove 'arms'")
        return None
    known = context.arm_codes
    if known is not None and not known:
        reader.report(node, where, "the protocol defines no arms; add a top-level 'arms' list, or remove this")
        return None
    for index, (item, code) in enumerate(zip(node.value, codes)):
        if known is not None and code not in known:
            reader.report(
                item, where.item(index), f"'{code}' is not an arm of this protocol; {_suggest(code, known, 'arms')}"
            )
    return frozenset(codes)


def _check_occurrence_mark(reader: _Reader, draft: _VisitDraft) -> None:
    code = draft.code
    if code is None:
        return
    node, where = draft.fields["code"], draft.where.key("code")
    marks = code.count(OCCURRENCE)
    if draft.repeating and marks != 1:
        reader.report(
            node,
            where,
            "a repeating visit's code needs '{n}' exactly once, where the occurrence number goes, such as 'C{n}D1'",
        )
    elif not draft.repeating and marks:
        reader.report(
            node, where, "'{n}' stands for the occurrence number of a repeating visit; add 'repeat', or remove '{n}'"
        )


def _check_codes(reader: _Reader, drafts: list[_VisitDraft], context: _Context) -> dict[str, _VisitDraft]:
    """Report codes that clash; return each code's first visit."""
    first: dict[str, _VisitDraft] = {}
    for draft in drafts:
        code = draft.code
        if code is None:
            continue
        node, where = draft.fields["code"], draft.where.key("code")
        repeating = None if draft.repeating else _occurrence_of(code, drafts)
        if code in first:
            reader.report(node, where, f"visit code '{code}' is already used by the visit on line {first[code].line}")
            continue
        first[code] = draft
        if context.events and code in context.events:
            reader.report(
                node, where, f"'{code}' is also an event name, so 'from: {code}' would be ambiguous; rename one of them"
            )
        elif repeating is not None:
            reader.report(
                node,
                where,
                f"'{code}' is also an occurrence of repeating visit '{repeating.code}' "
                f"(line {repeating.line}); rename one of them",
            )
    return first


def _occurrence_of(code: str, drafts: list[_VisitDraft]) -> _VisitDraft | None:
    """The repeating visit of which `code` is an expanded occurrence, such as C3D1 of C{n}D1."""
    for draft in drafts:
        if draft.repeating and draft.code and draft.code.count(OCCURRENCE) == 1:
            head, _, tail = draft.code.partition(OCCURRENCE)
            if re.fullmatch(f"{re.escape(head)}[1-9][0-9]*{re.escape(tail)}", code):
                return draft
    return None


def _check_numbers(reader: _Reader, drafts: list[_VisitDraft]) -> None:
    """Visit numbers (SDTM VISITNUM) must be unique, including those defaulted from positions."""
    owners: dict[float, _VisitDraft] = {}
    for draft in drafts:
        number = draft.values["number"]
        if number is None:
            continue
        if number not in owners:
            owners[number] = draft
            continue
        explicit = "number" in draft.fields
        detail = f"visit number {number} is already used by visit {owners[number].code}; give each visit its own"
        if not explicit:
            detail += " (a visit without 'number' is numbered by its position)"
        reader.report(draft.fields["number"] if explicit else draft.node, draft.where.key("number"), detail)


def _check_from(
    reader: _Reader,
    draft: _VisitDraft,
    drafts: list[_VisitDraft],
    first: dict[str, _VisitDraft],
    context: _Context,
    complete: bool,
) -> None:
    """`from` names an event or a non-repeating visit defined earlier, without loops."""
    name = draft.values["reference_name"]
    if name is None or (context.events is not None and name in context.events):
        return
    node, where = draft.fields["from"], draft.where.key("from")
    target = first.get(name)
    if target is None:
        repeating = _occurrence_of(name, drafts)
        if repeating is not None:
            reader.report(
                node,
                where,
                f"'{name}' is an occurrence of repeating visit '{repeating.code}'; "
                "count from an event or a non-repeating visit",
            )
        elif complete and context.events is not None:
            known = [*context.events, *first]
            reader.report(
                node,
                where,
                f"'{name}' is neither an event nor a visit of this protocol; "
                + _suggest(name, known, "events and visits"),
            )
    elif target is draft:
        reader.report(node, where, "a visit cannot count from itself; name an event or an earlier visit")
    elif target.repeating:
        reader.report(
            node,
            where,
            f"'{name}' is a repeating visit, so it is ambiguous which occurrence "
            f"({target.code.replace(OCCURRENCE, '1')}, "
            f"{target.code.replace(OCCURRENCE, '2')}, ...) to count from; name an event "
            "or a non-repeating visit",
        )
    elif target.index > draft.index:
        loop = _loop(draft, target, first)
        if loop:
            reader.report(
                node,
                where,
                f"visits count from each other in a loop ({' -> '.join(loop)}); one of them must count from an event",
            )
        else:
            reader.report(
                node, where, f"'{name}' is defined later (line {target.line}); move this visit after visit {name}"
            )


def _loop(start: _VisitDraft, target: _VisitDraft, first: dict[str, _VisitDraft]) -> list[str] | None:
    """The codes of a reference loop from `start` through `target` back to `start`, if there is one."""
    path, seen, current = [start.code, target.code], {start.index, target.index}, target
    while True:
        following = first.get(current.values["reference_name"] or "")
        if following is start:
            return [*path, start.code]
        if following is None or following.index in seen:
            return None
        path.append(following.code)
        seen.add(following.index)
        current = following


# ---- calendars -------------------------------------------------------------------------------------


def _read_calendar(reader: _Reader, top: dict[str, Node]) -> Calendar | None:
    where = _Where()
    specs = _read(top, where, "calendars", _read_calendar_specs, reader) if "calendars" in top else {}
    if "calendar" not in top:
        if reader.first_business_day_use is not None:
            node, duration_where, duration = reader.first_business_day_use
            reader.report(
                node,
                duration_where,
                f"'{duration}' counts business days, but the protocol names no "
                "calendar; add a top-level line such as 'calendar: business-us'",
            )
        return None
    name = _read(top, where, "calendar", reader.text)
    if name is None:
        return None
    if specs is not None and name in specs:
        return None if specs[name] is None else build_calendar(name, specs[name])
    if name in BUILTIN_CALENDARS:
        return build_calendar(name)
    if specs is not None:
        known = [*BUILTIN_CALENDARS, *specs]
        reader.report(
            top["calendar"],
            where.key("calendar"),
            f"'{name}' is not a known calendar; "
            + _suggest(name, known, "calendars")
            + " (a protocol may define its own under 'calendars:')",
        )
    return None


def _read_calendar_specs(node: Node, where: _Where, reader: _Reader) -> dict[str, dict | None] | None:
    entries = reader.entries(node, where, "a mapping of calendar names to definitions")
    if entries is None:
        return None
    specs = {}
    for name, (key_node, value_node) in entries.items():
        spec_where = where.key(name, f"calendar {name}")
        if name in BUILTIN_CALENDARS:
            reader.report(key_node, spec_where, f"'{name}' is a built-in calendar; give yours another name")
        specs[name] = _read_calendar_spec(reader, value_node, spec_where)
    return specs


def _read_calendar_spec(reader: _Reader, node: Node, where: _Where) -> dict | None:
    """A spec for build_calendar, or None when it has problems."""
    known_problems = len(reader.problems)
    fields = reader.fields(node, where, (), CALENDAR_KEYS)
    if fields is None:
        return None
    spec = {
        "weekend": _read(fields, where, "weekend", _read_weekend, reader),
        "holidays": _read(fields, where, "holidays", _read_dates, reader),
        "rules": _read(fields, where, "rules", reader.choice, tuple(HOLIDAY_RULES)),
    }
    if len(reader.problems) > known_problems:
        return None
    return {key: value for key, value in spec.items() if key in fields}


def _read_weekend(node: Node, where: _Where, reader: _Reader) -> tuple[str, ...] | None:
    days = reader.texts(node, where, "day names")
    for index, day in enumerate(days or ()):
        try:
            weekday_index(day)
        except CalendarError as error:
            reader.report(node.value[index], where.item(index), str(error))
    return days


def _read_dates(node: Node, where: _Where, reader: _Reader) -> tuple[date, ...] | None:
    items = reader.items(node, where, "dates, such as [2025-12-24, 2025-12-31]")
    if items is None:
        return None
    dates = tuple(reader.iso_date(item, where.item(index)) for index, item in enumerate(items))
    return None if None in dates else dates


# ---- deviations ------------------------------------------------------------------------------------


def _read_deviations(node: Node, where: _Where, reader: _Reader) -> ClassificationDefaults | None:
    """The protocol's classification defaults: each rule it names over DEFAULTS, key by key; None when the
    section has problems."""
    known_problems = len(reader.problems)
    entries = (
        {}
        if _is_null(node)
        else reader.entries(
            node, where, "a mapping of deviation rules, such as 'visit_late: {classification: important}'"
        )
    )
    if entries is None:
        return None
    if not entries:
        reader.report(
            node,
            where,
            "names no rule; give at least one rule, such as "
            "'visit_late: {classification: important}', or remove 'deviations'",
        )
        return None
    by_rule, thresholds = dict(DEFAULTS.by_rule), dict(DEFAULTS.thresholds)
    for name, (key_node, value_node) in entries.items():
        if name not in _DEVIATION_RULES:
            reader.report(
                key_node,
                where.key(name),
                f"unknown deviation rule '{name}'; {_suggest(name, _DEVIATION_RULES, 'rules')}",
            )
            continue
        rule = Rule(name)
        classification, rule_thresholds = _read_deviation_rule(
            reader, rule, key_node, value_node, where.key(name, f"deviation rule {name}")
        )
        if classification is not None:
            by_rule[rule] = classification
        if rule_thresholds is not None:
            thresholds[rule] = rule_thresholds
    return None if len(reader.problems) > known_problems else ClassificationDefaults(by_rule, thresholds)


def _read_deviation_rule(
    reader: _Reader, rule: Rule, key_node: Node, node: Node, where: _Where
) -> tuple[Classification | None, tuple[Threshold, ...] | None]:
    """One rule's classification and thresholds, each None when absent or reported as a problem."""
    if _is_null(node) or (isinstance(node, MappingNode) and not node.value):
        reader.report(
            key_node,
            where,
            "is empty; give its 'classification', its 'thresholds', or both (or remove the rule to keep its default)",
        )
        return None, None
    fields = reader.fields(node, where, (), _DEVIATION_RULE_KEYS) or {}
    classification = _read(fields, where, "classification", _read_classification, reader)
    if "thresholds" not in fields or rule in _RULES_WITH_DAYS:
        return classification, _read(fields, where, "thresholds", _read_thresholds, reader, rule)
    with_days = ", ".join(_RULES_WITH_DAYS[:-1]) + f" and {_RULES_WITH_DAYS[-1]}"
    reader.report(
        _key_node(node, "thresholds"),
        where.key("thresholds"),
        f"{rule} has no days outside a window, so it takes no thresholds (only {with_days} do); "
        "remove 'thresholds' and give its 'classification' instead",
    )
    return classification, None


def _read_thresholds(node: Node, where: _Where, reader: _Reader, rule: Rule) -> tuple[Threshold, ...] | None:
    """A rule's thresholds, lowest first (the caller keeps them only when no problem was reported)."""
    items = reader.items(node, where, "thresholds, such as '- {over_days: 7, classification: important}'")
    if items is None:
        return None
    if not items:
        reader.report(node, where, "lists no threshold; list at least one, or remove 'thresholds'")
        return None
    thresholds: list[Threshold] = []
    first_line: dict[int, int] = {}  # over_days -> the line of the threshold that gives it
    for index, item in enumerate(items):
        item_where = where.item(index, f"deviation rule {rule} threshold {index + 1}")
        fields = reader.fields(item, item_where, _THRESHOLD_KEYS) or {}
        days = _read(fields, item_where, "over_days", _read_over_days, reader)
        classification = _read(fields, item_where, "classification", _read_classification, reader)
        if days in first_line:
            reader.report(
                fields["over_days"],
                item_where.key("over_days"),
                f"over_days {days} is already given by the threshold on line {first_line[days]}; "
                "give each threshold its own number of days",
            )
        elif days is not None:
            first_line[days] = fields["over_days"].start_mark.line + 1
            if classification is not None:
                thresholds.append(Threshold(days, classification))
    return tuple(sorted(thresholds, key=lambda threshold: threshold.days_over))


def _read_over_days(node: Node, where: _Where, reader: _Reader) -> int | None:
    value = reader.scalar(node, where, "a whole number of days")
    if value is _BAD:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    reader.report(
        node,
        where,
        f"expected a whole number of days outside the window (0 or more), such as 7, found {_describe(node)}",
    )
    return None


def _read_classification(node: Node, where: _Where, reader: _Reader) -> Classification | None:
    value = reader.text(node, where)
    if value is None:
        return None
    if value not in _CLASSIFICATIONS:
        close = difflib.get_close_matches(value, _CLASSIFICATIONS, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        reader.report(
            node,
            where,
            f"'{value}' is not a classification{hint}; write "
            f"{', '.join(_CLASSIFICATIONS[:-1])} or {_CLASSIFICATIONS[-1]}",
        )
        return None
    return Classification(value)


def _is_null(node: Node) -> bool:
    """An empty value, as in `deviations:` with nothing after it."""
    return isinstance(node, ScalarNode) and node.tag.endswith(":null")


def _key_node(node: MappingNode, key: str) -> Node:
    """The key node of `key` in a mapping, to report a problem where the key is written."""
    return next(k for k, _ in node.value if isinstance(k, ScalarNode) and k.value == key)
