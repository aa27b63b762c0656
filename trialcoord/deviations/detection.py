"""Deviation detection from the stored schedules and the consent checks (manual records and window exceptions:
`manual`; the queue: `queue`; the review itself: `deviation_review`).

Detection reads only the candidate visits (out of window, missed, or after an ending event) and the records
already kept, runs the pure rules per participant and reconciles (`rules/deviations.py`, `reconcile`). A run
is incremental: it looks only at participants the audit trail shows changed since the previous run, and at
those with a window closed or a visit done between the two runs' dates; a first run or a study-wide change
(a protocol or consent version, a site) makes it a full run. Detection moves forward: a date before the
last run's is refused. Every created, updated, resolved or reopened record is audited in the run's
transaction (`reconciliation`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from trialcoord.deviations import detection_store, store, window_exceptions_store
from trialcoord.deviations.reconciliation import SUBJECT_RECORDS, DetectionCounts, write
from trialcoord.deviations.records import as_exception, day_of, now
from trialcoord.deviations.rules.deviations import (
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
from trialcoord.documents import consent_checks
from trialcoord.documents.rules.consent import ConsentDeviationCandidate, ConsentRule
from trialcoord.kernel.audit_log import SYSTEM
from trialcoord.kernel.database.engine import transaction
from trialcoord.kernel.problems import invalid
from trialcoord.scheduling import lookups, protocols, schedules
from trialcoord.scheduling.protocols import protocol_of
from trialcoord.scheduling.rules.protocol import Protocol

SCREENING = re.compile(r"screen", re.IGNORECASE)  # a visit named or coded "Screening" (the contract has no epochs)
STUDY_WIDE = frozenset({"site", "protocol_version", "consent_version"})
_RULE_TEXT = {
    Rule.VISIT_EARLY: "visit before its window",
    Rule.VISIT_LATE: "visit after its window",
    Rule.VISIT_MISSED: "visit missed",
    Rule.SCREENING_OUT_OF_WINDOW: "screening visit outside its window",
    Rule.VISIT_AFTER_ENDING_EVENT: "visit after the schedule ended",
    Rule.VISIT_BEFORE_CONSENT: "visit before informed consent",
    Rule.VISIT_UNDER_SUPERSEDED_CONSENT: "visit under a superseded consent version",
}


@dataclass(frozen=True, slots=True)
class DetectionRun:
    """A detection run: its study, date and scope ("full", or how many participants), and what it changed."""

    study: str
    as_of: date
    scope: str
    created: int
    updated: int
    resolved: int
    reopened: int


def screening_codes(protocol: Protocol) -> set[str]:
    return {v.code for v in protocol.visits if SCREENING.search(v.name) or SCREENING.search(v.code)}


# Detection -------------------------------------------------------------------------------------


async def detect(
    study: str, as_of: date | None = None, actor: str = SYSTEM, full: bool = False, today: date | None = None
) -> DetectionRun:
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
        study_id = (await protocols.require_study(study)).id
        await detection_store.lock_study(study_id)
        size = await detection_store.audit_size()
        last = await detection_store.last_run(study_id)
        if last is not None and as_of.isoformat() < last["as_of"]:
            raise invalid(
                f"study {study} was last checked as of {last['as_of']}: detection runs as of that day or a later one",
                field="as_of",
            )
        scope, changes = (None, []) if full else await _scope(study, study_id, last, as_of)
        counts = DetectionCounts()
        if scope is None or scope:
            counts = await _detect(study, study_id, as_of, scope, changes, at, actor)
        label = "full" if scope is None else f"{len(scope)} participant{'' if len(scope) == 1 else 's'}"
        await detection_store.insert_run(
            study_id,
            as_of.isoformat(),
            size,
            label,
            (counts.created, counts.updated + counts.reopened, counts.resolved),
            at,
        )
    return DetectionRun(study, as_of, label, counts.created, counts.updated, counts.resolved, counts.reopened)


def audit_position() -> Awaitable[int]:
    """How far the audit trail goes now: `redetect` names the changes made past it."""
    return detection_store.audit_size()


async def redetect(
    study: str, subjects: Collection[str], since: int, today: date | None = None, actor: str = SYSTEM
) -> DetectionCounts:
    """Detection for these participants only, as of today, right after a change to their schedules (a protocol
    version change): records it makes wrong are resolved naming the change's audit entry (past `since`), new
    ones are created. It records no run, so the study's next run still looks at these participants."""
    today = today or date.today()
    counts = DetectionCounts()
    async with transaction(f"deviation detection of study {study}"):
        study_id = (await protocols.require_study(study)).id
        await detection_store.lock_study(study_id)
        scope = set((await detection_store.participant_ids(study_id, subjects)).values())
        if scope:
            changes = await detection_store.changes_since(since, f"{study}/")
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
    refreshed: dict[str, int] = {}
    for code in [study] if study else [row.code for row in await protocols.list_studies()]:
        async with transaction(f"study {code}, schedule refresh"):
            last = await detection_store.last_run((await protocols.require_study(code)).id)
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


async def _scope(
    study: str, study_id: int, last: dict[str, Any] | None, as_of: date
) -> tuple[set[int] | None, list[tuple[int, str, str]]]:
    """The participants an incremental run must look at, or None for all of them; and the audit entries since
    the previous run."""
    if last is None:
        return None, []
    changes = await detection_store.changes_since(last["audit_size"], f"{study}/")
    subjects: set[str] = set()
    for _, record_type, rid in changes:
        if record_type in STUDY_WIDE:
            return None, changes
        if record_type in SUBJECT_RECORDS:
            subjects.add(rid.split("/")[2])
    scope = set((await detection_store.participant_ids(study_id, subjects)).values())
    return scope | await detection_store.due_since(study_id, date.fromisoformat(last["as_of"]), as_of), changes


async def _detect(
    study: str,
    study_id: int,
    as_of: date,
    scope: set[int] | None,
    changes: list[tuple[int, str, str]],
    at: str,
    actor: str,
) -> DetectionCounts:
    people = {row["id"]: row for row in await detection_store.participants(study_id, scope)}
    protocols = {
        row["id"]: await protocol_of(row["id"], row["sha256"]) for row in await lookups.list_versions(study_id)
    }
    # Only an ending event after which nothing is collected (consent withdrawn) makes a later visit a deviation.
    ending = sorted({name for p in protocols.values() for name in p.stopping_events})
    screening = {vid: screening_codes(p) for vid, p in protocols.items()}
    condition = f"({detection_store.candidates(ending)}){store.among('x.participant', scope)}"
    rows_of: dict[int, list] = defaultdict(list)
    for row in await lookups.worklist_rows(study_id, condition, *detection_store.candidate_args(as_of, ending)):
        rows_of[row.participant].append(schedules.restated(row, as_of))
    # a participant's collection stopped on the first event that stops it in a version it has followed
    stops = {vid: p.stopping_events for vid, p in protocols.items()}
    ended = {
        pid: min((day for name, day in days.items() if any(name in stops[v] for v in followed)), default=None)
        for pid, (followed, days) in (await detection_store.ending_dates(study_id, ending, scope)).items()
    }
    exceptions: dict[int, list[WindowException]] = defaultdict(list)
    for e in await window_exceptions_store.exceptions(study_id, scope):
        exceptions[e["participant"]].append(as_exception(e))
    consent_of = await _consent_candidates(study, people, scope, as_of)
    occurrences = await detection_store.occurrences(consent_of.keys())
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
    stored: dict[tuple[str, str, int, str], tuple[Sequence[Any], dict[str, Any]]] = {}
    for raw in await store.kept(study_id, scope):
        person = people[raw[1]]
        stored[(person["subject_id"], raw[2], raw[3], raw[4])] = raw, person
    change = reconcile([_kept(raw, person) for raw, person in stored.values()], found)
    kept = {key: _named(raw, person) for key, (raw, person) in stored.items()}  # lazily: only changed ones are read
    by_subject = {row["subject_id"]: row for row in people.values()}
    return await write(study, study_id, change, kept, by_subject, defaults, changes, at, actor)


async def _consent_candidates(
    study: str, people: dict[int, dict], scope: set[int] | None, as_of: date
) -> dict[int, list[ConsentDeviationCandidate]]:
    ids = {row["subject_id"]: pid for pid, row in people.items()}
    found: dict[int, list[ConsentDeviationCandidate]] = defaultdict(list)
    for c in await consent_checks.candidates(study, scope):
        if c.subject_id in ids and c.visit_on <= as_of:
            found[ids[c.subject_id]].append(
                ConsentDeviationCandidate(
                    c.subject_id,
                    c.visit,
                    c.visit_on,
                    ConsentRule(c.rule),
                    c.consented_on,
                    c.required_since,
                    c.signed_version,
                    c.required_version,
                )
            )
    return found


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


def _kept(raw: Sequence[Any], person: dict[str, Any]) -> Kept:
    """A stored record (`store.KEPT` columns) as the rules' finding, its description standing for the detail."""
    _, _, visit, occurrence, rule, state, occurred_on, days_outside, description, _, _ = raw
    return Kept(
        Finding(person["subject_id"], visit, occurrence, _RULES[rule], day_of(occurred_on), days_outside, description),
        state,
    )


class _named:
    """A kept record by column name, with its participant's subject ID and site (for audit names)."""

    __slots__ = ("raw", "person")

    def __init__(self, raw: Sequence[Any], person: dict[str, Any]):
        self.raw, self.person = raw, person

    def __getitem__(self, name: str) -> Any:
        if name in ("subject_id", "site"):
            return self.person[name]
        return self.raw[_KEPT_INDEX[name]]


_KEPT_INDEX = {name: i for i, name in enumerate(store.KEPT)}
