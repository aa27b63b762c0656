"""CSV import of recorded events and visits: `participant,event,date[,arm]`.

`event` is an event name of the protocol or a visit code (an expanded repeat such as C3D1; a code
the protocol lacks is an unscheduled visit). The whole file is checked first and every bad line is
reported; a file with any problem imports nothing. Importing the same file again changes nothing.
`parse_events_csv` is pure, so `trialcoord check` validates a file without a database.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from trialcoord.adapters.persistence import repositories as repo
from trialcoord.adapters.persistence.engine import transaction
from trialcoord.adapters.persistence.repositories import ScheduleInputs
from trialcoord.domain.problems import InvalidInput, Problem
from trialcoord.domain.protocol import Protocol
from trialcoord.services import scheduling

REQUIRED = ("participant", "event", "date")
OPTIONAL = ("arm",)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    participant: str
    event: str  # an event name, or a visit code when `is_event` is False
    day: date
    arm: str | None
    is_event: bool


@dataclass
class ParticipantFacts:
    """One participant's dates from a file, as the schedule engine takes them."""

    arm: str | None = None
    events: dict[str, date] = field(default_factory=dict)
    actuals: dict[str, date] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportResult:
    created_participants: int
    events_recorded: int
    visits_recorded: int
    unchanged: int


def parse_events_csv(text: str, file: str, protocol: Protocol) -> tuple[list[ImportRow], list[Problem]]:
    """Rows of a CSV file and every problem in it, each naming its line and column."""
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
        return _read_rows(reader, header, file, protocol)
    except csv.Error as exc:
        return [], [Problem(f"this is not valid CSV ({exc})", file, reader.line_num)]


def read_events_file(path: Path, protocol: Protocol) -> dict[str, ParticipantFacts]:
    """A CSV file's dates by participant, without a database; InvalidInput lists every problem."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput([Problem(f"not a UTF-8 text file (byte {exc.start}); is it a CSV?", str(path))]) from None
    except OSError as exc:
        raise InvalidInput([Problem(f"cannot be read ({exc.strerror})", str(path))]) from None
    rows, problems = parse_events_csv(text, str(path), protocol)
    if problems:
        raise InvalidInput(problems)
    facts: dict[str, ParticipantFacts] = {}
    for row in rows:
        person = facts.setdefault(row.participant, ParticipantFacts())
        person.arm = person.arm or row.arm
        (person.events if row.is_event else person.actuals)[row.event] = row.day
    return facts


async def import_events(study: str, csv_text: str, site: str | None = None, file: str = "<csv>",
                        today: date | None = None) -> ImportResult:
    """Import a CSV file in one transaction, enrolling unknown participants at `site`."""
    today = today or date.today()
    async with transaction(f"study {study}, import of {file}"):
        study_row = await scheduling.require_study(study)
        rows, problems = parse_events_csv(csv_text, file, await scheduling.get_protocol(study))
        await repo.lock_participants(study_row["id"])
        people = _by_subject(await repo.load_inputs(study_row["id"]))
        site_row = await repo.find_site(study_row["id"], site) if site else None
        if site and site_row is None:
            problems.append(Problem(f"study {study} has no site {site}", file, field="site"))
        problems += _conflicts(rows, people, file, site)
        if problems:
            raise InvalidInput(problems)
        created = await _enrol_new(study, study_row["id"], rows, people, site_row)
        if created:
            people = _by_subject(await repo.load_inputs(study_row["id"]))
        events, visits, changed = await _apply(rows, people)
        if changed:
            await scheduling.refresh_participants(study_row["id"], inputs=changed, today=today)
    return ImportResult(created, events, visits, len(rows) - events - visits)


def _header_problems(header: list[str], file: str) -> list[Problem]:
    problems = [Problem(f"the header lacks the column '{name}'", file, 1, field=name)
                for name in REQUIRED if name not in header]
    known = REQUIRED + OPTIONAL
    problems += [Problem(f"unknown column '{name}'; columns are {', '.join(known)}", file, 1, field=name)
                 for name in header if name not in known]
    problems += [Problem(f"the column '{name}' appears twice", file, 1, field=name)
                 for name in sorted(set(header)) if header.count(name) > 1]
    return problems


def _read_rows(reader, header: list[str], file: str, protocol: Protocol) -> tuple[list[ImportRow], list[Problem]]:
    rows: list[ImportRow] = []
    problems: list[Problem] = []
    arms: dict[str, tuple[str, int]] = {}  # participant -> (arm, line) as first given
    dates: dict[tuple[str, str], tuple[date, int]] = {}
    for record in reader:
        line = reader.line_num
        if not any(value.strip() for value in record):
            continue
        if len(record) != len(header):
            problems.append(Problem(f"expected {len(header)} fields, found {len(record)}", file, line))
            continue
        values = {name: value.strip() for name, value in zip(header, record)}
        found = [Problem(f"the {name} is missing", file, line, field=name) for name in REQUIRED if not values[name]]
        day = _date(values["date"], file, line, found) if values["date"] else None
        arm = values.get("arm") or None
        participant, event = values["participant"], values["event"]
        if arm is not None:
            found += _arm_problems(protocol, participant, arm, arms, file, line)
        if participant and event and day:
            earlier = dates.setdefault((participant, event), (day, line))
            if earlier[0] != day:
                found.append(Problem(f"participant {participant}: {event} is also given as {earlier[0]} on line"
                                     f" {earlier[1]}", file, line, field="date"))
        problems += found
        if not found:
            rows.append(ImportRow(line, participant, event, day, arm, event in protocol.events))
    if not rows and not problems:
        problems.append(Problem("the file has a header but no rows", file))
    return rows, problems


def _date(text: str, file: str, line: int, problems: list[Problem]) -> date | None:
    try:
        if _ISO_DATE.match(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    problems.append(Problem(f"'{text}' is not a date; write it as YYYY-MM-DD", file, line, field="date"))
    return None


def _arm_problems(protocol: Protocol, participant: str, arm: str, arms: dict, file: str, line: int
                  ) -> list[Problem]:
    if arm not in protocol.arm_codes:
        known = ", ".join(sorted(protocol.arm_codes)) or "none"
        return [Problem(f"'{arm}' is not an arm of protocol version {protocol.version}; arms: {known}",
                        file, line, field="arm")]
    first, first_line = arms.setdefault(participant, (arm, line))
    if first != arm:
        return [Problem(f"participant {participant} has arm {first} on line {first_line} and {arm} here",
                        file, line, field="arm")]
    return []


def _conflicts(rows: list[ImportRow], people: dict[str, ScheduleInputs], file: str, site: str | None
               ) -> list[Problem]:
    """What the file contradicts in the database; changing recorded dates needs a reason, so not here."""
    problems = []
    for row in rows:
        person = people.get(row.participant)
        if person is None:
            if site is None:
                problems.append(Problem(f"participant {row.participant} is not enrolled; give a site to enrol"
                                        " new participants", file, row.line, field="participant"))
            continue
        if row.arm is not None and person.arm not in (None, row.arm):
            problems.append(Problem(f"participant {row.participant} is assigned to arm {person.arm}, not"
                                    f" {row.arm}", file, row.line, field="arm"))
        recorded = (person.events if row.is_event else person.actuals).get(row.event)
        if recorded not in (None, row.day):
            problems.append(Problem(f"participant {row.participant}: {row.event} is already recorded on {recorded};"
                                    " change a recorded date in the application, with a reason", file, row.line,
                                    field="date"))
    return problems


async def _enrol_new(study: str, study_id: int, rows: list[ImportRow], people: dict[str, ScheduleInputs],
                     site_row: dict | None) -> int:
    """Enrol participants the database lacks, on the earliest date the file gives for each."""
    first: dict[str, list] = {}
    for row in rows:
        if row.participant not in people:
            entry = first.setdefault(row.participant, [row.day, row.arm])
            entry[0], entry[1] = min(entry[0], row.day), entry[1] or row.arm
    versions = await repo.list_versions(study_id)
    await repo.insert_participants(study_id, [
        (subject, site_row["id"], arm, scheduling.enrolment_version(study, versions, None, day)["id"], day)
        for subject, (day, arm) in first.items()
    ])
    return len(first)


async def _apply(rows: list[ImportRow], people: dict[str, ScheduleInputs]) -> tuple[int, int, list[ScheduleInputs]]:
    """Record what is new; return (events, visits, participants changed)."""
    new_events, visits, changed = [], 0, {}
    for row in rows:
        person = people[row.participant]
        if row.arm is not None and person.arm is None:
            await repo.update_participant(person.id, arm=row.arm)
            person.arm, changed[person.id] = row.arm, person
        facts = person.events if row.is_event else person.actuals
        if row.event in facts:
            continue  # the same date (a different one was reported as a problem)
        facts[row.event] = row.day
        changed[person.id] = person
        if row.is_event:
            new_events.append((person.id, row.event, row.day, None))
        else:
            visits += 1
    await repo.upsert_events(new_events)
    return len(new_events), visits, list(changed.values())


def _by_subject(inputs: dict[int, ScheduleInputs]) -> dict[str, ScheduleInputs]:
    return {person.subject_id: person for person in inputs.values()}
