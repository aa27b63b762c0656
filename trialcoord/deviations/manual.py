"""What is recorded by hand: a deviation a coordinator, investigator or monitor found (any category, at a site
or of one of its participants), and an investigator-approved window extension of one visit, with the study's
approved exceptions as the rules take them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from trialcoord.deviations import store, window_exceptions_store
from trialcoord.deviations.records import MANUAL, Deviation, as_deviation, as_exception, audited, now, record_id_of
from trialcoord.deviations.rules.deviation_review import State, classification_problems
from trialcoord.deviations.rules.deviations import Classification, WindowException
from trialcoord.deviations.rules.window_extensions import extension_problems
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import InvalidInput, NotFound, Problem
from trialcoord.scheduling import lookups, participants, protocols


@dataclass(frozen=True, slots=True)
class ApprovedException:
    """An investigator's approved window extension of one participant's visit, as recorded."""

    subject_id: str
    site: str
    visit: str
    earlier_days: int
    later_days: int
    approved_on: date
    approved_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class StoredException:
    """A window exception as stored (`approved_on` an ISO date, `recorded_at` an audit instant)."""

    participant: int
    subject_id: str
    site: str
    visit: str
    earlier_days: int
    later_days: int
    approved_on: str
    approved_by: str
    reason: str
    recorded_at: str


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
) -> Deviation:
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
        study_id = (await protocols.require_study(study)).id
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
        if row is None:  # inserted just now, in this transaction
            raise AssertionError(f"deviation {deviation_id} is not found right after its insertion")
        await audit_log.record(actor, Change("create", "deviation", record_id_of(study, row), None, audited(row)))
    return as_deviation(row)


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
) -> ApprovedException:
    """An investigator-approved window extension of one visit. It prevents the early or late deviation of that
    visit only if approved and recorded on or before the day it took place (later, it explains but does not
    prevent)."""
    problems = extension_problems(earlier_days, later_days, reason)
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
        await window_exceptions_store.insert_exception(
            person["id"], visit, earlier_days, later_days, approved_on.isoformat(), actor, reason.strip(), at
        )
        record: dict[str, Any] = {  # the audit entry's payload
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
    return ApprovedException(
        subject_id, person["site"], visit, earlier_days, later_days, approved_on, actor, reason.strip()
    )


async def exceptions_of(study: str) -> list[StoredException]:
    """The study's approved window exceptions as stored."""
    async with read():
        study_id = (await protocols.require_study(study)).id
        rows = await window_exceptions_store.exceptions(study_id, None)
    return [StoredException(**row) for row in rows]


async def window_exceptions(study: str) -> dict[str, list[WindowException]]:
    """The study's approved window exceptions, by subject ID, as the rules take them."""
    async with read():
        study_id = (await protocols.require_study(study)).id
        rows = await window_exceptions_store.exceptions(study_id, None)
    found: dict[str, list[WindowException]] = defaultdict(list)
    for row in rows:
        found[row["subject_id"]].append(as_exception(row))
    return found
