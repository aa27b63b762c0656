"""Imports of recorded events and visits: CSV `participant,event,date[,arm][,site]`, and SDTM SV/DS/DM.

`event` is an event name of the protocol or a visit code (an expanded repeat such as C3D1; a code
the protocol lacks is an unscheduled visit). The whole file is checked first and every bad line is
reported; a file with any problem imports nothing. Importing the same file again changes nothing.
Parsing is in `scheduling/events_csv.py`, shared with `trialcoord check`, which needs no database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import transaction
from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling import participants, protocols, schedules
from trialcoord.scheduling.events_csv import EventRow, number_unscheduled, parse_events_csv
from trialcoord.scheduling.rules.protocol import Protocol
from trialcoord.scheduling.sdtm import Mapping as SdtmMapping
from trialcoord.scheduling.sdtm import to_rows
from trialcoord.scheduling.sdtm.datasets import Dataset
from trialcoord.scheduling.sites import create_site
from trialcoord.scheduling.store import consents as consents_store
from trialcoord.scheduling.store import inputs as inputs_store
from trialcoord.scheduling.store import participants as participants_store
from trialcoord.scheduling.store import sites as sites_store
from trialcoord.scheduling.store import studies as studies_store
from trialcoord.scheduling.store.inputs import ScheduleInputs


@dataclass(frozen=True, slots=True)
class ImportResult:
    created_participants: int
    events_recorded: int
    visits_recorded: int
    unchanged: int
    created_sites: tuple[str, ...] = ()


async def import_events(
    study: str,
    csv_text: str,
    site: str | None = None,
    file: str = "<csv>",
    today: date | None = None,
    actor: str = SYSTEM,
    create_sites: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ImportResult:
    """Import a CSV file in one transaction, enrolling unknown participants at their row's `site` column, else
    at `site`; `create_sites`: add the sites the file names that the study lacks (a first load). `progress`
    hears where a long import is (rows read, participants, what it does next)."""

    async def parse(protocol):
        return parse_events_csv(csv_text, file, protocol)

    return await import_rows(study, parse, file, site, today, actor, create_sites, progress)


class _DryRun(Exception):
    """Raised at the end of a dry run so that its transaction rolls back with everything it did."""

    def __init__(self, result: ImportResult):
        self.result = result


async def import_rows(
    study: str,
    parse: Callable[[Protocol], Awaitable[tuple[list[EventRow], list[Problem]]]],
    file: str,
    site: str | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
    create_sites: bool = False,
    progress: Callable[[str], None] | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """The import of event rows however they were read (`parse` gets the study's current protocol version):
    checked against the study, then stored all or nothing (see `import_events`). `dry_run`: every check and
    every write, then rolled back (what it would do, nothing stored)."""
    try:
        return await _import_rows(study, parse, file, site, today, actor, create_sites, progress, dry_run)
    except _DryRun as done:
        return done.result


async def _import_rows(study, parse, file, site, today, actor, create_sites, progress, dry_run) -> ImportResult:
    today = today or date.today()
    say = progress or (lambda _: None)
    async with transaction(f"study {study}, import of {file}"):
        study_row = await protocols.require_study(study)
        protocol = await protocols.get_protocol(study)
        rows, problems = await parse(protocol)
        say(f"{len(rows):,} rows read, {len({r.participant for r in rows}):,} participants; checking them")
        await participants_store.lock_participants(study_row.id)
        people = _by_subject(await inputs_store.load_inputs(study_row.id))
        rows = number_unscheduled(rows, protocol, {s: p.actuals for s, p in people.items()})
        sites = {row["code"]: row for row in await sites_store.list_sites(study_row.id)}
        missing = _missing_sites(rows, sites, site, people)
        if site and site not in sites and not create_sites:
            problems.append(Problem(f"study {study} has no site {site}", file, field="site"))
            missing.pop(site, None)
        for code, (source, line, field) in list(missing.items()):
            if "/" in code:  # site codes name audit records
                problems.append(
                    Problem(f"site code '{code}' holds a '/', which codes may not", source or file, line, field=field)
                )
                missing.pop(code)
        if missing and not create_sites:
            problems += [
                Problem(
                    f"study {study} has no site {code}; add it (trialcoord site add) or import with --create-sites",
                    source or file,
                    line,
                    field=field,
                )
                for code, (source, line, field) in missing.items()
            ]
        problems += _conflicts(rows, people, file, site)
        problems += _consent_conflicts(
            rows, people, protocol.consent_event, file, await consents_store.first_consents(study_row.id)
        )
        problems += [
            Problem(
                f"participant {row.participant}: {row.event} on {row.day} is after today ({today})",
                row.source or file,
                row.line,
                field=row.variable or "date",
            )
            for row in rows
            if row.day > today
        ]
        if problems:
            raise InvalidInput(problems)
        say("checked; storing (all or nothing)")
        if missing:
            for code in missing:
                await create_site(study, code, code, actor=actor)
            sites = {row["code"]: row for row in await sites_store.list_sites(study_row.id)}
        enrolled = await _enrol_new(study, study_row.id, rows, people, sites, site)
        if enrolled:
            people = _by_subject(await inputs_store.load_inputs(study_row.id))
        events, visits, changed, audited = await _apply(study, rows, people)
        if changed:
            say(f"{events + visits:,} new facts stored; re-evaluating {len(changed):,} participants' schedules")
            await schedules.refresh_participants(study_row.id, inputs=changed, today=today)
        await audit_log.record_each(
            actor, len(enrolled) + len(audited), _audit_changes(study, enrolled, audited, f"imported from {file}")
        )
        created = len(enrolled)
        result = ImportResult(created, events, visits, len(rows) - events - visits, tuple(missing))
        if dry_run:
            raise _DryRun(result)
    return result


def _missing_sites(
    rows: list[EventRow], sites: dict[str, dict], default: str | None, people: dict[str, ScheduleInputs]
) -> dict[str, tuple[str | None, int, str]]:
    """The sites new participants of the file would be enrolled at that the study lacks: code -> (dataset,
    first line, field), naming where the site was given (an SDTM DM row's SITEID)."""
    missing: dict[str, tuple[str | None, int, str]] = {}
    named = {row.participant for row in rows if row.site}
    for row in rows:
        if row.participant in people:
            continue  # an enrolled participant's site is checked against its own (`_conflicts`)
        code = row.site or (default if row.participant not in named else None)
        if code and code not in sites:
            missing.setdefault(code, _site_where(row) if row.site else (row.source, row.line, "site"))
    return missing


def _site_where(row: EventRow, variable: str = "SITEID", column: str = "site") -> tuple[str | None, int, str]:
    """Where a row's site (or arm) was given: its DM row's variable for SDTM, else the row's own column."""
    if row.site_from is not None:
        return row.site_from[0], row.site_from[1], variable
    return row.source, row.line, column


def _conflicts(rows: list[EventRow], people: dict[str, ScheduleInputs], file: str, site: str | None) -> list[Problem]:
    """What the file contradicts in the database; changing recorded dates needs a reason, so not here."""
    problems = []
    named = {row.participant for row in rows if row.site}  # a new participant's site may be on any of its rows
    for row in rows:
        person = people.get(row.participant)
        if person is None and "/" in row.participant:
            problems.append(
                Problem(
                    f"subject ID '{row.participant}' holds a '/', which codes may not",
                    row.source or file,
                    row.line,
                    field="participant",
                )
            )
            continue
        if person is None:
            if site is None and row.participant not in named:
                problems.append(
                    Problem(
                        f"participant {row.participant} is not enrolled; give a site (a site column"
                        " or --site) to enrol new participants",
                        row.source or file,
                        row.line,
                        field="participant",
                    )
                )
            continue
        if row.site is not None and row.site != person.site:
            source, line, field = _site_where(row)
            problems.append(
                Problem(
                    f"participant {row.participant} is enrolled at site {person.site}, not at site {row.site}",
                    source or file,
                    line,
                    field=field,
                )
            )
        if row.arm is not None and person.arm not in (None, row.arm):
            source, line, field = _site_where(row, "ARMCD", "arm")
            problems.append(
                Problem(
                    f"participant {row.participant} is assigned to arm {person.arm}, not {row.arm}",
                    source or file,
                    line,
                    field=field,
                )
            )
        recorded = (person.events if row.is_event else person.actuals).get(row.event)
        if recorded not in (None, row.day):
            problems.append(
                Problem(
                    f"participant {row.participant}: {row.event} is already recorded on {recorded};"
                    " change a recorded date in the application, with a reason",
                    row.source or file,
                    row.line,
                    field=row.variable or "date",
                )
            )
    return problems


def _consent_conflicts(
    rows: list[EventRow], people: dict[str, ScheduleInputs], event: str | None, file: str, first: dict[int, str]
) -> list[Problem]:
    """The consent event is the date of first consent: never later than a consent already on record. A consent
    event imported without its version is a consent of unknown version (a data issue the site resolves)."""
    problems = []
    for row in rows:
        person = people.get(row.participant)
        if row.event != event or person is None or person.id not in first:
            continue
        if row.day > date.fromisoformat(first[person.id]):
            problems.append(
                Problem(
                    f"participant {row.participant}: {event} on {row.day} is after the first consent"
                    f" on record ({first[person.id]}); the {event} event is the date of first consent",
                    row.source or file,
                    row.line,
                    field=row.variable or "date",
                )
            )
    return problems


async def _enrol_new(
    study: str,
    study_id: int,
    rows: list[EventRow],
    people: dict[str, ScheduleInputs],
    sites: dict[str, dict],
    default: str | None,
) -> dict[str, list]:
    """Enrol participants the database lacks, on the earliest date the file gives for each, at the site its
    rows name (else `default`): subject -> [date, arm, site code]."""
    first: dict[str, list] = {}
    for row in rows:
        if row.participant not in people:
            entry = first.setdefault(row.participant, [row.day, row.arm, row.site])
            entry[0], entry[1], entry[2] = min(entry[0], row.day), entry[1] or row.arm, entry[2] or row.site
    for entry in first.values():
        entry[2] = entry[2] or default  # the file's site for the participant, from any of its rows, else --site
    versions = await studies_store.list_versions(study_id)
    await participants_store.insert_participants(
        study_id,
        [
            (subject, sites[code]["id"], arm, participants.enrolment_version(study, versions, None, day).id, day)
            for subject, (day, arm, code) in first.items()
        ],
    )
    return first


async def _apply(
    study: str, rows: list[EventRow], people: dict[str, ScheduleInputs]
) -> tuple[int, int, list[ScheduleInputs], list[tuple[int, ScheduleInputs, str, date | None]]]:
    """Record what is new; return (events, visits, participants changed, audit changes)."""
    new_events: list[tuple[int, str, date, None]] = []
    changed: dict[int, ScheduleInputs] = {}
    audited: list[tuple[int, ScheduleInputs, str, date | None]] = []
    visits = 0
    for row in rows:
        person = people[row.participant]
        if row.arm is not None and person.arm is None:
            await participants_store.update_participant(person.id, arm=row.arm)
            person.arm, changed[person.id] = row.arm, person
            audited.append((_ARM, person, row.arm, None))
        facts = person.events if row.is_event else person.actuals
        if row.event in facts:
            continue  # the same date (a different one was reported as a problem)
        facts[row.event] = row.day
        changed[person.id] = person
        if row.is_event:
            new_events.append((person.id, row.event, row.day, None))
            audited.append((_EVENT, person, row.event, row.day))
        else:
            visits += 1
            audited.append((_VISIT, person, row.event, row.day))
    await inputs_store.upsert_events(new_events)
    return len(new_events), visits, list(changed.values()), audited


_ARM, _EVENT, _VISIT = range(3)  # what an imported fact changed; its audit entry is made only when written


def _audit_changes(study: str, enrolled: dict[str, list], audited: list[tuple], reason: str) -> Iterator[Change]:
    """The import's audit changes, made one at a time as the trail consumes them (a million facts are held as
    small tuples, not as a million changes with their dicts)."""
    for subject, (day, arm, code) in enrolled.items():
        yield Change(
            "create",
            "participant",
            participants.record_id(study, code, subject),
            None,
            {"site": code, "arm": arm, "enrolled_on": day},
            reason,
        )
    for what, person, name, day in audited:
        rid = participants.record_id(study, person.site, person.subject_id)
        if what == _ARM:
            yield Change("update", "participant", rid, {"arm": None}, {"arm": name}, reason)
        elif what == _EVENT:
            yield Change("create", "participant_event", f"{rid}/{name}", None, {"date": day}, reason)
        else:
            yield Change("update", "visit", f"{rid}/{name}", {"actual": None}, {"actual": day}, reason)


def _by_subject(inputs: dict[int, ScheduleInputs]) -> dict[str, ScheduleInputs]:
    return {person.subject_id: person for person in inputs.values()}


# SDTM ------------------------------------------------------------------------------------------


async def import_sdtm(
    study: str,
    sv: Dataset,
    ds: Dataset | None = None,
    dm: Dataset | None = None,
    mapping: dict | None = None,
    site: str | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
    create_sites: bool = False,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    used: SdtmMapping | None = None,
) -> tuple[ImportResult, SdtmMapping]:
    """SDTM SV (visits), DS (disposition) and DM (sites, arms) in, as an event import (one transaction, every
    problem naming dataset, row and variable). `dry_run`: every check and what it would store, then rolled
    back. `used` (filled even when the import is refused): the mapping, label by label."""
    used = used if used is not None else SdtmMapping()

    async def parse(protocol):
        rows, problems, found = to_rows(protocol, sv, ds, dm, mapping or {})
        used.visits, used.ds, used.dm, used.unscheduled = found.visits, found.ds, found.dm, found.unscheduled
        used.arms, used.unused = found.arms, found.unused
        return rows, problems

    names = ", ".join(d.name for d in (sv, ds, dm) if d is not None)
    result = await import_rows(study, parse, names, site, today, actor, create_sites, progress, dry_run=dry_run)
    return result, used
