"""Use cases of stored schedules: evaluating participants across the protocol versions they followed, with their
site's calendar (`Versions`), storing the visit rows (`refresh_participants`, `persist_schedules`), keeping
open-ended repeats listed (`refresh_study`), and a stored visit as of a day (`restated`, `ScheduledVisit`).

Studies and participants are named by their codes. Each write runs in one transaction, then
re-evaluates the participant with the pure engine (`evaluate_judged`, as of `today`, 60 days ahead,
across the protocol versions the participant followed and with the calendar of its site) and stores the
result in the same transaction, each visit under the version that judged it. Each read runs on one
connection (`protocols.reads`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import NamedTuple

from trialcoord.kernel.database.engine import transaction
from trialcoord.kernel.problems import NotFound, invalid
from trialcoord.scheduling.calendars import CalendarError, Closure, site_calendar
from trialcoord.scheduling.protocols import protocol_of, require_study
from trialcoord.scheduling.rules.protocol import Protocol
from trialcoord.scheduling.rules.schedule import (
    DUE,
    MISSED,
    UPCOMING,
    VisitOccurrence,
    classify,
    evaluate,
    evaluate_judged,
)
from trialcoord.scheduling.store import inputs as inputs_store
from trialcoord.scheduling.store import participants as participants_store
from trialcoord.scheduling.store import sites as sites_store
from trialcoord.scheduling.store import studies as studies_store
from trialcoord.scheduling.store import visits as visits_store
from trialcoord.scheduling.store.inputs import ScheduleInputs
from trialcoord.scheduling.store.visits import Saved, StoredVisit

HORIZON_DAYS = 60  # stored schedules list open-ended repeats this far past today
ACTIVE, ENDED = "active", "ended"


class ScheduledVisit(NamedTuple):  # not a frozen dataclass: a worklist builds tens of thousands (5x faster)
    """One visit occurrence of a participant with what coordinators recorded about it."""

    subject_id: str
    site: str
    visit: VisitOccurrence
    protocol_version: str | None = None
    appointment: date | None = None
    appointment_reason: str | None = None
    actual_reason: str | None = None
    missed_reason: str | None = None
    row_version: int | None = None  # None: not stored (yet), such as a repeat beyond the horizon
    extension: tuple[int, int] | None = None  # an investigator's approved extension: days earlier, days later
    updated_at: datetime | None = None  # when the stored row last changed, where the read asked for it

    @property
    def extended_window(self) -> tuple[date | None, date | None] | None:
        """The window widened by the approved extension (None: not extended)."""
        if self.extension is None or self.visit.target is None:
            return None
        return widened(self.visit.earliest, self.visit.latest, self.extension)

    def as_dict(self) -> dict:
        """Flat, for JSON and CSV: the occurrence's fields next to the recorded ones."""
        recorded = {name: getattr(self, name) for name in self._fields if name not in ("visit", "updated_at")}
        return {**visits_store.occurrence_fields(self.visit), **recorded}


def widened(
    earliest: date | None, latest: date | None, extension: tuple[int, int] | None
) -> tuple[date | None, date | None]:
    """A window with an approved extension's days added before and after it (an open end stays open)."""
    if extension is None:
        return earliest, latest
    earlier, later = extension
    return (
        earliest - timedelta(days=earlier) if earliest is not None else None,
        latest + timedelta(days=later) if latest is not None else None,
    )


async def refresh_study(study: str, as_of: date, today: date) -> list[str]:
    """Re-evaluate, and store, the participants of a study whose stored schedule ends before `as_of` + the
    horizon (inside the caller's transaction), so that open-ended repeats stay listed however long nothing
    changes for a participant; `detection.refresh_schedules` runs it with detection. Idempotent: run again
    with the same date, it re-evaluates nobody. Returns their subject IDs."""
    if as_of > today:
        raise invalid(
            f"{as_of} is still to come: schedules are refreshed as of today ({today}) or an earlier day", field="as_of"
        )
    horizon = as_of + timedelta(days=HORIZON_DAYS)
    study_row = await require_study(study)
    await participants_store.lock_participants(study_row.id)
    stale = [
        p for p in (await inputs_store.load_inputs(study_row.id)).values() if p.horizon is None or p.horizon < horizon
    ]
    if stale:
        await refresh_participants(study_row.id, inputs=stale, today=today, as_of=as_of)
    return sorted(p.subject_id for p in stale)


_MOVING = frozenset({UPCOMING, DUE, MISSED})  # of a visit not done, not marked missed


def restated(row: StoredVisit, as_of: date) -> VisitOccurrence:
    """A stored visit's status as of `as_of`: only the statuses that move with the calendar change."""
    if row.status in _MOVING and row.actual is None and not row.missed_reason:
        status, _ = classify(row.target, row.earliest, row.latest, None, as_of, row.optional)
        if status != row.status:
            return row.evaluation._replace(status=status)
    return row.evaluation


async def persist_schedules(
    study: str, rows: Iterable[tuple[str, VisitOccurrence]], evaluated_on: date | None = None
) -> Saved:
    """Bulk-store evaluated visits given as (subject_id, occurrence), as `study_visits` returns them."""
    evaluated_on = evaluated_on or date.today()
    async with transaction(f"study {study}"):
        study_row = await require_study(study)
        await participants_store.lock_participants(study_row.id)
        people = {person.subject_id: person for person in (await inputs_store.load_inputs(study_row.id)).values()}
        grouped: dict[str, list[VisitOccurrence]] = {}
        for subject_id, visit in rows:
            if subject_id not in people:
                raise NotFound(f"study {study} has no participant {subject_id}")
            grouped.setdefault(subject_id, []).append(visit)
        versions = await Versions.load(study_row.id)
        results = []
        for subject_id, visits in grouped.items():
            person = people[subject_id]
            judged = (
                {row.visit: version for row, version in await versions.judged(person, evaluated_on)}
                if person.changes
                else {}
            )  # which version judges each visit, when more than one could
            results.append((person, [(visit, judged.get(visit.visit, person.version_id)) for visit in visits]))
        return await visits_store.save_evaluations(results, evaluated_on)


async def refresh_participants(
    study_id: int,
    participant_id: int | None = None,
    inputs: Iterable[ScheduleInputs] | None = None,
    today: date | None = None,
    as_of: date | None = None,
) -> Saved:
    """Re-evaluate participants as of `as_of` (default today) and store their visits (inside the caller's
    transaction); the rows that change are marked evaluated today.

    Evaluates the given inputs, else those of one participant, else the whole study.
    """
    today = today or date.today()
    as_of = as_of or today
    if inputs is None:
        inputs = (await inputs_store.load_inputs(study_id, participant_id)).values()
    versions = await Versions.load(study_id)
    people, saved = list(inputs), visits_store.Saved(0, 0, 0)
    for start in range(0, len(people), _REFRESH_BATCH):  # evaluated and stored a batch at a time: bounded memory
        results = []
        for person in people[start : start + _REFRESH_BATCH]:
            results.append((person, await versions.judged(person, as_of, HORIZON_DAYS)))
            protocol = await versions.protocol(person.version_id)
            status = (
                ENDED
                if any(protocol.events[name].ends_schedule for name in person.events if name in protocol.events)
                else ACTIVE
            )
            if status != person.status:
                await participants_store.update_participant(person.id, status=status)
                person.status = status
        batch = await visits_store.save_evaluations(results, today, horizon=as_of + timedelta(days=HORIZON_DAYS))
        saved = visits_store.Saved(
            saved.inserted + batch.inserted, saved.updated + batch.updated, saved.deleted + batch.deleted
        )
    return saved


_REFRESH_BATCH = 2_000


class Versions:
    """A study's protocol versions and its sites' calendars, read once per use case: the protocol each
    participant follows, with its site's calendar for business days, and evaluation across versions."""

    def __init__(self, rows: Iterable[dict], calendars: dict[str, tuple[str | None, tuple[Closure, ...]]]):
        self.rows = {row["id"]: row for row in rows}
        self.calendars = calendars

    @classmethod
    async def load(cls, study_id: int) -> Versions:
        return cls(await studies_store.list_versions(study_id), await sites_store.site_calendars(study_id))

    def label(self, version_id: int) -> str:
        return self.rows[version_id]["version"]

    async def protocol(self, version_id: int, site: str | None = None) -> Protocol:
        """The stored version, with the calendar of `site` when it has one (or closures)."""
        row = self.rows[version_id]
        protocol = await protocol_of(version_id, row["sha256"])
        spec = self.calendars.get(site) if site is not None else None
        if spec is None:
            return protocol
        try:
            return with_site_calendar(protocol, row["sha256"], spec)
        except CalendarError as error:  # stored before names were checked, or a library that changed
            raise invalid(
                f"site {site}: its stored calendar is not usable ({error}); set it again with trialcoord site calendar",
                field="calendar",
            ) from None

    async def judged(
        self, person: ScheduleInputs, as_of: date, horizon_days: int = 0
    ) -> list[tuple[VisitOccurrence, int]]:
        """The participant's visits as of `as_of`, each with the id of the version that judges it."""
        ids = person.versions
        first = await self.protocol(ids[0], person.site)
        changes = [(effective, await self.protocol(version, person.site)) for effective, version in person.changes]
        if not changes:
            return [
                (visit, ids[0])
                for visit in evaluate(
                    first,
                    person.events,
                    person.actuals,
                    as_of,
                    arm=person.arm,
                    horizon_days=horizon_days,
                    marked_missed=person.marked_missed,
                )
            ]
        return [
            (visit, ids[index])
            for visit, index in evaluate_judged(
                first,
                person.events,
                person.actuals,
                as_of,
                arm=person.arm,
                horizon_days=horizon_days,
                marked_missed=person.marked_missed,
                changes=changes,
            )
        ]


_variants: dict[tuple[str, str | None, tuple[Closure, ...]], Protocol] = {}  # by source sha256 and site calendar


def with_site_calendar(protocol: Protocol, sha256: str, spec: tuple[str | None, tuple[Closure, ...]]) -> Protocol:
    """The protocol with a site's calendar (its own, else the protocol's, plus its closures) for `bd` units."""
    key = (sha256, *spec)
    variant = _variants.get(key)
    if variant is None:
        calendar = site_calendar(spec[0], spec[1], protocol.calendar)
        variant = protocol if calendar is protocol.calendar else replace(protocol, calendar=calendar)
        if len(_variants) >= 1000:  # bounded: closures come and go
            _variants.clear()
        _variants[key] = variant
    return variant


def scheduled(row: StoredVisit, visit: VisitOccurrence | None = None) -> ScheduledVisit:
    # Positional: a worklist calls this per row.
    return ScheduledVisit(
        row.subject_id,
        row.site,
        visit or row.evaluation,
        row.version,
        row.appointment,
        row.appointment_reason,
        row.actual_reason,
        row.missed_reason,
        row.row_version,
        None,
        row.updated_at,
    )
