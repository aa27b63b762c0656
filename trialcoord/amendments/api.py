"""Protocol amendments: a version applied to a site's or study's participants from a date, and the impact of a
version before it takes effect (JSON, CSV, or a one-page PDF for the IRB submission)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromQuery, JSONBody, PathParameter

from trialcoord.amendments import applying, impact, impact_outputs
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import needs
from trialcoord.kernel.web.openapi import files
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, SubjectPath, Today, plausible
from trialcoord.kernel.web.schemas import Code
from trialcoord.scheduling import protocols
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.schemas import (
    Participant,
    ProtocolBodyOperation,
    VersionChangeIn,
    from_record,
    protocol_source,
)

VersionPath = Annotated[str, PathParameter(description="Protocol version label")]
ImpactFormat = Literal["json", "csv", "pdf"]


class ApplyIn(msgspec.Struct):
    effective: date
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    site: Code | None = None
    confirm_downgrade: bool = False  # needed to move anyone back to an earlier version than the one followed


class ParticipantVersionIn(VersionChangeIn):
    confirm_downgrade: bool = False  # needed to move back to an earlier version than the one followed


class Skipped(msgspec.Struct):
    subject_id: str
    reason: str


class DetectionCounts(msgspec.Struct):
    created: int
    updated: int
    resolved: int
    reopened: int


class Applied(msgspec.Struct):
    version: str
    effective: date
    moved: list[str]
    skipped: list[Skipped]
    deviations: DetectionCounts | None  # detection re-run for those moved (None: nobody moved)


class AmendmentController(Controller):
    path = "/api/studies/{study:str}"
    tags = ["amendments"]

    @post(
        "/protocol-versions/{version:str}/apply",
        opt=needs(Action.ENROLL_PARTICIPANT, across_sites=True),
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def apply(
        self, study: StudyPath, version: VersionPath, data: JSONBody[ApplyIn], today: Today, access: AccessDep
    ) -> Applied:
        """Move every active participant of the study, or of one site, to this version from `effective` on (today
        at the latest): one audited change each, deviation detection re-run for them. Participants left as they
        are say why. Moving anyone back to an earlier version than the one they follow needs
        `confirm_downgrade`, which is audited."""
        plausible(data.effective, "effective")
        if data.site is not None:
            access.require_site(data.site, "change protocol versions")
        elif access.sites is not None and not access.sites.all_sites:
            raise PermissionDeniedException(
                f"{access.user_id} may not move every participant of {study}: name the site"
            )
        moved = await applying.apply_version(
            study,
            version,
            data.effective,
            data.reason,
            site=data.site,
            today=today,
            actor=access.user_id,
            confirm_downgrade=data.confirm_downgrade,
        )
        return Applied(
            moved.version,
            moved.effective,
            moved.moved,
            [Skipped(s, why) for s, why in sorted(moved.skipped.items())],
            DetectionCounts(**moved.deviations) if moved.deviations else None,
        )

    @get(
        "/protocol-versions/{version:str}/impact",
        opt=needs(Action.VIEW_SCHEDULE, across_sites=True),
        operation_class=files(*impact_outputs.IMPACT_MEDIA.values()),  # with `format` csv or pdf; JSON by default
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def impact_of_version(
        self,
        study: StudyPath,
        version: VersionPath,
        today: Today,
        access: AccessDep,
        effective: FromQuery[date | None] = None,
        site: QueryStr = None,
        format: FromQuery[ImpactFormat] = "json",
    ) -> Response:
        """What a loaded version would change for the active participants the reader may see (nothing is
        stored): visits moving, appearing or disappearing, deviations resolved or created, re-consent."""
        text, name = await protocols.version_source(study, version)
        return await _impact(study, text, name, effective, site, format, today, access)

    @post(
        "/protocol-impact",
        operation_class=files(*impact_outputs.IMPACT_MEDIA.values(), base=ProtocolBodyOperation),
        opt=needs(Action.VIEW_SCHEDULE, across_sites=True),
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def impact_of_file(
        self,
        study: StudyPath,
        request: Request,
        today: Today,
        access: AccessDep,
        effective: FromQuery[date | None] = None,
        site: QueryStr = None,
        format: FromQuery[ImpactFormat] = "json",
    ) -> Response:
        """The same for a protocol file not loaded yet (the body, as for loading a version)."""
        source = await protocol_source(request)
        return await _impact(study, source.source, source.name, effective, site, format, today, access)


async def _impact(
    study: str, text: str, name: str, effective: date | None, site: str | None, fmt: str, today: date, access
) -> Response:
    plausible(effective, "effective")
    protocol = parse_protocol(text, file=name)
    sites = None if access.sites is None or access.sites.all_sites else access.sites.sites
    result = await impact.impact(study, protocol, text, effective, site=site, today=today, sites=sites)
    if fmt == "json":
        await impact_outputs.record_impact_read(result, fmt, access.user_id)
        return Response(impact_outputs.impact_dict(result))
    content, media, filename = await impact_outputs.impact_file(result, fmt, access.user_id)
    return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


class ParticipantVersionController(Controller):
    """A participant moved to another protocol version: an amendment's use case, under the participant's path."""

    path = "/api/studies/{study:str}/participants"
    tags = ["participants"]

    @put(
        "/{subject_id:str}/protocol-version",
        opt=needs(Action.ENROLL_PARTICIPANT),
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def change_protocol_version(
        self,
        study: StudyPath,
        subject_id: SubjectPath,
        data: JSONBody[ParticipantVersionIn],
        today: Today,
        access: AccessDep,
    ) -> Participant:
        """Move the participant to another protocol version (after an amendment) from `effective` on, a dated,
        reasoned action: visits done or closed before that day stay judged by the version followed then;
        deviation detection runs again for the participant. Not for a day still to come; back to an earlier
        version than the one followed only with `confirm_downgrade`, which is audited."""
        row = await applying.change_version(
            study,
            subject_id,
            data.version,
            data.effective,
            data.reason,
            today=today,
            actor=access.user_id,
            confirm_downgrade=data.confirm_downgrade,
        )
        return from_record(Participant, row)
