"""Deviation records: detection from the stored schedules and the consent checks, manual records, window
exceptions, and the listing a coordinator or monitor works from (the review itself: `deviation_review`).

Detection reads only the candidate visits (out of window, missed, or after an ending event) and the records
already kept, runs the pure rules per participant and reconciles (`rules/deviations.py`, `reconcile`). A run
is incremental: it looks only at participants the audit trail shows changed since the previous run, and at
those with a window closed or a visit done between the two runs' dates; a first run or a study-wide change
(a protocol or consent version, a site) makes it a full run. Detection moves forward: a date before the
last run's is refused. Every created, updated, resolved or reopened record is audited in the run's
transaction.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Collection
from datetime import date
from typing import Any

from trialcoord.deviations import store
from trialcoord.deviations.rules.deviation_review import (
    OPEN_STATES,
    State,
    classification_problems,
    default_subcategory,
)
from trialcoord.deviations.rules.deviations import (
    Classification,
    ClassificationDefaults,
    Finding,
    Kept,
    Rule,
    WindowException,
    reconcile,
)
from trialcoord.deviations.rules.deviations import (
    detect as find,
)
from trialcoord.documents import consent
from trialcoord.documents.rules.consent import ConsentDeviationCandidate, ConsentRule
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import InvalidInput, NotFound, Problem, invalid
from trialcoord.kernel.rules.audit import utc_instant
from trialcoord.scheduling import lookups, participants, schedules
from trialcoord.scheduling.protocols import list_studies, protocol_of, require_study
from trialcoord.scheduling.rules.protocol import Protocol

SCREENING = re.compile(r"screen", re.IGNORECASE)  # a visit named or coded "Screening" (the contract has no epochs)
SUBJECT_RECORDS = frozenset({"participant", "participant_event", "visit", "participant_consent", "window_exception"})
STUDY_WIDE = frozenset({"site", "protocol_version", "consent_version"})
AUTOMATIC, MANUAL = "automatic", "manual"
STATES = tuple(State)
_RULE_TEXT = {
    Rule.VISIT_EARLY: "visit before its window",
    Rule.VISIT_LATE: "visit after its window",
    Rule.VISIT_MISSED: "visit missed",
    Rule.SCREENING_OUT_OF_WINDOW: "screening visit outside its window",
    Rule.VISIT_AFTER_ENDING_EVENT: "visit after the schedule ended",
    Rule.VISIT_BEFORE_CONSENT: "visit before informed consent",
    Rule.VISIT_UNDER_SUPERSEDED_CONSENT: "visit under a superseded consent version",
}


def screening_codes(protocol: Protocol) -> set[str]:
    return {v.code for v in protocol.visits if SCREENING.search(v.name) or SCREENING.search(v.code)}


def _exception(row: dict) -> WindowException:
    return WindowException(
        row["subject_id"],
        row["visit"],
        row["earlier_days"],
        row["later_days"],
        _day(row["approved_on"]),
        _day(row["recorded_at"]),
    )


def now() -> str:
    return utc_instant(audit_log.clock())


def record_id(study: str, site: str, subject_id: str | None, deviation_id: int) -> str:
    """How the audit trail names a deviation: under its participant (`STUDY/SITE/SUBJECT/deviation/ID`)."""
    return "/".join((study, site, subject_id or "-", "deviation", str(deviation_id)))


# Detection -------------------------------------------------------------------------------------


async def detect(
    study: str, as_of: date | None = None, actor: str = SYSTEM, full: bool = False, today: date | None = None
) -> dict:
    """Create, update, resolve and reopen the study's automatic deviation records as of `as_of` (default and
    latest: `today`). Detection moves forward: a date before the last run's is refused, since a visit done
    since would read as corrected data."""
    today = today or date.today()
    as_of = as_of or today
    if as_of > today:
        raise invalid(
            f"{as_of} is still to come: detection runs as of today ({today}) or an earlier day", field="as_of"
        )
    at = now()
    async with transaction(f"deviation detection of study {study}"):
        study_id = (await require_study(study))["id"]
        await store.lock_study(study_id)
        size = await store.audit_size()
        last = await store.last_run(study_id)
        if last is not None and as_of.isoformat() < last["as_of"]:
            raise invalid(
                f"study {study} was last checked as of {last['as_of']}: detection runs as of that day or a later one",
                field="as_of",
            )
        scope, changes = (None, []) if full else await _scope(study, study_id, last, as_of)
        counts = dict(created=0, updated=0, resolved=0, reopened=0)
        if scope is None or scope:
            counts = await _detect(study, study_id, as_of, scope, changes, at, actor)
        label = "full" if scope is None else f"{len(scope)} participant{'' if len(scope) == 1 else 's'}"
        await store.insert_run(
            study_id,
            as_of.isoformat(),
            size,
            label,
            (counts["created"], counts["updated"] + counts["reopened"], counts["resolved"]),
            at,
        )
    return {"study": study, "as_of": as_of, "scope": label, **counts}


def audit_position() -> Awaitable[int]:
    """How far the audit trail goes now: `redetect` names the changes made past it."""
    return store.audit_size()


async def redetect(
    study: str, subjects: Collection[str], since: int, today: date | None = None, actor: str = SYSTEM
) -> dict:
    """Detection for these participants only, as of today, right after a change to their schedules (a protocol
    version change): records it makes wrong are resolved naming the change's audit entry (past `since`), new
    ones are created. It records no run, so the study's next run still looks at these participants."""
    today = today or date.today()
    counts = dict(created=0, updated=0, resolved=0, reopened=0)
    async with transaction(f"deviation detection of study {study}"):
        study_id = (await require_study(study))["id"]
        await store.lock_study(study_id)
        scope = set((await store.participant_ids(study_id, subjects)).values())
        if scope:
            changes = await store.changes_since(since, f"{study}/")
            counts = await _detect(study, study_id, today, scope, changes, now(), actor)
    return counts


async def refresh_schedules(
    study: str | None = None, as_of: date | None = None, today: date | None = None
) -> dict[str, int]:
    """`trialcoord schedules refresh`: each study's stale stored schedules re-evaluated (`schedules.refresh_study`)
    and detection run for those participants in the same transaction, so the missed occurrences a refresh
    stores are flagged at once and incremental runs need not look for unaudited re-evaluations. Returns how
    many participants, by study."""
    today = today or date.today()
    as_of = as_of or today
    refreshed = {}
    for code in [study] if study else [row["code"] for row in await list_studies()]:
        async with transaction(f"study {code}, schedule refresh"):
            last = await store.last_run((await require_study(code))["id"])
            if last is not None and as_of < date.fromisoformat(str(last["as_of"])):
                # detection moves forward only: as of an earlier day it would resolve records of visits since
                raise invalid(
                    f"study {code}: deviation detection already ran as of {last['as_of']}; refresh"
                    f" schedules as of that day or later, not {as_of}",
                    field="as_of",
                )
            since = await audit_position()
            subjects = await schedules.refresh_study(code, as_of, today)
            if subjects:  # as of the day they were evaluated as of
                await redetect(code, subjects, since, today=as_of)
        refreshed[code] = len(subjects)
    return refreshed


async def _scope(study: str, study_id: int, last: dict | None, as_of: date) -> tuple[set[int] | None, list]:
    """The participants an incremental run must look at, or None for all of them."""
    if last is None:
        return None, []
    changes = await store.changes_since(last["audit_size"], f"{study}/")
    subjects = set()
    for _, record_type, rid in changes:
        if record_type in STUDY_WIDE:
            return None, changes
        if record_type in SUBJECT_RECORDS:
            subjects.add(rid.split("/")[2])
    scope = set((await store.participant_ids(study_id, subjects)).values())
    return scope | await store.due_since(study_id, date.fromisoformat(last["as_of"]), as_of), changes


async def _detect(
    study: str, study_id: int, as_of: date, scope: set[int] | None, changes: list, at: str, actor: str
) -> dict:
    people = {row["id"]: row for row in await store.participants(study_id, scope)}
    protocols = {
        row["id"]: await protocol_of(row["id"], row["sha256"]) for row in await lookups.list_versions(study_id)
    }
    # Only an ending event after which nothing is collected (consent withdrawn) makes a later visit a deviation.
    ending = sorted({name for p in protocols.values() for name in p.stopping_events})
    screening = {vid: screening_codes(p) for vid, p in protocols.items()}
    condition = f"({store.candidates(ending)}){store.among('x.participant', scope)}"
    rows_of: dict[int, list] = defaultdict(list)
    for row in await lookups.worklist_rows(study_id, condition, *store.candidate_args(as_of, ending)):
        rows_of[row.participant].append(schedules.restated(row, as_of))
    # a participant's collection stopped on the first event that stops it in a version it has followed
    stops = {vid: p.stopping_events for vid, p in protocols.items()}
    ended = {
        pid: min((day for name, day in days.items() if any(name in stops[v] for v in followed)), default=None)
        for pid, (followed, days) in (await store.ending_dates(study_id, ending, scope)).items()
    }
    exceptions: dict[int, list[WindowException]] = defaultdict(list)
    for e in await store.exceptions(study_id, scope):
        exceptions[e["participant"]].append(_exception(e))
    consent_of = await _consent_candidates(study, people, scope, as_of)
    occurrences = await store.occurrences(consent_of.keys())
    found: list[Finding] = []
    defaults: dict[str, ClassificationDefaults] = {}
    for pid in rows_of.keys() | ended.keys() | consent_of.keys():
        person = people.get(pid)
        if person is None:
            continue
        version = person["protocol_version"]
        for finding in find(
            person["subject_id"],
            rows_of.get(pid, ()),
            screening=screening.get(version, ()),
            collection_stopped_on=ended.get(pid),
            consent=consent_of.get(pid, ()),
            exceptions=exceptions.get(pid, ()),
            occurrences=occurrences.get(pid),
        ):
            found.append(
                Finding(
                    finding.subject_id,
                    finding.visit,
                    finding.occurrence,
                    finding.rule,  # as stored,
                    finding.occurred_on,
                    finding.days_outside,
                    describe(finding),
                )
            )  # to compare
            defaults[finding.subject_id] = protocols[version].deviations
    kept = {}
    for raw in await store.kept(study_id, scope):
        person = people[raw[1]]
        kept[(person["subject_id"], raw[2], raw[3], raw[4])] = raw, person
    change = reconcile([_kept(raw, person) for raw, person in kept.values()], found)
    kept = {key: _named(raw, person) for key, (raw, person) in kept.items()}  # lazily: only changed ones are read
    by_subject = {row["subject_id"]: row for row in people.values()}
    return await _write(study, study_id, change, kept, by_subject, defaults, changes, at, actor)


async def _write(study, study_id, change, kept, people, defaults, changes, at, actor) -> dict:
    """Store a run's changes. Each change to a kept record is conditional on its row_version as read: a review
    step committed meanwhile wins, and the next run reconciles again (never a step silently undone)."""
    audit, counts = [], dict(created=len(change.created), updated=0, resolved=0, reopened=0)
    inserts = []
    for f in change.created:
        person = people[f.subject_id]
        inserts.append(
            (
                study_id,
                person["id"],
                person["site_id"],
                f.visit,
                f.occurrence,
                str(f.rule),
                AUTOMATIC,
                str(f.category),
                default_subcategory(f.rule),
                str(defaults[f.subject_id].classify(f)),
                State.DETECTED.value,
                _iso(f.occurred_on),
                f.days_outside,
                f.detail,
                at,
            )
        )
    await store.insert_deviations(inserts)
    if inserts:
        for row in await store.detected_at(study_id, at, {people[f.subject_id]["id"] for f in change.created}):
            audit.append(
                Change(
                    "create",
                    "deviation",
                    record_id(study, row["site"], row["subject_id"], row["id"]),
                    None,
                    _audited(row),
                )
            )
    for record in change.updated:
        row = kept[record.finding.key]
        if row["state"] == State.CLOSED:  # closed and signed: its facts stay as signed; the trail has the change
            continue
        facts = _facts(record.finding)
        # A classification signed for other facts no longer holds: the monitor looks again.
        state = State.REOPENED.value if row["state"] == State.CLASSIFIED else row["state"]
        if await store.update(row["id"], row["row_version"], **facts, state=state, updated_at=at):
            counts["updated"] += 1
            audit.append(
                Change(
                    "update",
                    "deviation",
                    _rid(study, row),
                    {**_facts_of(row), "state": row["state"]},
                    {**facts, "state": state},
                    "detection: the facts changed",
                )
            )
    for record in change.resolved:
        row = kept[record.finding.key]
        if row["state"] == State.CLOSED:  # a closed record keeps its review; the trail shows the correction
            continue
        cause = await _cause(study, row, changes)
        if await store.update(
            row["id"],
            row["row_version"],
            state=State.RESOLVED_BY_CORRECTION.value,
            resolved_by_entry=cause,
            updated_at=at,
        ):
            counts["resolved"] += 1
            audit.append(
                Change(
                    "resolve",
                    "deviation",
                    _rid(study, row),
                    {"state": row["state"]},
                    {"state": State.RESOLVED_BY_CORRECTION.value, "caused_by_entry": cause},
                    "resolved by data correction: the fact behind it no longer holds",
                )
            )
    for record in change.reopened:
        row = kept[record.finding.key]
        facts = _facts(record.finding)
        if await store.update(
            row["id"], row["row_version"], **facts, state=State.DETECTED.value, resolved_by_entry=None, updated_at=at
        ):
            counts["reopened"] += 1
            audit.append(
                Change(
                    "reopen",
                    "deviation",
                    _rid(study, row),
                    {**_facts_of(row), "state": row["state"]},
                    {**facts, "state": State.DETECTED.value},
                    "detection: the fact holds again",
                )
            )
    await audit_log.record(actor, *audit)
    return counts


def _facts(finding: Finding) -> dict:
    return {
        "occurred_on": _iso(finding.occurred_on),
        "days_outside": finding.days_outside,
        "description": finding.detail,
    }


def _facts_of(row: dict) -> dict:
    return {"occurred_on": row["occurred_on"], "days_outside": row["days_outside"], "description": row["description"]}


async def _consent_candidates(
    study: str, people: dict[int, dict], scope: set[int] | None, as_of: date
) -> dict[int, list[ConsentDeviationCandidate]]:
    ids = {row["subject_id"]: pid for pid, row in people.items()}
    found: dict[int, list] = defaultdict(list)
    for c in await consent.candidates(study, scope):
        if c["subject_id"] in ids and c["visit_on"] <= as_of:
            found[ids[c["subject_id"]]].append(
                ConsentDeviationCandidate(
                    c["subject_id"],
                    c["visit"],
                    c["visit_on"],
                    ConsentRule(c["rule"]),
                    c["consented_on"],
                    c["required_since"],
                    c["signed_version"],
                    c["required_version"],
                )
            )
    return found


async def _cause(study: str, row: dict, changes: list) -> int | None:
    """The audit entry that made the fact go away: the latest change of that visit since the previous run,
    else the latest change of that participant (an event, a consent)."""
    visit_rid = participants.record_id(study, row["site"], row["subject_id"], row["visit"] or "")
    prefix = participants.record_id(study, row["site"], row["subject_id"])
    mine = [
        (seq, rid)
        for seq, record_type, rid in changes
        if record_type in SUBJECT_RECORDS and (rid == prefix or rid.startswith(prefix + "/"))
    ]
    if not changes:
        return await store.latest_entry(visit_rid, prefix, SUBJECT_RECORDS)
    same_visit = [seq for seq, rid in mine if rid == visit_rid]
    return max(same_visit or [seq for seq, _ in mine], default=None)


def describe(finding: Finding) -> str:
    # Compared with the stored description on every run: a wording that changed with the date, or with this
    # code, would mark records updated and void their signed classifications.
    text = f"{finding.visit}: {_RULE_TEXT[finding.rule]}"
    if finding.detail:
        return f"{text} ({finding.detail})"
    if finding.rule is Rule.VISIT_MISSED and finding.occurred_on:
        return f"{text} (its window closed on {finding.occurred_on})"
    return text


_RULES = {str(rule): rule for rule in Rule}  # a dict lookup: Rule(text) costs more, once per kept record


def _kept(raw, person: dict) -> Kept:
    """A stored record (`store.KEPT` columns) as the rules' finding, its description standing for the detail."""
    _, _, visit, occurrence, rule, state, occurred_on, days_outside, description, _, _ = raw
    return Kept(
        Finding(person["subject_id"], visit, occurrence, _RULES[rule], _day(occurred_on), days_outside, description),
        state,
    )


class _named:
    """A kept record by column name, with its participant's subject ID and site (for audit names)."""

    __slots__ = ("raw", "person")

    def __init__(self, raw, person: dict):
        self.raw, self.person = raw, person

    def __getitem__(self, name: str):
        if name in ("subject_id", "site"):
            return self.person[name]
        return self.raw[_KEPT_INDEX[name]]


_KEPT_INDEX = {name: i for i, name in enumerate(store.KEPT)}


# Manual deviations and window exceptions -------------------------------------------------------


async def record_manual(
    study: str,
    site: str,
    category: str,
    description: str,
    occurred_on: date,
    actor: str,
    subject_id: str | None = None,
    visit: str | None = None,
    subcategory: str | None = None,
    classification: str = Classification.NON_IMPORTANT,
    today: date | None = None,
) -> dict:
    """A deviation a coordinator or monitor found (any category), at a site or of one of its participants."""
    problems = classification_problems(classification, category, subcategory)
    if not description.strip():
        problems.append(Problem("a deviation needs a description of what happened", field="description"))
    if occurred_on > (today or date.today()):
        problems.append(
            Problem(f"{occurred_on} is still to come: record a deviation once it happened", field="occurred_on")
        )
    if problems:
        raise InvalidInput(problems)
    at = now()
    async with transaction(f"a deviation at site {site} of study {study}"):
        study_id = (await require_study(study))["id"]
        site_row = await lookups.find_site(study_id, site)
        if site_row is None:
            raise NotFound(f"study {study} has no site {site}")
        participant = None
        if subject_id:
            person = await lookups.find_subject(study, subject_id)
            if person is None or person["site"] != site:
                raise NotFound(f"site {site} of study {study} has no participant {subject_id}")
            participant = person["id"]
            if visit and await lookups.find_visit(participant, visit) is None:
                raise NotFound(f"participant {subject_id} has no visit {visit}")
        deviation_id = await store.insert_deviation(
            (
                study_id,
                participant,
                site_row["id"],
                visit or None,
                None,
                None,
                MANUAL,
                category,
                subcategory,
                classification,
                State.DETECTED.value,
                occurred_on.isoformat(),
                0,
                description.strip(),
                at,
            )
        )
        row = await store.find(study_id, deviation_id)
        await audit_log.record(actor, Change("create", "deviation", _rid(study, row), None, _audited(row)))
    return as_dict(row)


async def approve_exception(
    study: str,
    subject_id: str,
    visit: str,
    earlier_days: int,
    later_days: int,
    approved_on: date,
    reason: str,
    actor: str,
    today: date | None = None,
) -> dict:
    """An investigator-approved window extension of one visit. It prevents the early or late deviation of that
    visit only if approved and recorded on or before the day it took place (later, it explains but does not
    prevent)."""
    problems = []
    if earlier_days < 0 or later_days < 0 or earlier_days + later_days == 0:
        problems.append(
            Problem("an extension adds days before or after the window (non-negative, not both 0)", field="later_days")
        )
    if not reason.strip():
        problems.append(Problem("an approved exception needs the investigator's reason", field="reason"))
    if approved_on > (today or date.today()):
        problems.append(
            Problem(f"{approved_on} is still to come: an approval is recorded once given", field="approved_on")
        )
    if problems:
        raise InvalidInput(problems)
    at = now()
    async with transaction(f"study {study}, participant {subject_id}"):
        person = await lookups.find_subject(study, subject_id)
        if person is None:
            raise NotFound(f"study {study} has no participant {subject_id}")
        if await lookups.find_visit(person["id"], visit) is None:
            raise NotFound(f"participant {subject_id} has no visit {visit}")
        await store.insert_exception(
            person["id"], visit, earlier_days, later_days, approved_on.isoformat(), actor, reason.strip(), at
        )
        record = {
            "visit": visit,
            "earlier_days": earlier_days,
            "later_days": later_days,
            "approved_on": approved_on,
            "approved_by": actor,
        }
        await audit_log.record(
            actor,
            Change(
                "create",
                "window_exception",
                participants.record_id(study, person["site"], subject_id, visit, "exception"),
                None,
                record,
                reason.strip(),
            ),
        )
    return {"subject_id": subject_id, "site": person["site"], **record, "reason": reason.strip()}


async def exceptions_of(study: str) -> list[dict]:
    async with read():
        study_id = (await require_study(study))["id"]
        return await store.exceptions(study_id, None)


async def window_exceptions(study: str) -> dict[str, list[WindowException]]:
    """The study's approved window exceptions, by subject ID, as the rules take them."""
    found: dict[str, list[WindowException]] = defaultdict(list)
    for row in await exceptions_of(study):
        found[row["subject_id"]].append(_exception(row))
    return found


# Reading ---------------------------------------------------------------------------------------


async def listing(
    study: str,
    states: Collection[str] | None = None,
    sites: Collection[str] | None = None,
    category: str | None = None,
    min_age_days: int | None = None,
    as_of: date | None = None,
    limit: int | None = None,
    offset: int = 0,
    participant: str | None = None,
) -> tuple[list[dict], int]:
    """The study's deviations, oldest first, filtered; and how many match (for pagination). `sites`: the
    sites the reader may see (None: all)."""
    unknown = [s for s in states or () if s not in STATES]
    if unknown:
        raise invalid(f"'{unknown[0]}' is not a deviation state; choose among {', '.join(STATES)}", field="state")
    where, args = [], []
    if states:
        where.append(f"d.state IN ({', '.join('{}' for _ in states)})")
        args.extend(states)
    # Every filter is on the deviation row itself, so the page is picked from an index before any join.
    if sites is not None:
        where.append(
            f"d.site IN (SELECT x.id FROM sites x WHERE x.code IN ({', '.join('{}' for _ in sites) or 'NULL'}))"
        )
        args.extend(sites)
    if category:
        where.append("d.category = {}")
        args.append(category)
    if participant:
        where.append("d.participant IN (SELECT x.id FROM participants x WHERE x.subject_id = {})")
        args.append(participant)
    if min_age_days is not None:  # detected at least that many days before `as_of`
        cutoff = date.fromordinal(max(1, (as_of or date.today()).toordinal() - min_age_days))
        where.append("d.detected_at < {}")
        args.append(date.fromordinal(cutoff.toordinal() + 1).isoformat())
    clause = "".join(f" AND {w}" for w in where)
    async with read():
        study_id = (await require_study(study))["id"]
        total = await store.count(study_id, clause, args)
        rows = await store.listing(study_id, clause, args, "d.detected_at, d.id", limit, offset)
    return [as_dict(row) for row in rows], total


async def get(study: str, deviation_id: int) -> dict:
    async with read():
        study_id = (await require_study(study))["id"]
        row = await store.find(study_id, deviation_id)
        if row is None:
            raise NotFound(f"study {study} has no deviation {deviation_id}")
        steps = await store.steps(deviation_id)
        signed = await store.signatures(deviation_id)
    return {**as_dict(row), "steps": steps, "signatures": signed}


def as_dict(row: dict) -> dict:
    return {
        "id": row["id"],
        "participant": row["subject_id"],
        "site": row["site"],
        "visit": row["visit"],
        "occurrence": row["occurrence"],
        "rule": row["rule"],
        "source": row["source"],
        "category": row["category"],
        "subcategory": row["subcategory"],
        "classification": row["classification"],
        "state": row["state"],
        "days_outside": row["days_outside"],
        "occurred_on": row["occurred_on"],
        "description": row["description"],
        "site_reason": row["site_reason"],
        "corrective_action": row["corrective_action"],
        "capa": row["capa"],
        "detected_at": row["detected_at"],
        "updated_at": row["updated_at"],
        "closed_at": row["closed_at"],
        "resolved_by_entry": row["resolved_by_entry"],
        "row_version": row["row_version"],
        "dvcat": row["category"].upper(),
        "dvdecod": row["subcategory"],
        "open": row["state"] in OPEN_STATES,
    }


def _rid(study: str, row: dict) -> str:
    return record_id(study, row["site"], row["subject_id"], row["id"])


def _audited(row: dict) -> dict:
    return {
        name: row[name]
        for name in (
            "visit",
            "occurrence",
            "rule",
            "source",
            "category",
            "subcategory",
            "classification",
            "state",
            "occurred_on",
            "days_outside",
            "description",
        )
    }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _day(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def age_days(row: dict, as_of: date) -> int:
    return (as_of - date.fromisoformat(row["detected_at"][:10])).days
