"""The top level of a protocol file: study, title, version, effective date, blinding, events and arms; every section
is read, and the Protocol is built when no problem was found."""

from __future__ import annotations

import re

from yaml.nodes import MappingNode, Node, ScalarNode

from trialcoord.kernel.rules.access import Blinding
from trialcoord.scheduling.protocol_files.calendar_specs import _read_calendar
from trialcoord.scheduling.protocol_files.deviation_defaults import _read_deviations
from trialcoord.scheduling.protocol_files.nodes import _describe, _peek, _read, _Reader, _Where
from trialcoord.scheduling.protocol_files.references import _Context, _read_event_name
from trialcoord.scheduling.protocol_files.visits import _read_visits
from trialcoord.scheduling.rules.classification import DEFAULTS
from trialcoord.scheduling.rules.protocol import Arm, Event, Protocol, VisitDefinition

_TOP_REQUIRED = ("study", "title", "version", "effective", "day_one", "events", "visits")
_TOP_OPTIONAL = ("calendar", "calendars", "arms", "description", "deviations", "blinding")
_EVENT_KEYS = ("ends_schedule", "collection", "consent", "description")
_BLINDINGS = tuple(str(blinding) for blinding in Blinding)  # `blinding:`
_COLLECTION = ("stops", "continues")  # an ending event's `collection:`
_ARM_KEYS = ("code", "name")
_STUDY_CODE = re.compile(r"^[A-Za-z0-9_-]+$")


# ---- the protocol ----------------------------------------------------------------------------------


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
    blinding = _read(top, where, "blinding", reader.choice, _BLINDINGS) if "blinding" in top else Blinding.OPEN
    if reader.problems:
        return None
    visits = tuple(VisitDefinition(**draft.values) for draft in drafts)
    return Protocol(
        study, title, version, effective, day_one, events, visits, arms, calendar, deviations, Blinding(blinding)
    )


def _read_study(node: Node, where: _Where, reader: _Reader) -> str | None:
    study = reader.text(node, where)
    if study is not None and not _STUDY_CODE.match(study):
        reader.report(node, where, f"study code '{study}' may hold only letters, digits, '-' and '_'")
        return None
    return study


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
