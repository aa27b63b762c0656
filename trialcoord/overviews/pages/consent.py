"""The consent work of a study, a list at a time: participants due to re-consent, consents with no version on
record, and consent deviation candidates; each a keyset page (the lists are computed by the consent rules over
the study's records, so paged in memory), sorted by its columns, filtered by site and subject ID. The study page
shows the first rows of each and links here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Literal

from litestar import Controller, get
from litestar.params import FromQuery
from litestar.response import Template

from trialcoord.documents import consent_checks
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.paging import page_in_memory, page_request
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols, sites

ConsentList = Literal["reconsent", "issues", "candidates"]
LISTS = (
    ("reconsent", "Re-consent due"),
    ("issues", "Consent records to complete"),
    ("candidates", "Deviation candidates"),
)
# Per list: its sortable columns (the first is the default) and each row's value for one.
SORTS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "reconsent": {
        "subject": lambda r: r.subject_id,
        "site": lambda r: r.site,
        "required_since": lambda r: r.required_since.isoformat(),
    },
    "issues": {
        "subject": lambda r: r.subject_id,
        "site": lambda r: r.site,
        "signed_on": lambda r: r.signed_on.isoformat(),
    },
    "candidates": {
        "subject": lambda r: r.subject_id,
        "site": lambda r: r.site,
        "visit_on": lambda r: r.visit_on.isoformat(),
    },
}


async def consent_lists(study: str, access: Access, today: date) -> dict[str, list[Any]]:
    """The three lists, each row at a site the viewer sees."""
    return {
        "reconsent": [r for r in await consent_checks.reconsent(study, today) if access.shows(r.site)],
        "issues": [r for r in await consent_checks.issues(study) if access.shows(r.site)],
        "candidates": [r for r in await consent_checks.candidates(study) if access.shows(r.site)],
    }


class ConsentPages(Controller):
    include_in_schema = False

    @get("/studies/{study:str}/consent", opt=needs(Action.VIEW_SCHEDULE, across_sites=True))
    async def consent(
        self,
        study: StudyPath,
        today: Today,
        access: AccessDep,
        list: FromQuery[ConsentList] = "reconsent",  # noqa: A002 (the query parameter's name)
        site: QueryStr = None,
        q: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: FromQuery[int | None] = None,
    ) -> Template:
        sorts = SORTS[list]
        request = page_request(sort, order, after, size, sorts=tuple(sorts), default=next(iter(sorts)), key_width=3)
        text = (q or "").strip().casefold()
        rows = [
            row
            for row in (await consent_lists(study, access, today))[list]
            if (not site or row.site == site) and (not text or text in row.subject_id.casefold())
        ]
        # The tail (subject, and the visit of a candidate) keeps the key unique, so pages neither repeat nor skip.
        value = sorts[request.sort]
        page = page_in_memory(rows, request, lambda r: (value(r), r.subject_id, getattr(r, "visit", "")))
        return Template(
            "consent.html",
            context={
                "study": await protocols.get_study(study),
                "list": list,
                "lists": LISTS,
                "page": page,
                "params": {"list": list, "site": site or None, "q": q or None},
                "site": site or "",
                "site_options": [
                    (row.code, f"{row.code} – {row.name}")
                    for row in await sites.list_sites(study)
                    if access.shows(row.code)
                ],
                "q": q or "",
            },
        )
