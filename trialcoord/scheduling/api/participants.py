"""Participants: enrolment, events, arm, schedule and what happened at each visit."""

from __future__ import annotations

from datetime import date

from litestar import Controller, get, post, put
from litestar.params import JSONBody

from trialcoord.kernel.problems import row_version_required
from trialcoord.kernel.rules.access import Action, SiteScope
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import (
    AccessDep,
    AsOf,
    QueryStr,
    StudyPath,
    SubjectPath,
    Today,
    VisitPath,
    as_of_or_today,
)
from trialcoord.scheduling import identities, participants, visits, worklists
from trialcoord.scheduling.schemas import (
    ArmIn,
    EnrolmentIn,
    EventIn,
    Identity,
    IdentityIn,
    MissedIn,
    Participant,
    RecordedEvent,
    VisitDateIn,
    from_record,
)
from trialcoord.scheduling.visit_rows import VisitRow, visit_row

READ = problem_responses(400, 401, 403, 404)
WRITE = problem_responses(400, 401, 403, 404, 409, 422)
VIEW, ENROL, RECORD = needs(Action.VIEW_SCHEDULE), needs(Action.ENROLL_PARTICIPANT), needs(Action.RECORD_VISIT)
ASSIGN_ARM = needs(Action.ASSIGN_ARM)


async def _allocation(study: str, access: Access, today: date) -> SiteScope:
    """Whose arms this viewer may see: a blinded study's arms only where a grant holds view_allocation."""
    return await participants.allocation_scope(study, access.signed_in.grants, today)


class ParticipantController(Controller):
    path = "/api/studies/{study:str}/participants"
    tags = ["participants"]

    @get("/", opt=needs(Action.VIEW_SCHEDULE, across_sites=True), responses=READ)
    async def list_participants(
        self, study: StudyPath, access: AccessDep, today: Today, site: QueryStr = None
    ) -> list[Participant]:
        rows = await participants.list_participants(study, site)
        allocation = await _allocation(study, access, today)
        return [
            from_record(Participant, participants.masked(row, allocation)) for row in rows if access.shows(row.site)
        ]

    @post("/", opt=needs(Action.ENROLL_PARTICIPANT, across_sites=True), responses=WRITE)
    async def enroll_participant(
        self, study: StudyPath, data: JSONBody[EnrolmentIn], today: Today, access: AccessDep
    ) -> Participant:
        access.require_site(data.site, "enrol participants")
        row = await participants.enroll_participant(
            study,
            data.subject_id,
            data.site,
            arm=data.arm,
            version=data.version,
            enrolled_on=data.enrolled_on,
            today=today,
            actor=access.user_id,
            allocation=await _allocation(study, access, today),
        )
        return from_record(Participant, row)

    @get("/{subject_id:str}", opt=VIEW, responses=READ)
    async def get_participant(
        self, study: StudyPath, subject_id: SubjectPath, today: Today, access: AccessDep
    ) -> Participant:
        row = await participants.get_participant(study, subject_id)
        return from_record(Participant, participants.masked(row, await _allocation(study, access, today)))

    @post("/{subject_id:str}/events", opt=RECORD, responses=WRITE)
    async def record_event(
        self, study: StudyPath, subject_id: SubjectPath, data: JSONBody[EventIn], today: Today, access: AccessDep
    ) -> RecordedEvent:
        row = await visits.record_event(
            study, subject_id, data.event, data.date, data.reason, today=today, actor=access.user_id
        )
        return from_record(RecordedEvent, row)

    @put("/{subject_id:str}/arm", opt=ASSIGN_ARM, responses=WRITE)
    async def assign_arm(
        self, study: StudyPath, subject_id: SubjectPath, data: JSONBody[ArmIn], today: Today, access: AccessDep
    ) -> Participant:
        """Record the arm; in a blinded study only a role with view_allocation at the site may (403 otherwise)."""
        allocation = await _allocation(study, access, today)
        row = await participants.assign_arm(
            study, subject_id, data.arm, today=today, actor=access.user_id, allocation=allocation
        )
        return from_record(Participant, row)

    @get(
        "/{subject_id:str}/identity",
        opt=needs(Action.VIEW_PERSONAL_DATA),
        responses=problem_responses(400, 401, 403, 404, 503),
    )
    async def get_identity(self, study: StudyPath, subject_id: SubjectPath) -> Identity:
        """Name, date of birth, contact details, medical record number: decrypted for this response only."""
        return from_record(Identity, await identities.get_identity(study, subject_id))

    @put(
        "/{subject_id:str}/identity",
        opt=needs(Action.VIEW_PERSONAL_DATA, Action.ENROLL_PARTICIPANT),
        responses=problem_responses(400, 401, 403, 404, 422, 503),
    )
    async def set_identity(
        self, study: StudyPath, subject_id: SubjectPath, data: JSONBody[IdentityIn], today: Today, access: AccessDep
    ) -> Identity:
        """Set or clear fields; the audit trail records which fields changed, never their values."""
        values = {name: getattr(data, name) for name in identities.FIELDS if getattr(data, name) is not None}
        await identities.set_identity(study, subject_id, values, actor=access.user_id, today=today)
        return from_record(Identity, await identities.get_identity(study, subject_id))

    @get("/{subject_id:str}/schedule", opt=VIEW, responses=READ)
    async def schedule(
        self, study: StudyPath, subject_id: SubjectPath, today: Today, as_of: AsOf = None
    ) -> list[VisitRow]:
        rows = await worklists.participant_schedule(study, subject_id, as_of_or_today(as_of, today))
        return [visit_row(row) for row in rows]

    @post("/{subject_id:str}/visits/{code:str}/actual", opt=RECORD, responses=WRITE)
    async def record_visit(
        self,
        study: StudyPath,
        subject_id: SubjectPath,
        code: VisitPath,
        data: JSONBody[VisitDateIn],
        today: Today,
        access: AccessDep,
    ) -> VisitRow:
        _check_version(data.row_version, subject_id, code)
        row = await visits.record_visit(
            study,
            subject_id,
            code,
            data.date,
            expected_row_version=data.row_version,
            reason=data.reason,
            today=today,
            actor=access.user_id,
        )
        return visit_row(row)

    @post("/{subject_id:str}/visits/{code:str}/appointment", opt=RECORD, responses=WRITE)
    async def book_appointment(
        self,
        study: StudyPath,
        subject_id: SubjectPath,
        code: VisitPath,
        data: JSONBody[VisitDateIn],
        today: Today,
        access: AccessDep,
    ) -> VisitRow:
        _check_version(data.row_version, subject_id, code)
        row = await visits.book_appointment(
            study,
            subject_id,
            code,
            data.date,
            reason=data.reason,
            expected_row_version=data.row_version,
            today=today,
            actor=access.user_id,
        )
        return visit_row(row)

    @post("/{subject_id:str}/visits/{code:str}/missed", opt=RECORD, responses=WRITE)
    async def mark_missed(
        self,
        study: StudyPath,
        subject_id: SubjectPath,
        code: VisitPath,
        data: JSONBody[MissedIn],
        today: Today,
        access: AccessDep,
    ) -> VisitRow:
        _check_version(data.row_version, subject_id, code)
        row = await visits.mark_missed(
            study,
            subject_id,
            code,
            data.reason,
            expected_row_version=data.row_version,
            today=today,
            actor=access.user_id,
        )
        return visit_row(row)


def _check_version(row_version: int | None, subject_id: str, code: str) -> None:
    if row_version is None:
        raise row_version_required(f"participant {subject_id}, visit {code}")
