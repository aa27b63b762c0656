"""CSV import of recorded events and visits: `participant,event,date[,arm]`.

`event` is an event name of the protocol or a visit code (an expanded repeat such as C3D1; a code
the protocol lacks is an unscheduled visit). The whole file is checked first and every bad line is
reported; a file with any problem imports nothing. Importing the same file again changes nothing.
Parsing is in `adapters/events_csv.py`, shared with `trialcoord check`, which needs no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from trialcoord.adapters.events_csv import EventRow, parse_events_csv
from trialcoord.adapters.persistence import consent_store
from trialcoord.adapters.persistence import repositories as repo
from trialcoord.adapters.persistence.engine import transaction
from trialcoord.adapters.persistence.repositories import ScheduleInputs
from trialcoord.domain.problems import InvalidInput, Problem
from trialcoord.services import audit_log, scheduling
from trialcoord.services.audit_log import SYSTEM, Change

@dataclass(frozen=True, slots=True)
class ImportResult:
    created_participants: int
    events_recorded: int
    visits_recorded: int
    unchanged: int


async def import_events(study: str, csv_text: str, site: str | None = None, file: str = "<csv>",
                        today: date | None = None, actor: str = SYSTEM) -> ImportResult:
    """Import a CSV file in one transaction, enrolling unknown participants at `site`."""
    today = today or date.today()
    async with transaction(f"study {study}, import of {file}"):
        study_row = await scheduling.require_study(study)
        protocol = await scheduling.get_protocol(study)
        rows, problems = parse_events_csv(csv_text, file, protocol)
        await repo.lock_participants(study_row["id"])
        people = _by_subject(await repo.load_inputs(study_row["id"]))
        site_row = await repo.find_site(study_row["id"], site) if site else None
        if site and site_row is None:
            problems.append(Problem(f"study {study} has no site {site}", file, field="site"))
        problems += _conflicts(rows, people, file, site)
        problems += _consent_conflicts(rows, people, protocol.consent_event, file,
                                       await consent_store.first_consents(study_row["id"]))
        problems += [Problem(f"participant {row.participant}: {row.event} on {row.day} is after today ({today})",
                             file, row.line, field="date") for row in rows if row.day > today]
        if problems:
            raise InvalidInput(problems)
        enrolled = await _enrol_new(study, study_row["id"], rows, people, site_row)
        if enrolled:
            people = _by_subject(await repo.load_inputs(study_row["id"]))
        events, visits, changed, audited = await _apply(study, rows, people)
        if changed:
            await scheduling.refresh_participants(study_row["id"], inputs=changed, today=today)
        reason = f"imported from {file}"
        await audit_log.record(actor, *[
            Change("create", "participant", scheduling.record_id(study, site_row["code"], subject), None,
                   {"site": site_row["code"], "arm": arm, "enrolled_on": day}, reason)
            for subject, (day, arm) in enrolled.items()
        ], *[Change(action, kind, rid, old, new, reason) for action, kind, rid, old, new in audited])
        created = len(enrolled)
    return ImportResult(created, events, visits, len(rows) - events - visits)


def _conflicts(rows: list[EventRow], people: dict[str, ScheduleInputs], file: str, site: str | None
               ) -> list[Problem]:
    """What the file contradicts in the database; changing recorded dates needs a reason, so not here."""
    problems = []
    for row in rows:
        person = people.get(row.participant)
        if person is None and "/" in row.participant:
            problems.append(Problem(f"subject ID '{row.participant}' holds a '/', which codes may not", file,
                                    row.line, field="participant"))
            continue
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


def _consent_conflicts(rows: list[EventRow], people: dict[str, ScheduleInputs], event: str | None, file: str,
                       first: dict[int, str]) -> list[Problem]:
    """The consent event is the date of first consent: never later than a consent already on record. A consent
    event imported without its version is a consent of unknown version (a data issue the site resolves)."""
    problems = []
    for row in rows:
        person = people.get(row.participant)
        if row.event != event or person is None or person.id not in first:
            continue
        if row.day > date.fromisoformat(first[person.id]):
            problems.append(Problem(f"participant {row.participant}: {event} on {row.day} is after the first consent"
                                    f" on record ({first[person.id]}); the {event} event is the date of first consent",
                                    file, row.line, field="date"))
    return problems


async def _enrol_new(study: str, study_id: int, rows: list[EventRow], people: dict[str, ScheduleInputs],
                     site_row: dict | None) -> dict[str, list]:
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
    return first


async def _apply(study: str, rows: list[EventRow], people: dict[str, ScheduleInputs]
                 ) -> tuple[int, int, list[ScheduleInputs], list[tuple]]:
    """Record what is new; return (events, visits, participants changed, audit changes)."""
    new_events, visits, changed, audited = [], 0, {}, []
    for row in rows:
        person = people[row.participant]
        rid = scheduling.record_id(study, person.site, person.subject_id)
        if row.arm is not None and person.arm is None:
            await repo.update_participant(person.id, arm=row.arm)
            person.arm, changed[person.id] = row.arm, person
            audited.append(("update", "participant", rid, {"arm": None}, {"arm": row.arm}))
        facts = person.events if row.is_event else person.actuals
        if row.event in facts:
            continue  # the same date (a different one was reported as a problem)
        facts[row.event] = row.day
        changed[person.id] = person
        if row.is_event:
            new_events.append((person.id, row.event, row.day, None))
            audited.append(("create", "participant_event", f"{rid}/{row.event}", None, {"date": row.day}))
        else:
            visits += 1
            audited.append(("update", "visit", f"{rid}/{row.event}", {"actual": None}, {"actual": row.day}))
    await repo.upsert_events(new_events)
    return len(new_events), visits, list(changed.values()), audited


def _by_subject(inputs: dict[int, ScheduleInputs]) -> dict[str, ScheduleInputs]:
    return {person.subject_id: person for person in inputs.values()}
