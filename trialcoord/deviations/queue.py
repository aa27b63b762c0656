"""The deviation queue a coordinator or monitor works from: the study's deviations, oldest first, filtered and
paged; one deviation with its review steps and signatures; a deviation's age."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from typing import Any

from trialcoord.deviations import review_store, store
from trialcoord.deviations.records import Deviation, as_deviation
from trialcoord.deviations.rules.deviation_review import State
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.problems import NotFound, invalid
from trialcoord.scheduling import protocols

STATES = tuple(State)


@dataclass(frozen=True, slots=True)
class ReviewStep:
    """A review step taken: `detail`, the fields it set, as canonical JSON text (None: none)."""

    id: int
    step: str
    from_state: str
    to_state: str
    actor: str
    at: str
    reason: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class StoredSignature:
    """A signature of a classification or closure as stored: the decision signed (canonical JSON), the signed
    statement's parts, the signing step's name and target state, the deviation's audit name parts and its
    current state and classification (to verify it against)."""

    deviation: int
    step: int
    decision: str
    content_sha256: str
    record: str
    signer_id: str
    printed_name: str
    meaning: str
    instant: str
    key_id: str
    value: str
    step_name: str
    to_state: str
    study: str
    site: str
    subject_id: str | None
    current_state: str
    current_classification: str
    current_category: str
    current_subcategory: str | None


@dataclass(frozen=True, slots=True)
class DeviationReview(Deviation):
    """One deviation with its review steps and their signatures, in order."""

    steps: list[ReviewStep]
    signatures: list[StoredSignature]


def stored_signature(row: dict[str, Any]) -> StoredSignature:
    return StoredSignature(**row)


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
) -> tuple[list[Deviation], int]:
    """The study's deviations, oldest first, filtered; and how many match (for pagination). `sites`: the
    sites the reader may see (None: all)."""
    unknown = [s for s in states or () if s not in STATES]
    if unknown:
        raise invalid(f"'{unknown[0]}' is not a deviation state; choose among {', '.join(STATES)}", field="state")
    where: list[str] = []
    args: list[object] = []
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
        study_id = (await protocols.require_study(study)).id
        total = await store.count(study_id, clause, args)
        rows = await store.listing(study_id, clause, args, "d.detected_at, d.id", limit, offset)
    return [as_deviation(row) for row in rows], total


async def get(study: str, deviation_id: int) -> DeviationReview:
    async with read():
        study_id = (await protocols.require_study(study)).id
        row = await store.find(study_id, deviation_id)
        if row is None:
            raise NotFound(f"study {study} has no deviation {deviation_id}")
        steps = await review_store.steps(deviation_id)
        signed = await review_store.signatures(deviation_id)
    listed = as_deviation(row)
    return DeviationReview(
        **{name: getattr(listed, name) for name in Deviation.__dataclass_fields__},
        steps=[ReviewStep(**s) for s in steps],
        signatures=[stored_signature(s) for s in signed],
    )


def age_days(row: Deviation, as_of: date) -> int:
    return (as_of - date.fromisoformat(row.detected_at[:10])).days
