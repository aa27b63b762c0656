"""Cross-reference checks: the events and arms that other fields name, and visits' codes, numbers and `from`
checked against each other (unique, defined earlier, no loops)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from yaml.nodes import Node

from trialcoord.scheduling.protocol_files.nodes import _Reader, _suggest, _Where
from trialcoord.scheduling.rules.protocol import OCCURRENCE, Event


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
        return _text(self.values.get("code"))

    @property
    def number(self) -> int | float | None:
        """Its visit number (None: unreadable); `values` must hold it."""
        number = self.values["number"]
        return number if isinstance(number, (int, float)) else None

    @property
    def reference_name(self) -> str | None:
        """What it counts from (None: unreadable); `values` must hold it."""
        return _text(self.values["reference_name"])

    @property
    def repeating(self) -> bool:
        return "repeat" in self.fields

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1


def _read_event_name(node: Node, where: _Where, reader: _Reader, context: _Context) -> str | None:
    name = reader.text(node, where)
    if name is not None and context.events is not None and name not in context.events:
        hint = _suggest(name, context.events, "events")
        reader.report(node, where, f"'{name}' is not an event of this protocol; {hint}")
        return None
    return name


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
        number = draft.number
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
    name = draft.reference_name
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
            f"({name.replace(OCCURRENCE, '1')}, "
            f"{name.replace(OCCURRENCE, '2')}, ...) to count from; name an event "
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
    path, seen, current = [_known_code(target)], {start.index, target.index}, target
    while True:
        following = first.get(current.reference_name or "")
        if following is start:
            return [_known_code(start), *path, _known_code(start)]
        if following is None or following.index in seen:
            return None
        path.append(_known_code(following))
        seen.add(following.index)
        current = following


def _known_code(draft: _VisitDraft) -> str:
    """The code of a visit found by its code in `first`."""
    if draft.code is None:
        raise ValueError(f"visit at position {draft.index + 1} was found by a code it does not have")
    return draft.code


def _text(value: object) -> str | None:
    """A value read as text (`_Reader.text` gives a str or None)."""
    return value if isinstance(value, str) else None
