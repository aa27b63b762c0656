"""Protocol deviations found by the schedule and consent checks, and how a new detection run reconciles
with the records already kept (groundwork of the deviation issue: pure rules, no storage yet).

Each (participant, visit occurrence, rule) yields at most one record however often detection runs
(the protocol contract, "Visit status"). When the fact behind an automatic record goes away (a corrected
visit date moves a visit back inside its window), the record is not deleted: it is resolved by data
correction. An investigator-approved window extension recorded before the visit prevents the deviation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum

from trialcoord.documents.rules.consent import ConsentDeviationCandidate, ConsentRule
from trialcoord.scheduling.rules.classification import (  # the names deviations are described with, re-exported
    CATEGORY as CATEGORY,
)
from trialcoord.scheduling.rules.classification import (
    DEFAULTS as DEFAULTS,
)
from trialcoord.scheduling.rules.classification import (
    Category as Category,
)
from trialcoord.scheduling.rules.classification import (
    Classification as Classification,
)
from trialcoord.scheduling.rules.classification import (
    ClassificationDefaults as ClassificationDefaults,
)
from trialcoord.scheduling.rules.classification import (
    Rule as Rule,
)
from trialcoord.scheduling.rules.classification import (
    Threshold as Threshold,
)
from trialcoord.scheduling.rules.schedule import EARLY, LATE, MISSED, VisitOccurrence


@dataclass(frozen=True, slots=True)
class Finding:
    """One deviation a detection run finds; `key` names it across runs."""

    subject_id: str
    visit: str  # the occurrence's code, such as C3D1
    occurrence: int
    rule: Rule
    occurred_on: date | None  # the visit's date, or the closing of its window when missed
    days_outside: int = 0
    detail: str = ""

    @property
    def key(self) -> tuple[str, str, int, str]:
        return self.subject_id, self.visit, self.occurrence, self.rule  # a StrEnum: equal to, and hashed as, its text

    @property
    def category(self) -> Category:
        return CATEGORY[self.rule]


@dataclass(frozen=True, slots=True)
class WindowException:
    """An investigator-approved extension of one visit occurrence's window, approved on `approved_on` and
    recorded on `recorded_on`: it prevents the early or late deviation only when both came before (or on the
    day of) the visit; one recorded afterwards explains the deviation but does not erase it."""

    subject_id: str
    visit: str
    earlier_days: int
    later_days: int
    approved_on: date
    recorded_on: date | None = None  # None: as approved


def detect(
    subject_id: str,
    rows: Iterable[VisitOccurrence],
    *,
    screening: Iterable[str] = (),
    collection_stopped_on: date | None = None,
    consent: Iterable[ConsentDeviationCandidate] = (),
    exceptions: Iterable[WindowException] = (),
    occurrences: Mapping[str, int] | None = None,
) -> list[Finding]:
    """The deviations of one participant's evaluated schedule. `screening`: the protocol's screening visit
    codes (outside their window is an eligibility matter); `collection_stopped_on`: the date of an ending event
    with `collection: stops` (consent withdrawn), after which any visit done, scheduled or not, is a deviation
    (after other ending events, visits done are judged as they happened, and unscheduled ones raise nothing);
    `consent`: that participant's consent candidates; `occurrences`: the occurrence of visit codes not among
    `rows` (consent candidates are visits done in their window too)."""
    rows, screening = list(rows), set(screening)
    allowed: dict[tuple[str, str], list[WindowException]] = {}
    for e in exceptions:
        allowed.setdefault((e.subject_id, e.visit), []).append(e)
    findings = []
    for row in rows:
        rule = _schedule_rule(row, screening)
        if rule is not None and not any(_excepted(row, e) for e in allowed.get((subject_id, row.visit), ())):
            findings.append(
                Finding(
                    subject_id,
                    row.visit,
                    row.occurrence,
                    rule,
                    row.actual or row.latest,
                    row.days_outside,
                    f"{_days(row.days_outside)} {'before' if row.days_outside < 0 else 'after'} the window"
                    if row.days_outside
                    else "",
                )
            )
        if collection_stopped_on is not None and row.actual is not None and row.actual > collection_stopped_on:
            findings.append(
                Finding(
                    subject_id,
                    row.visit,
                    row.occurrence,
                    Rule.VISIT_AFTER_ENDING_EVENT,
                    row.actual,
                    detail=f"data collection stopped on {collection_stopped_on}",
                )
            )
    occurrences = {**(occurrences or {}), **{r.visit: r.occurrence for r in rows}}
    for c in consent:
        rule = (
            Rule.VISIT_BEFORE_CONSENT if c.rule is ConsentRule.BEFORE_CONSENT else Rule.VISIT_UNDER_SUPERSEDED_CONSENT
        )
        findings.append(Finding(c.subject_id, c.visit, occurrences.get(c.visit, 1), rule, c.visit_on, detail=c.message))
    return findings


def _days(days_outside: int) -> str:
    return "1 day" if abs(days_outside) == 1 else f"{abs(days_outside)} days"


def _schedule_rule(row: VisitOccurrence, screening: set[str]) -> Rule | None:
    if row.status == MISSED and row.optional:  # an optional visit marked missed: nothing was required
        return None
    if row.status in (EARLY, LATE) and row.definition in screening:
        return Rule.SCREENING_OUT_OF_WINDOW
    return {EARLY: Rule.VISIT_EARLY, LATE: Rule.VISIT_LATE, MISSED: Rule.VISIT_MISSED}.get(row.status)


def _excepted(row: VisitOccurrence, exception: WindowException) -> bool:
    if row.actual is None or row.status not in (EARLY, LATE):
        return False
    if max(exception.approved_on, exception.recorded_on or exception.approved_on) > row.actual:
        return False
    if row.status == EARLY:
        return -row.days_outside <= exception.earlier_days
    return row.days_outside <= exception.later_days


# --- reconciling a run with what is kept ---


class State(StrEnum):
    DETECTED = "detected"
    RESOLVED_BY_CORRECTION = "resolved_by_data_correction"
    REOPENED = "reopened"  # by a monitor, with a reason: detection does not resolve it again


KEPT_AS_THEY_ARE = frozenset({State.RESOLVED_BY_CORRECTION, State.REOPENED})


@dataclass(frozen=True, slots=True)
class Kept:
    """An automatic deviation record as kept: the finding it holds, and its state in the review."""

    finding: Finding
    state: str = State.DETECTED  # review states of the workflow (site response, ...) are kept as they are


@dataclass(frozen=True, slots=True)
class Reconciliation:
    created: tuple[Finding, ...]
    updated: tuple[Kept, ...]  # the same deviation with new facts (days outside, date)
    resolved: tuple[Kept, ...]  # its fact went away: resolved by data correction, never deleted
    reopened: tuple[Kept, ...]  # resolved by correction, then found again


def reconcile(kept: Iterable[Kept], found: Iterable[Finding]) -> Reconciliation:
    """What a detection run changes, given the records kept and the findings of the same participants (an
    incremental run passes both for its scope only). Running it again on its own result changes nothing."""
    found_by_key = {f.key: f for f in found}
    created, updated, resolved, reopened = [], [], [], []
    seen = set()
    for record in kept:
        key = record.finding.key
        seen.add(key)
        now = found_by_key.get(key)
        if now is None:
            if record.state not in KEPT_AS_THEY_ARE:
                resolved.append(replace(record, state=State.RESOLVED_BY_CORRECTION))
        elif record.state == State.RESOLVED_BY_CORRECTION:
            reopened.append(Kept(now, State.DETECTED))
        elif now != record.finding:
            updated.append(replace(record, finding=now))
    created = [f for key, f in found_by_key.items() if key not in seen]
    return Reconciliation(tuple(created), tuple(updated), tuple(resolved), tuple(reopened))
