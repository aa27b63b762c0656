"""The SDTM datasets of a sponsor package, built from a stored study (issue 14 §1-2): TV and TA from the protocol
version in force on the as-of date, SV, DV with SUPPDV, DS and DM from the study's records on or before it, of
the sites asked for, in the privacy mode asked for (`exports/rules/domains.py` and `privacy.py` say what each
holds). One read transaction, so every dataset sees the same snapshot; participants' visits are read a page of
participants at a time and turned into rows at once, so the study is never held twice.

Blinding: arms are shown (DM's ARMCD and ARM) when the protocol is open-label (both the version in force on the
as-of date and the current one) or the package is unblinded (made by a role that may view the allocation,
`Scope.unblinded`); otherwise what would reveal a participant's arm (the SV rows of visits some arms only have, and
their deviations) is left out and counted in `withheld`. TV and TA keep the arms: they are the design, not an
allocation.

A deviation as it stood on the as-of date: its review state from the review steps taken by then; the site's reason
and classification from the last step on or before it that set them when a later step changed them (a
classification never signed by then stays as currently recorded: the detection's first classification is in the
audit trail only). A resolution by data correction after the as-of date is not read back.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from trialcoord.deviations.records import record_id
from trialcoord.exports import store
from trialcoord.exports.rules import domains
from trialcoord.exports.rules.domains import (
    ConsentSigned,
    Design,
    DeviationRecord,
    EventRecorded,
    Subject,
    VisitDone,
)
from trialcoord.exports.rules.scope import Scope
from trialcoord.exports.rules.sdtm import Dataset
from trialcoord.kernel import pii
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.problems import InvalidInput, NotConfigured, NotFound, Problem
from trialcoord.kernel.rules.access import Blinding
from trialcoord.scheduling import identities, protocols

CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class DeviationState:
    """One DV record as delivered, for transfer deltas between packages."""

    refid: str  # DVREFID (the deviation's record name)
    site: str  # site code
    fingerprint: str  # sha256 hex of that record's DV and SUPPDV values as delivered
    closed: bool


@dataclass(frozen=True, slots=True)
class StudyDatasets:
    study: str
    title: str
    protocol: str  # e.g. "DEMO-001 version 2.0"
    arms_shown: bool  # DM carries ARMCD/ARM values
    datasets: tuple[Dataset, ...]  # TV, TA (only if the protocol has arms), SV, DV, SUPPDV, DS, DM
    deviations: tuple[DeviationState, ...]
    withheld: dict[str, int]  # rows left out and why


Progress = Callable[[float, str], None]


async def build(scope: Scope, progress: Progress | None = None) -> StudyDatasets:
    """The datasets of `scope`; NotFound for an unknown study, InvalidInput for an unknown site or a value that does
    not fit SDTM (naming dataset, row, variable and participant or deviation)."""
    report: Progress = progress or (lambda fraction, what: None)
    async with read():
        found = await protocols.require_study(scope.study)
        design = await _design(scope)
        sites = await _sites(found.id, scope)
        report(0.05, "participants")
        people = await store.participants(found.id, sites, scope.as_of)
        events, consents = await _events(found.id, sites, scope.as_of), await _consents(found.id, sites, scope.as_of)
        born = await _birth_dates(scope.study, found.id, sites)
        withheld: Counter[str] = Counter()
        deviations = await _deviations(scope, found.id, sites, {row[0] for row in people}, withheld)
        out = domains.collectors(scope.privacy)
        states: list[DeviationState] = []
        occurrences: dict[str, int] = {}
        days: dict[Any, date] = {}  # each visit date as read, parsed once (a study has a few thousand)
        for start in range(0, len(people), store.PAGE):
            page = people[start : start + store.PAGE]
            report(0.1 + 0.8 * start / max(1, len(people)), f"participants {start + 1} to {start + len(page)}")
            visits = _by_participant(await store.visits_done([row[0] for row in page], scope.as_of))
            for pid, subject_id, site, arm in page:
                who = domains.subject(design, subject_id, site, arm, events[pid], consents[pid], born.get(pid))
                done = _visits(visits.get(pid, ()), days)
                _count_occurrences(design, done, occurrences)
                out["SV"].extend(domains.sv_records(design, who, done, withheld))
                for record, (dv, supp) in _with_records(deviations.get(pid, []), design, who, withheld):
                    out["DV"].add(dv)
                    for row in supp:
                        out["SUPPDV"].add(row)
                    states.append(
                        DeviationState(str(dv["DVREFID"]), record.site, domains.fingerprint(dv, supp), _closed(record))
                    )
                for row in domains.ds_rows(design, who, consents[pid], events[pid]):
                    out["DS"].add(row)
                out["DM"].add(domains.dm_row(design, who))
    report(0.92, "checking the datasets")
    trial = [domains.trial_visits(design, occurrences)]
    arms = domains.trial_arms(design)
    if arms is not None:
        trial.append(arms)
    built = (*trial, *(collector.dataset() for collector in out.values()))
    report(1.0, "datasets built")
    return StudyDatasets(
        scope.study,
        found.title,
        f"{scope.study} version {design.protocol.version}",
        design.arms_shown,
        built,
        tuple(states),
        dict(sorted(withheld.items())),
    )


async def _design(scope: Scope) -> Design:
    """The version in force on the as-of date (the earliest when none was yet) and every version. Blinded when
    that version or the study's current one (the latest, whose blinding access follows) is: an amendment that
    opens or closes the blind does not open a package dated on the other side of it."""
    versions = await protocols.list_protocol_versions(scope.study)
    if not versions:
        raise NotFound(f"study {scope.study} has no protocol version loaded")
    in_force = [v for v in versions if v.effective <= scope.as_of] or versions[:1]
    every = tuple([await protocols.get_protocol(scope.study, v.version) for v in versions])
    current = every[versions.index(in_force[-1])]
    blinded = Blinding(current.blinding).blinded or Blinding(every[-1].blinding).blinded
    arms_shown = not blinded or scope.unblinded
    return Design(scope.study, current, every, scope.privacy, arms_shown)


async def _sites(study_id: int, scope: Scope) -> tuple[str, ...]:
    if not scope.sites:
        return ()
    known = set(await store.site_codes(study_id))
    unknown = [code for code in scope.sites if code not in known]
    if unknown:
        raise InvalidInput([Problem(f"study {scope.study} has no site {code}", field="sites") for code in unknown])
    return tuple(sorted(set(scope.sites)))


async def _events(study_id: int, sites: Sequence[str], as_of: date) -> defaultdict[int, list[EventRecorded]]:
    found: defaultdict[int, list[EventRecorded]] = defaultdict(list)
    for pid, event, day in await store.events(study_id, sites, as_of):
        found[pid].append(EventRecorded(event, _required(day)))
    return found


async def _consents(study_id: int, sites: Sequence[str], as_of: date) -> defaultdict[int, list[ConsentSigned]]:
    found: defaultdict[int, list[ConsentSigned]] = defaultdict(list)
    for pid, signed_on, label in await store.consents(study_id, sites, as_of):
        found[pid].append(ConsentSigned(_required(signed_on), label))
    return found


def _required(value: Any) -> date:
    found = store.day(value)
    if found is None:  # the columns are NOT NULL
        raise ValueError("a NOT NULL date column read as NULL")
    return found


async def _birth_dates(study: str, study_id: int, sites: Sequence[str]) -> dict[int, date]:
    """Birth dates that the installation's key ring reads, only to compute ages (never put in a dataset); none
    when no key is configured, and none for a value that does not decrypt or parse (AGE is then null)."""
    try:
        ring = identities.key_ring()
    except NotConfigured:
        return {}
    found = {}
    for pid, subject_id, text in await store.birth_dates(study_id, sites):
        try:
            value = ring.decrypt(base64.b64decode(text), identities.record_name(study, subject_id), "date_of_birth")
            found[pid] = date.fromisoformat(value)
        except (pii.PiiError, ValueError):
            continue
    return found


def _by_participant(rows: Sequence[Sequence[Any]]) -> dict[int, list[Sequence[Any]]]:
    found: dict[int, list[Sequence[Any]]] = defaultdict(list)
    for row in rows:
        found[row[0]].append(row)
    return found


def _visits(rows: Iterable[Sequence[Any]], days: dict[Any, date]) -> list[VisitDone]:
    """One participant's visits as read (participant, code, occurrence, name, number, actual), made into records
    just before their rows: a whole page's records, alive together, would reach the garbage collector's oldest
    generation and bring on full collections that walk every row built so far (a quarter of the build's time).
    The driver's tuples of plain values are not in the way: the collector stops tracking them."""
    found = []
    for _, code, occurrence, name, number, actual in rows:
        day = days.get(actual)
        if day is None:
            day = days[actual] = _required(actual)
        found.append(VisitDone(code, occurrence, name, None if number is None else float(number), day))
    return found


def _count_occurrences(design: Design, visits: Sequence[VisitDone], highest: dict[str, int]) -> None:
    """The highest occurrence done of each repeating visit, for TV's open-ended repeats."""
    for visit in visits:
        if visit.occurrence > 1:
            found = design.definition(visit.code)
            if found is not None:
                code = found[0].code
                highest[code] = max(highest.get(code, 1), visit.occurrence)


async def _deviations(
    scope: Scope, study_id: int, sites: Sequence[str], participants: set[int], withheld: Counter[str]
) -> dict[int, list[DeviationRecord]]:
    """The deviations of the participants in the package by participant, as they stood on the as-of date; those
    without a participant (site-level) cannot be in DV (USUBJID is required) and are counted in `withheld`."""
    steps: dict[int, list[Sequence[Any]]] = defaultdict(list)
    for step in await store.review_steps(study_id, sites):
        steps[step[0]].append(step)
    found: dict[int, list[DeviationRecord]] = defaultdict(list)
    for row in await store.deviations(study_id, sites, scope.as_of):
        (did, pid, site, visit, rule, description, category, subcategory, classification, state, occurred_on,
         closed_at, site_reason) = row  # fmt: skip
        if pid is None:
            withheld[domains.WITHHELD_NO_SUBJECT] += 1
            continue
        if pid not in participants:
            continue  # enrolled after the as-of date, or at a site outside the package
        current = {
            "state": state,
            "classification": classification,
            "category": category,
            "subcategory": subcategory,
            "site_reason": site_reason,
            "closed_at": closed_at,
        }
        then = standing_on(current, steps.get(did, []), scope.as_of)
        found[pid].append(
            DeviationRecord(
                did,
                "",  # the record name needs the subject ID, set with the participant (`_with_records`)
                site,
                None,
                visit,
                rule,
                description,
                then["category"],
                then["subcategory"],
                then["classification"],
                then["state"],
                store.day(occurred_on),
                store.day(then["closed_at"]) if then["state"] == CLOSED else None,
                then["site_reason"],
            )
        )
    return found


def standing_on(current: dict[str, Any], steps: Sequence[Sequence[Any]], as_of: date) -> dict[str, Any]:
    """A deviation's review values on `as_of` from its current ones and its review steps (deviation, step,
    from_state, to_state, at, detail), oldest first: the steps taken after it are undone."""
    cutoff = as_of.isoformat()
    later = [step for step in steps if str(step[4])[:10] > cutoff]
    if not later:
        return current
    earlier = [step for step in steps if str(step[4])[:10] <= cutoff]
    then = dict(current, state=later[0][2])
    changed = {name for step in later for name in json.loads(step[5] or "{}")}
    for name in changed & set(current):
        then[name] = None if name in ("site_reason", "closed_at") else current[name]
        for step in earlier:
            detail = json.loads(step[5] or "{}")
            if name in detail:
                then[name] = detail[name]
    return then


def _with_records(
    records: list[DeviationRecord], design: Design, who: Subject, withheld: Counter[str]
) -> list[tuple[DeviationRecord, tuple[domains.Row, list[domains.Row]]]]:
    named = [_named(record, design.study, who.subject_id) for record in records]  # DVREFID: the trail's name
    built = domains.dv_rows(design, who, named, withheld)
    by_refid = {record.refid: record for record in named}
    return [(by_refid[str(dv["DVREFID"])], (dv, supp)) for dv, supp in built]


def _named(record: DeviationRecord, study: str, subject_id: str) -> DeviationRecord:
    return replace(record, refid=record_id(study, record.site, subject_id, record.id), subject_id=subject_id)


def _closed(record: DeviationRecord) -> bool:
    return record.state == CLOSED
