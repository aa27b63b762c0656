"""A detection run's changes stored (`detection` finds them; `rules/deviations.py`, `reconcile`, works them
out): records created, updated, resolved by data correction naming the audit entry that caused it, and reopened,
each audited in the run's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from trialcoord.deviations import detection_store, store
from trialcoord.deviations.records import AUTOMATIC, Row, audited, record_id, record_id_of
from trialcoord.deviations.rules.deviation_review import State, default_subcategory
from trialcoord.deviations.rules.deviations import ClassificationDefaults, Finding, Reconciliation
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.scheduling import participants

SUBJECT_RECORDS = frozenset({"participant", "participant_event", "visit", "participant_consent", "window_exception"})


@dataclass(frozen=True, slots=True)
class DetectionCounts:
    """How many deviation records a run created, updated, resolved by data correction and reopened."""

    created: int = 0
    updated: int = 0
    resolved: int = 0
    reopened: int = 0


async def write(
    study: str,
    study_id: int,
    change: Reconciliation,
    kept: Mapping[tuple[str, str, int, str], Row],
    people: Mapping[str, Mapping[str, Any]],
    defaults: Mapping[str, ClassificationDefaults],
    changes: Sequence[tuple[int, str, str]],
    at: str,
    actor: str,
) -> DetectionCounts:
    """Store a run's changes. Each change to a kept record is conditional on its row_version as read: a review
    step committed meanwhile wins, and the next run reconciles again (never a step silently undone).
    `kept`: the stored records by finding key; `people`: participants by subject ID; `changes`: the audit
    entries since the previous run (sequence, record type, record ID)."""
    audit: list[Change] = []
    counts = dict(created=len(change.created), updated=0, resolved=0, reopened=0)
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
        for created in await store.detected_at(study_id, at, {people[f.subject_id]["id"] for f in change.created}):
            audit.append(
                Change(
                    "create",
                    "deviation",
                    record_id(study, created["site"], created["subject_id"], created["id"]),
                    None,
                    audited(created),
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
                    record_id_of(study, row),
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
                    record_id_of(study, row),
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
                    record_id_of(study, row),
                    {**_facts_of(row), "state": row["state"]},
                    {**facts, "state": State.DETECTED.value},
                    "detection: the fact holds again",
                )
            )
    await audit_log.record(actor, *audit)
    return DetectionCounts(**counts)


def _facts(finding: Finding) -> dict[str, Any]:
    return {
        "occurred_on": _iso(finding.occurred_on),
        "days_outside": finding.days_outside,
        "description": finding.detail,
    }


def _facts_of(row: Row) -> dict[str, Any]:
    return {"occurred_on": row["occurred_on"], "days_outside": row["days_outside"], "description": row["description"]}


async def _cause(study: str, row: Row, changes: Sequence[tuple[int, str, str]]) -> int | None:
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
        return await detection_store.latest_entry(visit_rid, prefix, SUBJECT_RECORDS)
    same_visit = [seq for seq, rid in mine if rid == visit_rid]
    return max(same_visit or [seq for seq, _ in mine], default=None)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None
