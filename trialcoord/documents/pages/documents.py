"""Pages: a study's binder documents, a keyset page at a time (sorted, filtered), with the forms to add a version
(prefilled from a checklist row's upload link) and to move one along its lifecycle."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from trialcoord.documents import documents, people
from trialcoord.documents.api.documents import may_manage, reader, visible
from trialcoord.documents.rules.documents import PERMITTED, DocumentKey, DocumentStatus, IrbApproval
from trialcoord.documents.rules.tmf import ARTIFACTS
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader, Upload
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.paging import Page, page_request
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols
from trialcoord.scheduling.sites import list_sites

NOTICES = {"added": "Version stored as a draft.", "status": "Status changed."}
FILTERS = ("status", "artifact", "site", "q")
ADD_FIELDS = ("name", "artifact", "site", "label", "change_summary", "file", "person", "expires_on")
STATUS_FIELDS = ("status", "on", "reason", "approval_reference", "approval_date", "approval_letter")
# The use cases' names for what these forms call otherwise.
ALIASES = {
    "file_name": "file",
    "approval_letter_sha256": "approval_letter",
    "approval": "approval_letter",
    "approval.letter_sha256": "approval_letter",
    "approval.reference": "approval_reference",
}


class DocumentPages(Controller):
    path = "/studies/{study:str}/documents"
    include_in_schema = False

    @get("/", opt=needs(Action.VIEW_SCHEDULE, across_sites=True))
    async def document_list(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        saved: QueryStr = None,
        status: QueryStr = None,
        artifact: QueryStr = None,
        site: QueryStr = None,
        q: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: FromQuery[int | None] = None,
    ) -> Template:
        listing = {"status": status, "artifact": artifact, "site": site, "q": q}
        context = await _context(study, access, today, listing, (sort, order, after, size))
        return Template("documents.html", context={**context, "notice": NOTICES.get(saved or "")})

    @get("/new", opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True))
    async def upload_form(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        name: QueryStr = None,
        artifact: QueryStr = None,
        site: QueryStr = None,
        person: QueryStr = None,
    ) -> Template:
        """The form that adds a version, prefilled (a binder checklist row's upload link names its artifact, site
        and person, and the document a new version renews)."""
        prefill = {"name": name, "artifact": artifact, "site": site, "person": person}
        context = await _upload_context(study, access, today, {k: v for k, v in prefill.items() if v})
        return Template("document_upload.html", context=context)

    @post("/", opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True), request_max_body_size=documents.MAX_BYTES + 65536)
    async def add_version(self, study: StudyPath, data: Upload, access: AccessDep, today: Today) -> Template | Redirect:
        upload = data.get("file")
        form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
        name, artifact = form.text("name", "document name"), form.text("artifact", "TMF artifact", choice=True)
        label, site = form.text("label", "version label"), form.text("site", "site", required=False, choice=True)
        summary = form.text("change_summary", "change summary", required=False) or ""
        person = form.text("person", "person", required=False, choice=True)
        expires_on = form.date("expires_on", "expiry date", required=False)
        if not isinstance(upload, UploadFile):
            form.errors["file"] = "Choose the file to store."
        if form.errors or name is None or artifact is None or label is None or not isinstance(upload, UploadFile):
            return await _rerender(study, access, today, "add", form.errors, form.data)
        may_manage(access, site, study)
        content = await upload.read()
        try:
            await documents.add_version(
                DocumentKey(study, site, name),
                artifact,
                label,
                content,
                upload.filename,
                summary,
                actor=access.user_id,
                person=person,
                expires_on=expires_on,
            )
        except (InvalidInput, Conflict, NotFound) as error:
            return await _rerender(study, access, today, "add", field_messages(error), form.data)
        return Redirect(f"/studies/{study}/documents?saved=added", status_code=303)

    @post("/status", opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True))
    async def change_status(self, study: StudyPath, data: Form, access: AccessDep, today: Today) -> Template | Redirect:
        form = FormReader(data)
        name, label = form.text("name", "document"), form.text("label", "version")
        site = form.text("site", "site", required=False)
        status = form.text("status", "new status", choice=True)
        on = form.date("on", "date")
        reason = form.text("reason", "reason", required=False)
        reference = form.text("approval_reference", "approval reference", required=False)
        approved_on = form.date("approval_date", "approval date", required=False)
        letter = form.text("approval_letter", "approval letter", required=False, choice=True)
        key = f"status:{site or ''}:{name}:{label}"
        if reference or approved_on or letter:  # an approval is all three or none
            for value, field, missing in (
                (reference, "approval_reference", "Enter the IRB/IEC's reference of the approval."),
                (approved_on, "approval_date", "Enter the date of the IRB/IEC's decision."),
                (letter, "approval_letter", "Choose the approval letter, stored as TMF 04.01.02."),
            ):
                if not value:
                    form.errors.setdefault(field, missing)
        if form.errors or name is None or label is None or status is None or on is None:
            return await _rerender(study, access, today, key, form.errors, form.data)
        may_manage(access, site, study)
        try:
            approval = IrbApproval(reference, approved_on, letter) if reference and approved_on and letter else None
            await documents.change_status(
                DocumentKey(study, site, name), label, status, on, reason, approval, actor=access.user_id, today=today
            )
        except (InvalidInput, Conflict, NotFound) as error:
            return await _rerender(study, access, today, key, field_messages(error), form.data)
        return Redirect(f"/studies/{study}/documents?saved=status", status_code=303)


def shown_errors(errors: dict[str, str], fields: tuple[str, ...]) -> dict[str, str]:
    """Each message next to the form's field it names; one naming no field of the form goes above the form."""
    shown: dict[str, str] = {}
    for field, message in errors.items():
        at = ALIASES.get(field, field)
        at = at if at in fields else ""
        shown[at] = f"{shown[at]} {message}" if at in shown else message
    return shown


async def _rerender(
    study: str, access: Access, today: date, key: str, errors: dict[str, str], values: dict[str, str]
) -> Template:
    """The form again with each message next to its field and what was typed (422): an upload on its own page,
    a lifecycle step on the list."""
    if key == "add":
        context = await _upload_context(study, access, today, values)
        context["errors"] = shown_errors(errors, ADD_FIELDS)
        return Template("document_upload.html", context=context, status_code=422)
    context = await _context(study, access, today, dict.fromkeys(FILTERS), (None, None, None, None))
    context["failed"] = {"key": key, "errors": shown_errors(errors, STATUS_FIELDS), "form": values}
    return Template("documents.html", context=context, status_code=422)


async def _upload_context(study: str, access: Access, today: date, values: dict[str, str]) -> dict[str, Any]:
    sites = [row.code for row in await list_sites(study) if access.shows(row.code)]
    return {
        "study": await protocols.get_study(study),
        "sites": [(code, f"site {code}") for code in sites],
        "artifacts": _artifacts(),
        "people": [(p.user_id, p.shown) for p in await people.of_study(study, today)],
        "study_level": access.may(Action.MANAGE_DOCUMENTS, study, None, today),
        "form": values,
        "errors": {},
    }


def _artifacts() -> list[tuple[str, str]]:
    return [(a.unique_id, f"{a.number} {a.name}") for a in sorted(ARTIFACTS.values(), key=lambda a: a.number)]


async def _context(
    study: str,
    access: Access,
    today: date,
    listing: dict[str, str | None],
    paging: tuple[str | None, str | None, str | None, int | None],
) -> dict[str, Any]:
    details = await protocols.get_study(study)
    sort, order, after, size = paging
    request = page_request(sort, order, after, size, sorts=documents.SORTS, default="name", key_width=3)
    filters = documents.VersionFilter(listing["status"], listing["artifact"], listing["site"], listing["q"])
    page: Page[documents.FiledVersion] = await documents.page_of_versions(
        study, request, filters, reader(access, today), lambda row: visible(access, study, row, today)
    )
    sites = [row.code for row in await list_sites(study) if access.shows(row.code)]
    study_wide = access.may(Action.MANAGE_DOCUMENTS, study, None, today)
    manage = study_wide or any(access.may(Action.MANAGE_DOCUMENTS, study, site, today) for site in sites)
    letters: dict[str, str] = {}
    if manage:
        for letter in await documents.approval_letters(study, reader(access, today)):
            where = f"site {letter.site}" if letter.site else "study level"
            text = f"{letter.name} version {letter.label} ({where}, {letter.file_name})"
            letters.setdefault(letter.sha256, text)  # the same letter filed twice is one choice
    return {
        "study": details,
        "page": page,
        "rows": page.rows,
        "params": {name: value for name, value in listing.items() if value},
        "sites": [(code, f"site {code}") for code in sites],
        "site_filters": [(documents.STUDY_LEVEL, "study level"), *((code, f"site {code}") for code in sites)],
        "statuses": [(str(s), str(s).replace("_", " ")) for s in DocumentStatus],
        "artifacts": _artifacts(),
        "people": [(p.user_id, p.shown) for p in await people.of_study(study, today)] if manage else [],
        "letters": list(letters.items()),
        "next_states": {
            str(s): [(str(n), str(n).replace("_", " ")) for n in sorted(PERMITTED[s])] for s in DocumentStatus
        },
        "can_manage": manage,
        "study_level": study_wide,
        "today": today,
        "notice": None,
        "failed": {"key": "", "errors": {}, "form": {}},
    }
