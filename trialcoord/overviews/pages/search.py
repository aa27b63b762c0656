"""Pages: a study's search results (subject IDs, document titles, deviation numbers), each one click from its
page."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.response import Template

from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.guard import needs
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.overviews import search


class SearchPages(Controller):
    path = "/studies/{study:str}"
    include_in_schema = False

    @get("/search", opt=needs(Action.VIEW_SCHEDULE, across_sites=True))
    async def search(self, study: StudyPath, access: AccessDep, today: Today, q: QueryStr = None) -> Template:
        text = (q or "").strip()
        context: dict[str, Any] = {"study": study, "q": text, "errors": {}, "results": None}
        try:
            context["results"] = await search.search(study, text, access.signed_in.grants, access.sites, today)
        except InvalidInput as error:
            context["errors"] = field_messages(error)
            return Template("search.html", context=context, status_code=400)
        return Template("search.html", context=context)
