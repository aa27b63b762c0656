"""Event files from other systems: CSV with the header `participant,event,date[,arm][,site]`.

`event` is an event name of the protocol or a visit code (an expanded repeat such as C3D1; a code the
protocol lacks is an unscheduled visit). An unscheduled label may come on several dates (an EDC's
"UNSCHEDULED 9.2" twice): each date is a visit of its own (`number_unscheduled`); a protocol visit or event
given two dates is a problem naming both lines. Every problem in a file is reported with its line and field.
Lines are read on a fast path; only a line that fails it goes through the checks that explain why,
so a million-line file costs little more than reading it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import NamedTuple

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.rules.protocol import Protocol

REQUIRED = ("participant", "event", "date")
OPTIONAL = ("arm", "site")
REPEAT = "#"  # an unscheduled label's second and later dates are visits LABEL#2, LABEL#3, ... (by date)


class EventRow(NamedTuple):
    line: int
    participant: str
    event: str  # an event name, or a visit code when `is_event` is False
    day: date
    arm: str | None
    is_event: bool
    site: str | None = None
    source: str | None = None  # the dataset a row comes from, when not the file imported (SDTM SV, DS)
    variable: str | None = None  # the dataset variable that holds the date (SVSTDTC), when not a `date` column
    site_from: tuple[str, int] | None = None  # where the site and arm come from (SDTM DM and its row), if elsewhere


@dataclass
class ParticipantFacts:
    """One participant's dates from a file, as the schedule engine takes them."""

    arm: str | None = None
    events: dict[str, date] = field(default_factory=dict)
    actuals: dict[str, date] = field(default_factory=dict)


def parse_events_csv(text: str, file: str, protocol: Protocol) -> tuple[list[EventRow], list[Problem]]:
    """Rows of a CSV text and every problem in it, each naming its line and field."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        return [], [Problem(f"the file is empty; expected the header {','.join(REQUIRED)}", file)]
    if "\x00" in text:
        return [], [Problem("this is not a CSV text file (it holds binary data)", file)]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip().lower() for name in next(reader)]
        problems = _header_problems(header, file)
        if problems:
            return [], problems
        return _Lines(header, file, protocol).read(reader)
    except csv.Error as exc:
        return [], [Problem(f"this is not valid CSV ({exc})", file, reader.line_num)]


def read_events_file(path: Path, protocol: Protocol) -> dict[str, ParticipantFacts]:
    """A CSV file's dates by participant; InvalidInput lists every problem."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput([Problem(f"not a UTF-8 text file (byte {exc.start}); is it a CSV?", str(path))]) from None
    except OSError as exc:
        raise InvalidInput([Problem(f"cannot be read ({exc.strerror})", str(path))]) from None
    rows, problems = parse_events_csv(text, str(path), protocol)
    if problems:
        raise InvalidInput(problems)
    rows = number_unscheduled(rows, protocol, {})
    facts: dict[str, ParticipantFacts] = {}
    for row in rows:
        person = facts.get(row.participant)
        if person is None:
            person = facts[row.participant] = ParticipantFacts()
        person.arm = person.arm or row.arm
        (person.events if row.is_event else person.actuals)[row.event] = row.day
    return facts


def number_unscheduled(
    rows: list[EventRow], protocol: Protocol, recorded: dict[str, dict[str, date]]
) -> list[EventRow]:
    """The rows with each unscheduled label's dates as visits of their own: a date already recorded keeps its
    code (`recorded`: participant -> visit code -> date, as stored), new dates take the label if it is free,
    else LABEL#2, LABEL#3, ... in date order, never a code the participant has (stored or in the file).
    Importing the same file again changes nothing."""
    dates: dict[tuple[str, str], set[date]] = {}
    in_file: dict[str, set[str]] = {}
    scheduled: dict[str, bool] = {}  # by code: the protocol defines it (looked up once per distinct code)
    for row in rows:
        in_file.setdefault(row.participant, set()).add(row.event)
        if not row.is_event:
            known = scheduled.get(row.event)
            if known is None:
                known = scheduled[row.event] = protocol.resolve_visit_code(row.event) is not None
            if not known:
                dates.setdefault((row.participant, row.event), set()).add(row.day)
    codes: dict[tuple[str, str, date], str] = {}
    for (participant, label), days in dates.items():
        stored_codes = recorded.get(participant, {})
        stored = {
            code: day
            for code, day in stored_codes.items()
            if code == label or (code.startswith(label + REPEAT) and code[len(label) + 1 :].isdigit())
        }
        if len(days) == 1 and not stored:
            continue  # the usual: one date, new
        by_day = {day: code for code, day in stored.items()}
        taken = set(stored_codes) | (in_file[participant] - {label})
        number = 1
        for day in sorted(days):
            if day in by_day:
                codes[(participant, label, day)] = by_day[day]
                continue
            code = label
            while code in taken:
                number += 1
                code = f"{label}{REPEAT}{number}"
            taken.add(code)
            codes[(participant, label, day)] = code
    if not codes:
        return rows
    return [row._replace(event=codes.get((row.participant, row.event, row.day), row.event)) for row in rows]


def _header_problems(header: list[str], file: str) -> list[Problem]:
    problems = [
        Problem(f"the header lacks the column '{name}'", file, 1, field=name) for name in REQUIRED if name not in header
    ]
    known = REQUIRED + OPTIONAL
    problems += [
        Problem(f"unknown column '{name}'; columns are {', '.join(known)}", file, 1, field=name)
        for name in header
        if name not in known
    ]
    problems += [
        Problem(f"the column '{name}' appears twice", file, 1, field=name)
        for name in sorted(set(header))
        if header.count(name) > 1
    ]
    return problems


class _Lines:
    """Reads data lines; remembers first arms and dates to report contradictions with their lines."""

    def __init__(self, header: list[str], file: str, protocol: Protocol):
        self.file, self.protocol, self.width = file, protocol, len(header)
        self.columns = tuple(header.index(name) for name in REQUIRED)
        self.arm_column = header.index("arm") if "arm" in header else None
        self.site_column = header.index("site") if "site" in header else None
        self.arms: dict[str, tuple[str, int]] = {}  # participant -> (arm, line) as first given
        self.sites: dict[str, tuple[str, int]] = {}  # participant -> (site, line) as first given
        self.dates: dict[tuple[str, str], tuple[date, int]] = {}  # (participant, event) -> (date, line)
        self.problems: list[Problem] = []

    def read(self, reader) -> tuple[list[EventRow], list[Problem]]:
        rows: list[EventRow] = []
        events, arm_codes, width = self.protocol.events, self.protocol.arm_codes, self.width
        p_col, e_col, d_col = self.columns
        a_col, s_col = self.arm_column, self.site_column
        arms, sites, dates, new_row = self.arms, self.sites, self.dates, tuple.__new__
        for record in reader:
            line = reader.line_num
            if len(record) == width:
                participant, event, text = record[p_col].strip(), record[e_col].strip(), record[d_col].strip()
                arm = record[a_col].strip() or None if a_col is not None else None
                site = record[s_col].strip() or None if s_col is not None else None
                day = _iso_date(text)
                # Fast path: everything present and well formed, nothing contradicting an earlier line.
                if (
                    participant
                    and event
                    and day is not None
                    and (arm is None or (arm in arm_codes and arms.setdefault(participant, (arm, line))[0] == arm))
                    and (site is None or sites.setdefault(participant, (site, line))[0] == site)
                ):
                    first = dates.setdefault((participant, event), (day, line))
                    if first[0] == day or (event not in events and self.protocol.resolve_visit_code(event) is None):
                        # the same date again is one visit; an unscheduled label on another date another visit
                        rows.append(
                            new_row(
                                EventRow, (line, participant, event, day, arm, event in events, site, None, None, None)
                            )
                        )
                        continue
            self.explain(record, line)
        if not rows and not self.problems:
            self.problems.append(Problem("the file has a header but no rows", self.file))
        return rows, self.problems

    def explain(self, record: list[str], line: int) -> None:
        """The slow path: say everything wrong with one line (or skip it when it is blank)."""
        file = self.file
        if not any(value.strip() for value in record):
            return
        if len(record) != self.width:
            self.problems.append(Problem(f"expected {self.width} fields, found {len(record)}", file, line))
            return
        values = dict(zip(REQUIRED, (record[c].strip() for c in self.columns)))
        found = [Problem(f"the {name} is missing", file, line, field=name) for name in REQUIRED if not values[name]]
        day = _iso_date(values["date"])
        if values["date"] and day is None:
            found.append(Problem(f"'{values['date']}' is not a date; write it as YYYY-MM-DD", file, line, field="date"))
        participant, event = values["participant"], values["event"]
        arm = record[self.arm_column].strip() if self.arm_column is not None else ""
        if arm:
            found += self.arm_problems(participant, arm, line)
        site = record[self.site_column].strip() if self.site_column is not None else ""
        if site and participant:
            first, first_line = self.sites.setdefault(participant, (site, line))
            if first != site:
                found.append(
                    Problem(
                        f"participant {participant} is at site {first} on line {first_line} and at {site} here",
                        file,
                        line,
                        field="site",
                    )
                )
        if participant and event and day:
            earlier = self.dates.setdefault((participant, event), (day, line))
            if earlier[0] != day:
                found.append(
                    Problem(
                        f"participant {participant}: {event} is also given as {earlier[0]} on line {earlier[1]}",
                        file,
                        line,
                        field="date",
                    )
                )
        self.problems += found

    def arm_problems(self, participant: str, arm: str, line: int) -> list[Problem]:
        codes = self.protocol.arm_codes
        if arm not in codes:
            known = ", ".join(sorted(codes)) or "none"
            return [
                Problem(
                    f"'{arm}' is not an arm of protocol version {self.protocol.version}; arms: {known}",
                    self.file,
                    line,
                    field="arm",
                )
            ]
        first, first_line = self.arms.setdefault(participant, (arm, line))
        if first != arm:
            return [
                Problem(
                    f"participant {participant} has arm {first} on line {first_line} and {arm} here",
                    self.file,
                    line,
                    field="arm",
                )
            ]
        return []


def _iso_date(text: str) -> date | None:
    """YYYY-MM-DD only: `date.fromisoformat` alone would also take `20240304`."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
