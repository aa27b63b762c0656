"""`trialcoord schedule` and `check`: visit statuses from a protocol file and event dates, with no database."""

from __future__ import annotations

import argparse
import gc
import sys
from datetime import date
from pathlib import Path

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import FORMATS, iso_date
from trialcoord.scheduling.protocol_files import load_protocol
from trialcoord.scheduling.rows import WRITERS
from trialcoord.scheduling.rules.schedule import evaluate


def register(commands) -> None:
    one = commands.add_parser("schedule", help="one participant's schedule from event dates (no database)")
    one.add_argument("protocol", metavar="PROTOCOL")
    one.add_argument("--event", action="append", type=event_pair, default=[], metavar="NAME=DATE")
    one.add_argument("--arm")
    one.add_argument("--as-of", type=iso_date)
    one.add_argument("--format", choices=FORMATS + ("ics",), default="table")
    one.add_argument("--subject", metavar="SUBJECT_ID", help="the participant's subject ID (needed for ics: its UIDs)")
    one.set_defaults(run=lambda a: schedule(a.protocol, dict(a.event), a.arm, a.as_of, a.format, a.subject))

    many = commands.add_parser("check", help="visit statuses of many participants from a CSV (no database)")
    many.add_argument("protocol", metavar="PROTOCOL")
    many.add_argument("--events", required=True, metavar="FILE.csv")
    many.add_argument("--as-of", type=iso_date)
    many.add_argument("--format", choices=FORMATS + ("ics",), default="table")
    many.set_defaults(run=lambda a: check(a.protocol, a.events, a.as_of, a.format))


def event_pair(text: str) -> tuple[str, date]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"'{text}' should be NAME=YYYY-MM-DD, such as randomization=2024-03-04")
    return name.strip(), iso_date(value.strip())


def print_rows(pairs, fmt: str, with_participant: bool) -> None:
    WRITERS[fmt](pairs, sys.stdout, with_participant)


def schedule(
    protocol_file: str,
    events: dict[str, date],
    arm: str | None,
    as_of: date | None,
    fmt: str,
    subject: str | None = None,
) -> int:
    from trialcoord.kernel.problems import InvalidInput, Problem

    if fmt == "ics" and not (subject or "").strip():
        # Without it every participant's calendar would hold the same UIDs: one would overwrite another's events.
        raise support.UsageError("--format ics needs --subject SUBJECT_ID: each event's UID names its participant")
    protocol = load_protocol(protocol_file)
    problems = [
        Problem(
            f"'{name}' is not an event of {protocol.study} {protocol.version};"
            f" events are: {', '.join(protocol.events)}",
            field="--event",
        )
        for name in events
        if name not in protocol.events
    ]
    if arm is not None and protocol.arms and arm not in protocol.arm_codes:
        problems.append(
            Problem(f"'{arm}' is not an arm; arms are: {', '.join(sorted(protocol.arm_codes))}", field="--arm")
        )
    if problems:
        raise InvalidInput(problems)
    as_of = as_of or support.today()
    rows = evaluate(protocol, events, {}, as_of, arm=arm)
    if fmt == "ics":
        subject_id = (subject or "").strip()
        write_calendar(f"{protocol.study} {subject_id}", protocol.study, [(subject_id, row) for row in rows], as_of)
    else:
        print_rows([(None, row) for row in rows], fmt, with_participant=False)
    return 0


def check(protocol_file: str, events_file: str, as_of: date | None, fmt: str) -> int:
    from trialcoord.scheduling.events_csv import read_events_file

    protocol = load_protocol(protocol_file)
    as_of = as_of or support.today()
    # A batch of millions of short-lived objects that form no cycles: the cyclic collector only costs time.
    gc.disable()
    try:
        participants = read_events_file(Path(events_file), protocol)
        pairs = [
            (subject, row)
            for subject, record in sorted(participants.items())
            for row in evaluate(protocol, record.events, record.actuals, as_of, arm=record.arm)
        ]
        if fmt == "ics":
            write_calendar(f"{protocol.study} schedule", protocol.study, pairs, as_of)
        else:
            print_rows(pairs, fmt, with_participant=True)
    finally:
        gc.enable()
    return 0


def write_calendar(title: str, study: str, pairs, as_of: date) -> None:
    """Visits computed without a database: none stored, so each has SEQUENCE 0 and the as-of date as its stamp."""
    from trialcoord.scheduling.ics import calendar_parts

    for part in calendar_parts(title, study, ((subject, row, None) for subject, row in pairs), as_of):
        sys.stdout.write(part.decode())
