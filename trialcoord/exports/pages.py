"""The sponsor packages page: one button to make a package (the study as of a date, coded or safe-harbor), its
progress while it builds, and the study's earlier packages with their SHA-256 and who made them."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Optional

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from trialcoord.exports import packages
from trialcoord.exports.api import PackageIn, shown, start_build
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.paging import PageRequest, page_in_memory, page_request
from trialcoord.kernel.web.params import AccessDep, InstallationDep, QueryStr, StudyPath, Today
from trialcoord.scheduling.protocols import get_study, study_blinding
from trialcoord.scheduling.sites import list_sites

EXPORT = needs(Action.EXPORT, across_sites=True)
NEWEST_FIRST = PageRequest("transfer", descending=True)


class SponsorPackagePages(Controller):
    path = "/studies/{study:str}/sponsor-packages"
    include_in_schema = False

    @get("/", opt=EXPORT)
    async def packages_page(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        after: QueryStr = None,
        size: FromQuery[Optional[int]] = None,  # noqa: UP045 (read at run time by the parameter parsing)
    ) -> Template:
        listed = page_request(None, None, after, size, sorts=("transfer",), default="transfer", key_width=2)
        context = await _context(study, access, today, {}, {}, replace(listed, descending=True))
        return Template("sponsor_packages.html", context=context)

    @post("/", opt=EXPORT)
    async def make(
        self,
        request: Request,
        study: StudyPath,
        data: Form,
        access: AccessDep,
        today: Today,
        installation: InstallationDep,
    ) -> Template | Redirect:
        form = FormReader(data)
        as_of = form.date("as_of", "as-of date", required=False)
        site = form.text("site", "site", required=False)
        privacy = form.text("privacy", "privacy mode", choice=True)
        if privacy not in (None, "coded", "safe-harbor"):
            form.errors["privacy"] = "Choose coded or safe-harbor."
        if not form.errors:
            body = PackageIn(
                as_of=as_of,
                sites=[site] if site else [],
                privacy="safe-harbor" if privacy == "safe-harbor" else "coded",
                unblinded=form.data.get("unblinded") == "yes",
            )
            try:
                await start_build(request, study, body, access, today, installation)
            except (InvalidInput, Conflict, NotFound) as error:
                form.errors.update(field_messages(error))
        if form.errors:
            context = await _context(study, access, today, form.errors, form.data)
            return Template("sponsor_packages.html", context=context, status_code=422)
        return Redirect(f"/studies/{study}/sponsor-packages", status_code=303)


async def _context(
    study: str,
    access: Access,
    today: date,
    errors: dict[str, str],
    values: dict[str, str],
    listed: PageRequest = NEWEST_FIRST,
) -> dict:
    made = [p for p in await packages.packages_of(study) if shown(access, p, today)]
    return {
        "study": await get_study(study),
        # A study makes a package a week at most: its list is read whole and shown a page at a time.
        "packages": page_in_memory(made, listed, lambda p: (p.transfer, p.id)),
        "building": any(p.state == "building" for p in made),
        "sites": [row.code for row in await list_sites(study) if access.shows(row.code)],
        "all_sites": access.sites is None or access.sites.all_sites,
        "blinded": (await study_blinding(study)).blinded,
        "may_unblind": access.may(Action.VIEW_ALLOCATION, study, None, today),
        "today": today,
        "errors": errors,
        "form": values,
    }
