"""CAPA records over the API: root cause and corrective/preventive action records, each grouping deviations.

Reading needs view_schedule; creating, grouping and closing need record_deviation. CAPA records a reader may not
see answer 403, as a missing one does to a reader of some sites (`kernel.web.denials`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody, PathParameter

from trialcoord.deviations import deviation_review
from trialcoord.deviations.api.deviations import (
    READ,
    RECORD,
    VIEW,
    WRITE,
    CapaCloseIn,
    CapaIn,
    CapaOut,
    IdsIn,
    visible_sites,
)
from trialcoord.deviations.deviation_review import CapaRecord
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.params import AccessDep, StudyPath

CapaPath = Annotated[int, PathParameter(description="CAPA record number", ge=1, le=2**31 - 1)]


# Helpers ------------------------------------------------------------------------------------------


def capa_out(capa: CapaRecord) -> CapaOut:
    return msgspec.convert(capa, CapaOut, from_attributes=True)


class CapaController(Controller):
    path = "/api/studies/{study:str}"
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
    tags = ["deviations"]

    @get("/capas", opt=VIEW, responses=READ)
    async def capas(self, study: StudyPath, access: AccessDep) -> list[CapaOut]:
        """Root cause and corrective/preventive action records, each with the deviations it groups (a reader
        of some sites: the records they made or that group their deviations, and only those deviations)."""
        return [capa_out(c) for c in await deviation_review.list_capas(study, visible_sites(access), access.user_id)]

    @post("/capas", opt=RECORD, status_code=201, responses=WRITE)
    async def create_capa(self, study: StudyPath, data: JSONBody[CapaIn], access: AccessDep) -> CapaOut:
        capa = await deviation_review.create_capa(
            study,
            data.title,
            data.root_cause,
            data.corrective_action,
            data.preventive_action,
            data.owner,
            data.due_on,
            data.deviations,
            access.user_id,
            sites=visible_sites(access),
        )
        return capa_out(capa)

    @get("/capas/{capa_id:int}", opt=VIEW, responses=READ)
    async def capa(self, study: StudyPath, capa_id: CapaPath, access: AccessDep) -> CapaOut:
        """One record (403 for a record the reader may not see, as for a missing one to a reader of some sites)."""
        return capa_out(await deviation_review.get_capa(study, capa_id, visible_sites(access), access.user_id))

    @post("/capas/{capa_id:int}/deviations", opt=RECORD, status_code=200, responses=WRITE)
    async def link_capa(self, study: StudyPath, capa_id: CapaPath, data: JSONBody[IdsIn], access: AccessDep) -> CapaOut:
        """Group more deviations under the record (only deviations the caller sees)."""
        capa = await deviation_review.link_capa(study, capa_id, data.ids, access.user_id, sites=visible_sites(access))
        return capa_out(capa)

    @post("/capas/{capa_id:int}/close", opt=RECORD, status_code=200, responses=WRITE)
    async def close_capa(
        self, study: StudyPath, capa_id: CapaPath, data: JSONBody[CapaCloseIn], access: AccessDep
    ) -> CapaOut:
        """Close the record with how its effectiveness was checked."""
        capa = await deviation_review.close_capa(
            study, capa_id, access.user_id, data.reason, sites=visible_sites(access)
        )
        return capa_out(capa)
