"""The deviation queue a coordinator or monitor works from: the study's deviations filtered, sorted and read a keyset
page at a time (or oldest first by offset, for the API); one deviation with its review steps and signatures; a
deviation's age; per site, how many await the site's response and how many a monitor's review (the home page)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date
from typing import Any

from trialcoord.deviations import review_store, store
from trialcoord.deviations.records import MANUAL, Deviation, as_deviation
from trialcoord.deviations.rules.deviation_review import State
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.problems import NotFound, invalid
from trialcoord.kernel.web.paging import Page, PageRequest, page_of
from trialcoord.scheduling import protocols
from trialcoord.scheduling.rules.classification import Rule

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


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What the queue is narrowed to; every field optional. `sites`: those the reader may see (None: all);
    `kind`: a detection rule, or `manual`; `text`: a deviation number or part of a subject ID."""

    states: tuple[str, ...] = ()
    sites: Collection[str] | None = None
    category: str | None = None
    kind: str | None = None
    classification: str | None = None
    text: str | None = None
    participant: str | None = None
    min_age_days: int | None = None
    as_of: date | None = None


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
    chosen = QueueFilter(
        tuple(states or ()), sites, category, participant=participant, min_age_days=min_age_days, as_of=as_of
    )
    clause, args = _clause(chosen)
    async with read():
        study_id = (await protocols.require_study(study)).id
        total = await store.count(study_id, clause, args)
        rows = await store.listing(study_id, clause, args, "d.detected_at, d.id", limit, offset)
    return [as_deviation(row) for row in rows], total


# The queue page's sorts: the SQL expression (NULLs as '' so both engines order them alike) and the row's value.
SORTS: dict[str, tuple[str, Callable[[Deviation], Any]]] = {
    "detected": ("d.detected_at", lambda row: row.detected_at),
    "id": ("d.id", lambda row: row.id),
    "participant": ("COALESCE(p.subject_id, '')", lambda row: row.participant or ""),
    "site": ("s.code", lambda row: row.site),
    "visit": ("COALESCE(d.visit, '')", lambda row: row.visit or ""),
    "state": ("d.state", lambda row: row.state),
    "classification": ("d.classification", lambda row: row.classification),
    "days_outside": ("d.days_outside", lambda row: row.days_outside),
}
KINDS = (*(str(rule) for rule in Rule), MANUAL)


def sort_key(sort: str) -> Callable[[Deviation], tuple[Any, int]]:
    """The cursor of a row in the queue sorted by `sort`: its sort value and its id."""
    value = SORTS[sort][1]
    return lambda row: (value(row), row.id)


async def queue_page(study: str, chosen: QueueFilter, request: PageRequest) -> tuple[Page[Deviation], int]:
    """A keyset page of the queue (sorted by one of `SORTS`, then by id) and how many deviations match."""
    if request.sort not in SORTS:
        raise invalid(f"'{request.sort}' is not a column of the queue; choose one of {', '.join(SORTS)}", field="sort")
    after = request.after
    numeric = request.sort in ("id", "days_outside")
    if after is not None and not (
        isinstance(after[1], int) and (isinstance(after[0], int) if numeric else isinstance(after[0], str))
    ):
        raise invalid("not a cursor of this list (follow the page's Next link)", field="after")
    clause, args = _clause(chosen)
    async with read():
        study_id = (await protocols.require_study(study)).id
        total = await store.count(study_id, clause, args)
        rows = await store.keyset_page(
            study_id,
            clause,
            args,
            SORTS[request.sort][0],
            request.descending,
            (after[0], after[1]) if after is not None else None,
            request.size + 1,
        )
    return page_of([as_deviation(row) for row in rows], request, sort_key(request.sort)), total


def _clause(chosen: QueueFilter) -> tuple[str, list[object]]:
    """The filter as SQL over the deviation row `d` (every part on `d` itself, so an index picks the page before
    any join), and its arguments."""
    unknown = [s for s in chosen.states if s not in STATES]
    if unknown:
        raise invalid(f"'{unknown[0]}' is not a deviation state; choose among {', '.join(STATES)}", field="state")
    if chosen.kind and chosen.kind not in KINDS:
        raise invalid(f"'{chosen.kind}' is not a kind of deviation; choose among {', '.join(KINDS)}", field="kind")
    where: list[str] = []
    args: list[object] = []
    if chosen.states:
        where.append(f"d.state IN ({', '.join('{}' for _ in chosen.states)})")
        args.extend(chosen.states)
    if chosen.sites is not None:
        where.append(
            f"d.site IN (SELECT x.id FROM sites x WHERE x.code IN ({', '.join('{}' for _ in chosen.sites) or 'NULL'}))"
        )
        args.extend(chosen.sites)
    for column, value in (("d.category", chosen.category), ("d.classification", chosen.classification)):
        if value:
            where.append(f"{column} = {{}}")
            args.append(value)
    if chosen.kind == MANUAL:
        where.append("d.source = {}")
        args.append(MANUAL)
    elif chosen.kind:
        where.append("d.rule = {}")
        args.append(chosen.kind)
    if chosen.participant:
        where.append("d.participant IN (SELECT x.id FROM participants x WHERE x.subject_id = {})")
        args.append(chosen.participant)
    text = (chosen.text or "").strip()
    if text:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        subject = "d.participant IN (SELECT x.id FROM participants x WHERE LOWER(x.subject_id) LIKE {} ESCAPE '\\')"
        if text.isascii() and text.isdigit() and len(text) <= 9:
            where.append(f"(d.id = {{}} OR {subject})")
            args.append(int(text))
        else:
            where.append(subject)
        args.append(pattern)
    if chosen.min_age_days is not None:  # detected at least that many days before `as_of`
        cutoff = date.fromordinal(max(1, (chosen.as_of or date.today()).toordinal() - chosen.min_age_days))
        where.append("d.detected_at < {}")
        args.append(date.fromordinal(cutoff.toordinal() + 1).isoformat())
    return "".join(f" AND {w}" for w in where), args


@dataclass(frozen=True, slots=True)
class AwaitingCounts:
    """A site's open deviations by whose turn it is: the site's response (detected, reopened) or a monitor's
    review (responded, under review, classified and waiting to be closed)."""

    site: str
    awaiting_response: int
    awaiting_review: int


AWAITING_RESPONSE = frozenset({State.DETECTED, State.REOPENED})
AWAITING_REVIEW = frozenset({State.SITE_RESPONSE, State.UNDER_REVIEW, State.CLASSIFIED})


async def awaiting_by_site(study: str, sites: Collection[str] | None = None) -> list[AwaitingCounts]:
    """Per site (of `sites`, None: all) with any open deviation, how many await the site's response and how many a
    monitor's review; by site code."""
    async with read():
        study_id = (await protocols.require_study(study)).id
        counted = await store.counts_by_site(study_id, sites)
    response: dict[str, int] = defaultdict(int)
    review: dict[str, int] = defaultdict(int)
    for site, state, n in counted:
        if state in AWAITING_RESPONSE:
            response[site] += n
        elif state in AWAITING_REVIEW:
            review[site] += n
    return [AwaitingCounts(site, response[site], review[site]) for site in sorted(response.keys() | review.keys())]


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
