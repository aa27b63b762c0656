"""Use cases of participants: enrolment (under the version in effect on the day, at a site), arms, reading them,
the participant a use case works on (`Subject`), and how the audit trail names a participant's records.

In a blinded study (`blinding: single|double`) the arm is the allocation: `allocation_scope` says whose arms a
viewer may see, `masked` hides the rest, and enrolling with an arm or assigning one is refused to a viewer who may
not see the arm of that site (docs/access-control.md, "Blinding").

Participants are named by their study's code and their subject ID; see `schedules` for how a write stores the
schedules it changes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, TypeVar

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import Conflict, Forbidden, NotFound, invalid
from trialcoord.kernel.rules.access import Grant, SiteScope, allocation_sites
from trialcoord.scheduling.protocols import (
    StoredVersion,
    pick_version,
    protocol_of,
    reads,
    require_study,
    study_blinding,
)
from trialcoord.scheduling.rules.facts import check_happened
from trialcoord.scheduling.rules.protocol import Protocol
from trialcoord.scheduling.schedules import ACTIVE, ENDED, refresh_participants
from trialcoord.scheduling.sites import check_code, study_with_site
from trialcoord.scheduling.store import SortKey
from trialcoord.scheduling.store import participants as participants_store
from trialcoord.scheduling.store import sites as sites_store
from trialcoord.scheduling.store import studies as studies_store
from trialcoord.scheduling.store.inputs import ScheduleInputs
from trialcoord.scheduling.store.visits import StoredVisit


@dataclass(frozen=True, slots=True)
class ParticipantSummary:
    study: str
    subject_id: str
    site: str
    arm: str | None
    protocol_version: str  # the label of the version followed
    status: str
    enrolled_on: date


@dataclass(frozen=True, slots=True)
class ParticipantDetails(ParticipantSummary):
    events: dict[str, date]  # recorded events, in date order


@dataclass(frozen=True, slots=True)
class SubjectRecord:
    """A participant as stored, with its study's id, site code, protocol version and recorded events."""

    study: str
    study_id: int
    id: int
    subject_id: str
    site: str
    arm: str | None
    status: str
    enrolled_on: date
    protocol_version: int  # the id of the version followed
    version: str  # its label
    sha256: str
    schedule_horizon: date | None
    events: dict[str, date]

    def summary(self) -> ParticipantSummary:
        return ParticipantSummary(
            self.study, self.subject_id, self.site, self.arm, self.version, self.status, self.enrolled_on
        )


_Shown = TypeVar("_Shown", bound=ParticipantSummary)


async def allocation_scope(study: str, grants: Iterable[Grant], today: date) -> SiteScope:
    """The sites of `study` whose participants' arms the holder of `grants` may see: every site of an open-label
    study; in a blinded one, the sites where a grant in force holds `view_allocation`."""
    return allocation_sites(grants, await study_blinding(study), study, today)


def masked(participant: _Shown, allocation: SiteScope) -> _Shown:
    """The participant as a viewer who may see the arms of `allocation`'s sites sees it: no arm elsewhere."""
    return participant if allocation.includes(participant.site) else replace(participant, arm=None)


def _refuse_blinded_arm(study: str, site: str, allocation: SiteScope | None) -> None:
    if allocation is not None and not allocation.includes(site):
        raise Forbidden(
            f"study {study} is blinded: only a role with view_allocation at site {site} (an unblinded pharmacist"
            " or an administrator) records a participant's arm"
        )


async def enroll_participant(
    study: str,
    subject_id: str,
    site: str,
    arm: str | None = None,
    version: str | None = None,
    enrolled_on: date | None = None,
    today: date | None = None,
    actor: str = SYSTEM,
    allocation: SiteScope | None = None,
) -> ParticipantSummary:
    """Enrol under `version`, by default the latest version in effect on the enrolment date. `allocation`: the
    sites whose arms the person enrolling may see (`allocation_scope`; None: a trusted caller such as the command
    line); an arm for a site outside it is refused. An enrolment is a fact: never on a day after `today`."""
    if arm is not None:
        _refuse_blinded_arm(study, site, allocation)
    today = today or date.today()
    enrolled_on = enrolled_on or today
    subject_id = subject_id.strip()
    if not subject_id:
        raise invalid(f"study {study}: a participant needs a subject ID", field="subject_id")
    check_code(subject_id, f"study {study}: subject ID", "subject_id")
    check_happened(f"study {study}, participant {subject_id}: enrolment", enrolled_on, today, "enrolled_on")
    async with transaction(f"study {study}, participant {subject_id}"):
        study_row = await require_study(study)
        versions = await studies_store.list_versions(study_row.id)
        version_row = enrolment_version(study, versions, version, enrolled_on)
        protocol = await protocol_of(version_row.id, version_row.sha256)
        site_row = await _site_for_enrolment(study, study_row.id, site)
        _check_arm(study, subject_id, protocol, arm)
        if (await _subject_row(study, subject_id, missing_ok=True))["id"] is not None:
            raise Conflict(f"study {study} already has participant {subject_id}")
        await participants_store.insert_participants(
            study_row.id, [(subject_id, site_row["id"], arm, version_row.id, enrolled_on)]
        )
        row = await subject_row(study, subject_id)
        await refresh_participants(study_row.id, row.id, today=today)
        await audit_log.record(
            actor,
            Change(
                "create",
                "participant",
                record_id(study, site_row["code"], subject_id),
                None,
                {
                    "site": site_row["code"],
                    "arm": arm,
                    "protocol_version": version_row.version,
                    "enrolled_on": enrolled_on,
                },
            ),
        )
    return row.summary()


@reads
async def list_participants(study: str, site: str | None = None) -> list[ParticipantSummary]:
    rows = await participants_store.list_participants((await require_study(study)).id, site)
    return [participant_summary(study, row) for row in rows]


_PARTICIPANT = (SortKey("p.subject_id"), SortKey("p.id", "int"))
# The participants page's orders, each ending in the participant's id (unique). Not by arm: in a blinded study
# the order would tell the arms of the rows it hides.
PARTICIPANT_SORTS: dict[str, tuple[SortKey, ...]] = {
    "participant": _PARTICIPANT,
    "site": (SortKey("s.code"), *_PARTICIPANT),
    "version": (SortKey("pv.version"), *_PARTICIPANT),
    "status": (SortKey("p.status"), *_PARTICIPANT),
    "enrolled": (SortKey("p.enrolled_on", "date"), *_PARTICIPANT),
}
PARTICIPANT_STATUSES = (ACTIVE, ENDED)


@reads
async def participants_page(
    study: str,
    site: str | None = None,
    within: Collection[str] | None = None,
    status: str | None = None,
    text: str | None = None,
    sort: str = "participant",
    descending: bool = False,
    after: Sequence[Any] | None = None,
    limit: int = 51,
) -> list[tuple[tuple[Any, ...], ParticipantSummary]]:
    """Up to `limit` participants past `after`, the key of the last one shown, in the order `sort`
    (`PARTICIPANT_SORTS`): at `site`, among the sites `within` (None: every site), of `status`, whose subject ID
    holds `text`. Each with its key."""
    if status and status not in PARTICIPANT_STATUSES:
        raise invalid(f"'{status}' is not a participant status; choose {' or '.join(PARTICIPANT_STATUSES)}", "status")
    study_row = await study_with_site(study, site)
    rows = await participants_store.participants_page(
        study_row.id, narrowed(site, within), status, text, sort_keys(PARTICIPANT_SORTS, sort), descending, after, limit
    )
    return [(key, participant_summary(study, row)) for key, row in rows]


def narrowed(site: str | None, within: Collection[str] | None) -> Collection[str] | None:
    """The sites a list shows: the one chosen, if the viewer's (`within`; None: every site), else theirs."""
    if site is None:
        return within
    return {site} if within is None or site in within else set()


def sort_keys(sorts: dict[str, tuple[SortKey, ...]], name: str) -> tuple[SortKey, ...]:
    if name not in sorts:
        raise invalid(f"'{name}' is not a column this list sorts by; choose one of {', '.join(sorts)}", field="sort")
    return sorts[name]


@reads
async def get_participant(study: str, subject_id: str) -> ParticipantDetails:
    """The participant with the events recorded so far, in date order."""
    row = await subject_row(study, subject_id)
    events = dict(sorted(row.events.items(), key=lambda item: (item[1], item[0])))
    return ParticipantDetails(
        study, row.subject_id, row.site, row.arm, row.version, row.status, row.enrolled_on, events
    )


async def assign_arm(
    study: str,
    subject_id: str,
    arm: str,
    today: date | None = None,
    actor: str = SYSTEM,
    allocation: SiteScope | None = None,
) -> ParticipantSummary:
    """Record the participant's arm, once. `allocation` as for `enroll_participant`: refused (before anything about
    the participant's current arm is said) when the participant's site is outside it."""
    async with transaction(f"study {study}, participant {subject_id}"):
        subject = await Subject.load(study, subject_id)
        _refuse_blinded_arm(study, subject.inputs.site, allocation)
        _check_arm(study, subject_id, subject.protocol, arm)
        current = subject.inputs.arm
        if current not in (None, arm):
            raise Conflict(f"{subject} is already assigned to arm {current}")
        if current is None:
            await participants_store.update_participant(subject.id, arm=arm)
            subject.inputs.arm = arm
            await subject.refresh(today)
            await audit_log.record(
                actor, Change("update", "participant", subject.record_id(), {"arm": None}, {"arm": arm})
            )
        row = await subject_row(study, subject_id)
    return row.summary()


class Subject:
    """A participant being worked on: its row, engine inputs, stored visits (by code) and protocol."""

    def __init__(
        self,
        study: str,
        row: dict[str, Any],
        inputs: ScheduleInputs,
        visits: dict[str, StoredVisit],
        protocol: Protocol,
    ):
        self.study, self.row, self.inputs, self.visits, self.protocol = study, row, inputs, visits, protocol
        self.id, self.study_id, self.version = row["id"], row["study_id"], row["version"]

    @classmethod
    async def load(cls, study: str, subject_id: str, lock: bool = True) -> Subject:
        """In two queries (three when locking on PostgreSQL)."""
        if lock:
            await participants_store.lock_subject(study, subject_id)
        row = await _subject_row(study, subject_id)
        inputs, visits = await participants_store.subject_inputs(row)
        return cls(study, row, inputs, visits, await protocol_of(row["protocol_version"], row["sha256"]))

    async def refresh(self, today: date | None) -> None:
        await refresh_participants(self.study_id, inputs=[self.inputs], today=today)

    def scheduled_visit(self, code: str) -> StoredVisit:
        row = self.visits.get(code)
        if row is None:
            codes = ", ".join(sorted(self.visits))
            raise NotFound(f"{self}: visit {code} is not in the schedule; scheduled visits: {codes}")
        return row

    def record_id(self, *more: str) -> str:
        return record_id(self.study, self.row["site"], self.row["subject_id"], *more)

    def __str__(self) -> str:
        return f"study {self.study}, participant {self.row['subject_id']}"


def record_id(study: str, site: str, subject_id: str, *more: str) -> str:
    """How the audit trail names a participant's records: `STUDY/SITE/SUBJECT[/EVENT or VISIT]`, so a
    study's or a site's entries share a prefix."""
    return "/".join((study, site, subject_id, *more))


async def participant_site(study: str, subject_id: str) -> str | None:
    """The site code of a participant, None when the study or participant does not exist."""
    async with read():
        return await participants_store.site_of_subject(study, subject_id)


class ParticipantSites:
    """Participants' sites as the web guard asks for them, on every request that names a participant: cached,
    since a participant never changes site. One per app (`create_app` makes it), so a second app or a test's
    database never sees another's answers."""

    LIMIT = 100_000  # bounded: a long-running server sees every participant eventually

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], str] = {}

    async def __call__(self, study: str, subject_id: str) -> str | None:
        site = self._known.get((study, subject_id))
        if site is None:
            site = await participant_site(study, subject_id)
            if site is not None:
                if len(self._known) >= self.LIMIT:
                    self._known.clear()
                self._known[(study, subject_id)] = site
        return site


async def subject_row(study: str, subject_id: str) -> SubjectRecord:
    """The participant with its study's id (see `participants_store.find_subject`)."""
    row = await _subject_row(study, subject_id)
    return SubjectRecord(
        study,
        row["study_id"],
        row["id"],
        row["subject_id"],
        row["site"],
        row["arm"],
        row["status"],
        row["enrolled_on"],
        row["protocol_version"],
        row["version"],
        row["sha256"],
        row["schedule_horizon"],
        row["events"],
    )


async def _subject_row(study: str, subject_id: str, missing_ok: bool = False) -> dict[str, Any]:
    """The store's row (`id` None when the study has no such participant and `missing_ok`)."""
    row = await participants_store.find_subject(study, subject_id)
    if row is None:
        raise NotFound(f"study {study} does not exist")
    if row["id"] is None and not missing_ok:
        raise NotFound(f"study {study} has no participant {subject_id}")
    return row


def enrolment_version(study: str, rows: list[dict[str, Any]], version: str | None, enrolled_on: date) -> StoredVersion:
    """The named version, else the latest in effect on the enrolment date, else the latest."""
    if not rows:
        raise invalid(f"study {study} has no protocol version loaded", field="version")
    if version is not None:
        try:
            return pick_version(study, rows, version)
        except NotFound as exc:
            raise invalid(str(exc), field="version") from None
    in_effect = [row for row in rows if row["effective"] <= enrolled_on]
    return StoredVersion.of((in_effect or rows)[-1])


async def _site_for_enrolment(study: str, study_id: int, code: str) -> dict[str, Any]:
    row = await sites_store.find_site(study_id, code)
    if row is None:
        known = ", ".join(site["code"] for site in await sites_store.list_sites(study_id)) or "none yet"
        raise invalid(f"study {study} has no site {code}; sites: {known}", field="site")
    return row


def _check_arm(study: str, subject_id: str, protocol: Protocol, arm: str | None) -> None:
    if arm is not None and arm not in protocol.arm_codes:
        known = ", ".join(sorted(protocol.arm_codes)) or "none (the protocol has no arms)"
        raise invalid(
            f"study {study}, participant {subject_id}: '{arm}' is not an arm of protocol version"
            f" {protocol.version}; arms: {known}",
            field="arm",
        )


def participant_summary(study: str, row: dict[str, Any]) -> ParticipantSummary:
    """A participant from a row of `participants_store.list_participants`."""
    return ParticipantSummary(
        study, row["subject_id"], row["site"], row["arm"], row["version"], row["status"], row["enrolled_on"]
    )
