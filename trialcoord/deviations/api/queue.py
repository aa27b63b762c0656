"""Deviations over the API: detection runs, the queue, a deviation someone found (any category).

Reading the queue needs view_schedule: every role of the study sees coded deviation data, of the sites the reader
sees; a detection run and a deviation someone found need record_deviation.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody, QueryParameter

from trialcoord.deviations import detection, manual, queue
from trialcoord.deviations.api.deviations import (
    READ,
    RECORD,
    VIEW,
    WRITE,
    DetectIn,
    DetectOut,
    DeviationIn,
    DeviationOut,
    DeviationPage,
    visible_sites,
)
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.params import AccessDep, AsOf, QueryStr, StudyPath, Today, as_of_or_today

PAGE, MAX_PAGE = 50, 500
StateParam = Annotated[
    str | None, QueryParameter(name="state", required=False, max_length=500, description="comma-separated states")
]


class QueueController(Controller):
    path = "/api/studies/{study:str}"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    tags = ["deviations"]

    @post("/deviations/detect", opt=RECORD, status_code=200, responses=READ)
    async def detect(
        self, study: StudyPath, access: AccessDep, today: Today, data: JSONBody[DetectIn | None] = None
    ) -> DetectOut:
        """Create, update, resolve and reopen the study's automatic deviations (incremental unless `full`).
        Only a reader of every site of the study may choose `as_of` (not after today, nor before the last
        run) or `full`."""
        data = data or DetectIn()
        if (data.as_of is not None or data.full) and visible_sites(access) is not None:
            # a run's date and scope decide every site's records: only a reader of all of them chooses
            raise PermissionDeniedException(
                f"{access.user_id} may not choose as_of or full: that needs a grant covering every site of the study"
            )
        counts = await detection.detect(study, data.as_of or today, access.user_id, full=data.full, today=today)
        return msgspec.convert(counts, DetectOut, from_attributes=True)

    @get("/deviations", opt=VIEW, responses=READ)
    async def queue(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        states: StateParam = None,
        site: QueryStr = None,
        category: QueryStr = None,
        participant: QueryStr = None,
        min_age_days: Annotated[int | None, QueryParameter(ge=0, le=36500, required=False)] = None,
        as_of: AsOf = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = PAGE,
        offset: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
    ) -> DeviationPage:
        """The deviations of the sites the reader sees (`site` narrows to one), oldest first; `state` is a
        comma-separated list, `min_age_days` counts from detection to `as_of` (default today)."""
        wanted = [s.strip() for s in states.split(",") if s.strip()] if states else None
        rows, total = await queue.listing(
            study,
            states=wanted,
            sites=visible_sites(access),
            category=category or None,
            min_age_days=min_age_days,
            as_of=as_of_or_today(as_of, today),
            limit=limit,
            offset=offset,
            participant=participant or None,
        )
        return DeviationPage(
            [msgspec.convert(r, DeviationOut, from_attributes=True) for r in rows], total, limit, offset
        )

    @post("/deviations", opt=RECORD, status_code=201, responses=WRITE)
    async def record(
        self, study: StudyPath, data: JSONBody[DeviationIn], access: AccessDep, today: Today
    ) -> DeviationOut:
        """A deviation someone found (any category), at a site or of one of its participants."""
        access.require_site(data.site, "record deviations")
        row = await manual.record_manual(
            study,
            data.site,
            data.category,
            data.description,
            data.occurred_on,
            access.user_id,
            subject_id=data.subject_id,
            visit=data.visit,
            subcategory=data.subcategory,
            classification=data.classification,
            today=today,
        )
        return msgspec.convert(row, DeviationOut, from_attributes=True)
