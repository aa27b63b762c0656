"""Pages: one participant's schedule, timeline and the forms that record what happened."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date
from typing import Any, Literal, TypeVar

from litestar import Controller, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from trialcoord.amendments import applying
from trialcoord.documents import participant_consents
from trialcoord.documents.rules.consent import SIGNATURE_BLOCKS
from trialcoord.kernel.problems import Conflict, InvalidInput, NotConfigured
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader, participant_url
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
from trialcoord.scheduling import identities, participants, protocols, visits, worklists
from trialcoord.scheduling.timeline import build_timeline
from trialcoord.scheduling.visit_rows import visit_row

VisitAction = Literal["actual", "appointment", "missed"]
T = TypeVar("T")
NOTICES = {
    "identity": "Personal data saved.",
    "consent": "Consent recorded.",
    "event": "Event recorded.",
    "arm": "Arm assigned.",
    "actual": "Visit date recorded.",
    "appointment": "Appointment booked.",
    "missed": "Visit marked as missed.",
    "version": "Protocol version changed.",
}
PATH = "/studies/{study:str}/participants/{subject_id:str}"
VIEW, ENROL, RECORD = needs(Action.VIEW_SCHEDULE), needs(Action.ENROLL_PARTICIPANT), needs(Action.RECORD_VISIT)


class ParticipantPages(Controller):
    path = PATH
    include_in_schema = False

    @get("/", opt=VIEW)
    async def participant(
        self,
        study: StudyPath,
        subject_id: SubjectPath,
        today: Today,
        access: AccessDep,
        as_of: AsOf = None,
        saved: QueryStr = None,
    ) -> Template:
        context = await participant_context(study, subject_id, as_of_or_today(as_of, today), access, today)
        context["notice"] = NOTICES.get(saved or "")
        return Template("participant.html", context=context)

    @post("/events", opt=RECORD)
    async def record_event(
        self, study: StudyPath, subject_id: SubjectPath, data: Form, today: Today, access: AccessDep
    ) -> Template | Redirect:
        form = FormReader(data)
        event = form.text("event", "event", choice=True)
        day = form.date("date", "event date")
        reason = form.text("reason", "reason", required=False)
        if not form.errors:
            call = visits.record_event(
                study, subject_id, required(event), required(day), reason, today=today, actor=access.user_id
            )
            return await _save(call, study, subject_id, today, "event", form, access)
        return await _rerender(study, subject_id, today, "event", form.errors, form, access)

    @post("/arm", opt=needs(Action.ASSIGN_ARM))
    async def assign_arm(
        self, study: StudyPath, subject_id: SubjectPath, data: Form, today: Today, access: AccessDep
    ) -> Template | Redirect:
        form = FormReader(data)
        arm = form.text("arm", "arm", choice=True)
        if not form.errors:
            allocation = await participants.allocation_scope(study, access.signed_in.grants, today)
            call = participants.assign_arm(
                study, subject_id, required(arm), today=today, actor=access.user_id, allocation=allocation
            )
            return await _save(call, study, subject_id, today, "arm", form, access)
        return await _rerender(study, subject_id, today, "arm", form.errors, form, access)

    @post("/protocol-version", opt=ENROL)
    async def change_protocol_version(
        self, study: StudyPath, subject_id: SubjectPath, data: Form, today: Today, access: AccessDep
    ) -> Template | Redirect:
        form = FormReader(data)
        version = form.text("version", "protocol version", choice=True)
        effective = form.date("effective", "date the change takes effect")
        reason = form.text("reason", "reason")
        if not form.errors:
            call = applying.change_version(
                study,
                subject_id,
                required(version),
                required(effective),
                required(reason),
                today=today,
                actor=access.user_id,
                confirm_downgrade=bool(form.data.get("confirm_downgrade")),  # a checkbox: sent only when ticked
            )
            return await _save(call, study, subject_id, today, "version", form, access)
        return await _rerender(study, subject_id, today, "version", form.errors, form, access)

    @post("/identity", opt=needs(Action.VIEW_PERSONAL_DATA, Action.ENROLL_PARTICIPANT))
    async def set_identity(
        self, study: StudyPath, subject_id: SubjectPath, data: Form, today: Today, access: AccessDep
    ) -> Template | Redirect:
        form = FormReader(data)
        values: dict[str, str | None] = {name: form.data.get(name, "") for name in identities.FIELDS}
        call = identities.set_identity(study, subject_id, values, actor=access.user_id, today=today)
        return await _save(call, study, subject_id, today, "identity", form, access)

    @post("/consents", opt=ENROL)
    async def record_consent(
        self, study: StudyPath, subject_id: SubjectPath, data: Form, today: Today, access: AccessDep
    ) -> Template | Redirect:
        form = FormReader(data)
        version = form.text("version", "consent version", choice=True)
        signed_on = form.date("signed_on", "date signed")
        obtained_by = form.text("obtained_by", "person who obtained consent")
        if form.errors:
            return await _rerender(study, subject_id, today, "consent", form.errors, form, access)
        signed_on, obtained_by = required(signed_on), required(obtained_by)
        signed_by = tuple(block for block in SIGNATURE_BLOCKS if data.get(f"signed_{block}"))
        if version == "paper":
            call = participant_consents.record_paper_consent(
                study,
                subject_id,
                signed_on,
                form.data.get("paper_reference", ""),
                obtained_by,
                today,
                actor=access.user_id,
                label=form.text("paper_label", "version printed", required=False),
                signed_by=signed_by,
            )
        else:
            language, _, label = (version or "").partition(":")
            call = participant_consents.record_consent(
                study,
                subject_id,
                language,
                label,
                signed_on,
                obtained_by,
                today,
                actor=access.user_id,
                signed_by=signed_by,
            )
        return await _save(call, study, subject_id, today, "consent", form, access)

    @post("/visits/{code:str}/{action:str}", opt=RECORD)
    async def visit(
        self,
        study: StudyPath,
        subject_id: SubjectPath,
        code: VisitPath,
        action: FromPath[VisitAction],
        data: Form,
        today: Today,
        access: AccessDep,
    ) -> Template | Redirect:
        form = FormReader(data)
        day = form.date("date", "date") if action != "missed" else None
        reason = form.text("reason", "reason", required=action == "missed")
        row_version = form.integer("row_version")
        key = f"{action}:{code}"
        if form.errors:
            return await _rerender(study, subject_id, today, key, form.errors, form, access)
        actor = access.user_id
        if action == "actual":
            call = visits.record_visit(
                study, subject_id, code, required(day), row_version, reason, today=today, actor=actor
            )
        elif action == "appointment":
            call = visits.book_appointment(
                study, subject_id, code, required(day), reason, row_version, today=today, actor=actor
            )
        else:
            call = visits.mark_missed(study, subject_id, code, required(reason), row_version, today=today, actor=actor)
        return await _save(call, study, subject_id, today, key, form, access)


def _day(consent_form: dict[str, str]) -> date | None:
    """The day a consent form was signed, as typed: the versions offered are those in force then."""
    try:
        return date.fromisoformat(consent_form.get("signed_on", ""))
    except ValueError:
        return None


def required(value: T | None) -> T:
    """A value the form required: when it was missing, FormReader recorded an error and the handler stopped."""
    if value is None:
        raise AssertionError("a required form value passed the form's checks empty")
    return value


async def _save(
    call: Awaitable[object], study: str, subject_id: str, today: date, key: str, form: FormReader, access: Access
) -> Template | Redirect:
    """Post/redirect/get on success; on a problem, the page again with the message by the field."""
    try:
        await call
    except (InvalidInput, Conflict) as error:
        return await _rerender(study, subject_id, today, key, field_messages(error), form, access)
    return Redirect(participant_url(study, subject_id, saved=key.partition(":")[0]), status_code=303)


async def _rerender(
    study: str, subject_id: str, today: date, key: str, errors: dict[str, str], form: FormReader, access: Access
) -> Template:
    if key == "consent":  # the consent version the use case calls `label` is this form's `version`
        errors = {("version" if field == "label" else field): message for field, message in errors.items()}
    context = await participant_context(
        study, subject_id, today, access, today, failed={"key": key, "errors": errors, "form": form.data}
    )
    return Template("participant.html", context=context, status_code=422)


async def participant_context(
    study: str, subject_id: str, as_of: date, access: Access, today: date, failed: dict[str, Any] | None = None
) -> dict[str, Any]:
    allocation = await participants.allocation_scope(study, access.signed_in.grants, today)
    participant = participants.masked(await participants.get_participant(study, subject_id), allocation)
    site = participant.site
    may = {
        action: access.may(action, study, site, today)
        for action in (
            Action.RECORD_VISIT,
            Action.ENROLL_PARTICIPANT,
            Action.ASSIGN_ARM,
            Action.VIEW_PERSONAL_DATA,
            Action.VIEW_AUDIT,
            Action.EXPORT,
        )
    }
    consent_form = (failed or {}).get("form", {}) if (failed or {}).get("key") == "consent" else {}
    consents, offered = await participant_consents.of_participant(study, subject_id, _day(consent_form) or today)
    if not offered and _day(consent_form):  # none in force on the day typed: the form stays, with today's
        _, offered = await participant_consents.of_participant(study, subject_id, today)
    identity, identity_error = None, None
    if may[Action.VIEW_PERSONAL_DATA]:
        try:
            identity = await identities.get_identity(study, subject_id)
        except NotConfigured as error:
            identity_error = str(error)
    protocol = await protocols.get_protocol(study, participant.protocol_version)
    rows = [visit_row(row) for row in await worklists.participant_schedule(study, subject_id, as_of)]
    versions = [row.version for row in await protocols.list_protocol_versions(study)]
    return {
        "study": study,
        "participant": participant,
        "arms": [(arm.code, f"{arm.code} – {arm.name}") for arm in protocol.arms],
        "events": [(name, name.replace("_", " ")) for name in protocol.events],
        "other_versions": [(v, f"version {v}") for v in versions if v != participant.protocol_version],
        "rows": rows,
        "timeline": build_timeline(rows, as_of),
        "as_of": as_of,
        "failed": failed or {"key": "", "errors": {}, "form": {}},
        "can_record": may[Action.RECORD_VISIT],
        "can_enrol": may[Action.ENROLL_PARTICIPANT],
        "sees_arm": allocation.includes(site),
        "can_assign_arm": may[Action.ASSIGN_ARM] and allocation.includes(site),
        "can_audit": may[Action.VIEW_AUDIT],
        "can_subscribe": may[Action.EXPORT],  # a calendar feed of the participant
        "identity": identity,
        "consents": consents,
        "consent_options": [
            (f"{v.language}:{v.label}", f"{v.label} ({v.language}), effective {v.effective_on}") for v in offered
        ],
        "viewer_id": access.user_id,
        "identity_error": identity_error,
        "identity_labels": identities.LABELS,
        "notice": None,
    }
