"""Consent versions, participants' consents, the re-consent queue and consent deviation candidates."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody

from trialcoord.documents import consent_checks, consent_versions, participant_consents
from trialcoord.documents.rules.consent import SIGNATURE_BLOCKS
from trialcoord.kernel.problems import invalid
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import needs
from trialcoord.kernel.web.params import AccessDep, StudyPath, SubjectPath, Today
from trialcoord.kernel.web.schemas import Code

VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
Language = Annotated[str, msgspec.Meta(min_length=2, max_length=16, pattern=r"^[A-Za-z-]+$")]
DocumentName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^/\x00-\x1f\x7f]+$")]


class ConsentVersionIn(msgspec.Struct):
    site: Code
    language: Language
    label: Code
    protocol_version: Code
    document: DocumentName
    document_label: Code


class ConsentVersionOut(msgspec.Struct):
    study: str
    site: str
    language: str
    label: str
    protocol_version: str
    effective_on: date


class ConsentIn(msgspec.Struct):
    signed_on: date
    obtained_by: Code
    language: Language | None = None
    label: Code | None = None  # the registered version signed (with language); on paper, the version printed
    paper_reference: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=200,
                description="a consent signed on paper before its version was registered:"
                " the paper document's reference",
            ),
        ]
        | None
    ) = None
    signed_by: (
        Annotated[
            list[Annotated[str, msgspec.Meta(max_length=40)]],
            msgspec.Meta(
                max_length=4,
                description="signature blocks signed on the form: "
                + ", ".join(SIGNATURE_BLOCKS)
                + "; omitted: not stated (recorded as unknown)",
            ),
        ]
        | None
    ) = None


class ConsentOut(msgspec.Struct):
    subject_id: str
    site: str
    language: str | None
    label: str | None
    signed_on: date
    obtained_by: str
    signed_by: list[str]
    paper_reference: str | None = None


class ConsentIssueOut(msgspec.Struct):
    subject_id: str
    site: str
    signed_on: date
    message: str


class ReconsentOut(msgspec.Struct):
    subject_id: str
    site: str
    signed_version: str
    required_version: str
    required_since: date


class CandidateOut(msgspec.Struct):
    subject_id: str
    site: str
    visit: str
    visit_on: date
    rule: str
    consented_on: date | None
    required_since: date | None
    signed_version: str | None
    required_version: str | None


class ConsentController(Controller):
    path = "/api/studies/{study:str}"
    tags = ["consent"]

    @get("/consent-versions", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def versions(self, study: StudyPath, access: AccessDep) -> list[ConsentVersionOut]:
        return [
            msgspec.convert(v, ConsentVersionOut, from_attributes=True)
            for v in await consent_versions.list_versions(study)
            if access.shows(v.site)
        ]

    @post(
        "/consent-versions",
        opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True),
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def register(
        self, study: StudyPath, data: JSONBody[ConsentVersionIn], access: AccessDep
    ) -> ConsentVersionOut:
        """A consent version of a site, from an effective informed consent form document of that site."""
        access.require_site(data.site, "register consent versions")
        version = await consent_versions.register_version(
            study,
            data.site,
            data.language,
            data.label,
            data.protocol_version,
            data.document,
            data.document_label,
            actor=access.user_id,
        )
        return msgspec.convert(version, ConsentVersionOut, from_attributes=True)

    @post(
        "/participants/{subject_id:str}/consents",
        opt=needs(Action.ENROLL_PARTICIPANT),
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def record(
        self, study: StudyPath, subject_id: SubjectPath, data: JSONBody[ConsentIn], access: AccessDep, today: Today
    ) -> ConsentOut:
        """A participant's consent: on a registered version (language and label), or on paper before its version
        was registered (paper_reference). A first consent also records the protocol's consent event."""
        signed_by = tuple(data.signed_by) if data.signed_by is not None else None
        if data.paper_reference is not None:
            row = await participant_consents.record_paper_consent(
                study,
                subject_id,
                data.signed_on,
                data.paper_reference,
                data.obtained_by,
                today,
                actor=access.user_id,
                label=data.label,
                language=data.language,
                signed_by=signed_by,
            )
        elif data.language is None or data.label is None:
            raise invalid(
                "give the consent version signed (language and label), or a paper consent's paper_reference",
                field="label",
            )
        else:
            row = await participant_consents.record_consent(
                study,
                subject_id,
                data.language,
                data.label,
                data.signed_on,
                data.obtained_by,
                today,
                actor=access.user_id,
                signed_by=signed_by,
            )
        return msgspec.convert(row, ConsentOut, from_attributes=True)

    @get("/consent-issues", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def issues(self, study: StudyPath, access: AccessDep) -> list[ConsentIssueOut]:
        """Consent data issues for the sites: a consent whose version is not on record, once per participant."""
        return [
            msgspec.convert(issue, ConsentIssueOut, from_attributes=True)
            for issue in await consent_checks.issues(study)
            if access.shows(issue.site)
        ]

    @get("/reconsent-queue", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def reconsent_queue(self, study: StudyPath, access: AccessDep, today: Today) -> list[ReconsentOut]:
        """Active participants who signed an older consent version than the one now effective at their site."""
        return [
            msgspec.convert(due, ReconsentOut, from_attributes=True)
            for due in await consent_checks.reconsent(study, today)
            if access.shows(due.site)
        ]

    @get("/consent-deviation-candidates", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def candidates(self, study: StudyPath, access: AccessDep) -> list[CandidateOut]:
        """Visits before the participant's consent, or after re-consent became required and was not obtained."""
        return [
            msgspec.convert(c, CandidateOut, from_attributes=True)
            for c in await consent_checks.candidates(study)
            if access.shows(c.site)
        ]
