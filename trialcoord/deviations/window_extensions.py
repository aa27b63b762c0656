"""Window extensions asked for and decided: a coordinator requests more days before or after one visit's window,
an investigator approves (the approval is the visit's window exception, `manual.approve_exception`'s row) or
declines with a reason. Each step is audited in its own transaction; the home page counts the open requests.

Approving is not an electronic signature (neither is `manual.approve_exception`): the investigator's grant and the
audit entry carry it, as before requests existed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

from trialcoord.deviations import extension_requests_store as store
from trialcoord.deviations import window_exceptions_store
from trialcoord.deviations.records import now
from trialcoord.deviations.rules.window_extensions import RequestState, check_decision, extension_problems
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound, Problem
from trialcoord.scheduling import lookups, participants, protocols


@dataclass(frozen=True, slots=True)
class ExtensionRequest:
    """A request to extend one visit's window, as stored, with the path of the page that shows and decides it."""

    id: int
    participant: str  # the subject ID
    site: str
    visit: str
    earlier_days: int
    later_days: int
    reason: str
    requested_by: str
    requested_at: str
    state: str
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    row_version: int
    path: str


def request_path(study: str, request_id: int) -> str:
    return f"/studies/{quote(study, safe='')}/extensions/{request_id}"


def _request(study: str, row: dict[str, Any]) -> ExtensionRequest:
    return ExtensionRequest(
        id=row["id"],
        participant=row["subject_id"],
        site=row["site"],
        visit=row["visit"],
        earlier_days=row["earlier_days"],
        later_days=row["later_days"],
        reason=row["reason"],
        requested_by=row["requested_by"],
        requested_at=row["requested_at"],
        state=row["state"],
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        decision_reason=row["decision_reason"],
        row_version=row["row_version"],
        path=request_path(study, row["id"]),
    )


def _record_id(study: str, row: dict[str, Any]) -> str:
    return participants.record_id(study, row["site"], row["subject_id"], row["visit"], "extension", str(row["id"]))


async def request_extension(
    study: str, subject_id: str, visit: str, earlier_days: int, later_days: int, reason: str, actor: str
) -> ExtensionRequest:
    """A coordinator's request to extend one visit's window; one open request per visit, none once approved."""
    problems = extension_problems(earlier_days, later_days, reason)
    if problems:
        raise InvalidInput(problems)
    async with transaction(f"study {study}, participant {subject_id}, visit {visit}"):
        study_id = (await protocols.require_study(study)).id
        person = await lookups.find_subject(study, subject_id)
        if person is None or person["id"] is None:
            raise NotFound(f"study {study} has no participant {subject_id}")
        if await lookups.find_visit(person["id"], visit) is None:
            raise InvalidInput([Problem(f"participant {subject_id} has no visit {visit}", field="visit")])
        approved = await window_exceptions_store.exception_of(person["id"], visit)
        if approved is not None:
            raise Conflict(
                f"visit {visit} of {subject_id} already has an approved extension ({approved['earlier_days']} days"
                f" earlier, {approved['later_days']} later, approved by {approved['approved_by']})"
            )
        if await store.open_request(person["id"], visit) is not None:
            raise Conflict(f"visit {visit} of {subject_id} already has an open extension request: decide it first")
        request_id = await store.insert_request(
            person["id"], visit, earlier_days, later_days, reason.strip(), actor, now()
        )
        row = await _found(study, study_id, request_id)
        await audit_log.record(
            actor,
            Change(
                "create",
                "window_extension_request",
                _record_id(study, row),
                None,
                {"visit": visit, "earlier_days": earlier_days, "later_days": later_days, "state": row["state"]},
                reason.strip(),
            ),
        )
    return _request(study, row)


async def decide_extension(
    study: str,
    request_id: int,
    approve: bool,
    actor: str,
    today: date,
    reason: str | None = None,
    row_version: int | None = None,
    sites: Collection[str] | None = None,
) -> ExtensionRequest:
    """An investigator approves (the visit's window exception, approved today) or declines (with the reason) an
    open request; `sites`: those where the actor decides (None: all), a request elsewhere is not found."""
    async with transaction(f"window extension request {request_id} of study {study}"):
        study_id = (await protocols.require_study(study)).id
        await store.lock_request(request_id)
        row = await _found(study, study_id, request_id, sites)
        if row_version is not None and row["row_version"] != row_version:
            raise Conflict(
                f"extension request {request_id} changed meanwhile (version {row['row_version']}, not {row_version});"
                " reload it and try again"
            )
        check_decision(row["state"], approve, reason)
        state = RequestState.APPROVED if approve else RequestState.DECLINED
        note = (reason or "").strip() or None
        at = now()
        if not await store.decide(request_id, row["row_version"], state, actor, at, note):
            raise Conflict(f"extension request {request_id} changed meanwhile; reload it and try again")
        changes = [
            Change(
                "approve" if approve else "decline",
                "window_extension_request",
                _record_id(study, row),
                {"state": row["state"]},
                {"state": str(state), "decided_by": actor},
                note,
            )
        ]
        if approve:
            await window_exceptions_store.insert_exception(
                row["participant"],
                row["visit"],
                row["earlier_days"],
                row["later_days"],
                today.isoformat(),
                actor,
                row["reason"],
                at,
            )
            changes.append(
                Change(
                    "create",
                    "window_exception",
                    participants.record_id(study, row["site"], row["subject_id"], row["visit"], "exception"),
                    None,
                    {
                        "visit": row["visit"],
                        "earlier_days": row["earlier_days"],
                        "later_days": row["later_days"],
                        "approved_on": today,
                        "approved_by": actor,
                        "request": request_id,
                    },
                    row["reason"],
                )
            )
        await audit_log.record(actor, *changes)
        decided = await _found(study, study_id, request_id)
    return _request(study, decided)


async def _found(study: str, study_id: int, request_id: int, sites: Collection[str] | None = None) -> dict[str, Any]:
    row = await store.find_request(study_id, request_id)
    if row is None or (sites is not None and row["site"] not in sites):
        raise NotFound(f"study {study} has no window extension request {request_id}")
    return row


async def get_request(study: str, request_id: int, sites: Collection[str] | None = None) -> ExtensionRequest:
    async with read():
        study_id = (await protocols.require_study(study)).id
        return _request(study, await _found(study, study_id, request_id, sites))


async def extension_requests(
    study: str, sites: Collection[str] | None = None, states: Collection[str] | None = None
) -> list[ExtensionRequest]:
    """The study's requests at `sites` (None: all), oldest first, of `states` (None: all)."""
    async with read():
        study_id = (await protocols.require_study(study)).id
        rows = await store.requests(study_id, states, sites)
    return [_request(study, row) for row in rows]


async def open_extension_requests(study: str, sites: set[str] | None) -> list[ExtensionRequest]:
    """The requests waiting for an investigator's decision at `sites` (None: every site), oldest first; each names
    its participant, visit, days, who asked and when, and `path`, the page that decides it."""
    return await extension_requests(study, sites, [RequestState.REQUESTED])


async def count_open_extension_requests(study: str, sites: set[str] | None) -> int:
    """How many requests wait for an investigator's decision at `sites` (None: every site)."""
    async with read():
        study_id = (await protocols.require_study(study)).id
        return await store.count_open(study_id, sites)
