"""The `visits:` list: each visit's fields, window, repeat and arms read into a draft; the drafts are then checked
against each other (references.py)."""

from __future__ import annotations

from collections.abc import Callable

from yaml.nodes import Node, ScalarNode

from trialcoord.scheduling.protocol_files.nodes import _BAD, _Bad, _describe, _peek, _read, _Reader, _suggest, _Where
from trialcoord.scheduling.protocol_files.references import (
    _check_codes,
    _check_from,
    _check_numbers,
    _Context,
    _read_event_name,
    _VisitDraft,
)
from trialcoord.scheduling.rules.durations import DAYS, Duration
from trialcoord.scheduling.rules.protocol import ACTUAL, OCCURRENCE, PLANNED, Repeat, Window

_AFTER_END = ("expected", "not_applicable")  # a visit's `after_end:`
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
_UNBOUNDED, _OPEN = "unbounded", "open"
_ZERO = Duration(0, DAYS, "0d")


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


def _read_window_side(reader: _Reader, node: Node | None, where: _Where) -> Duration | None | _Bad:
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


def _read_count(reader: _Reader, node: Node, where: _Where) -> int | None | _Bad:
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
