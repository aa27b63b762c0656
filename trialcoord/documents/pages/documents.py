"""Pages: a study's binder documents, with the forms to add a version and to move one along its lifecycle."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, get, post
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Template

from trialcoord.documents import documents
from trialcoord.documents.api.documents import may_manage, reader, visible
from trialcoord.documents.rules.documents import PERMITTED, DocumentKey, DocumentStatus, IrbApproval
from trialcoord.documents.rules.tmf import ARTIFACTS
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader, Upload
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols
from trialcoord.scheduling.sites import list_sites

NOTICES = {"added": "Version stored as a draft.", "status": "Status changed."}


class DocumentPages(Controller):
    path = "/studies/{study:str}/documents"
    include_in_schema = False

    @get("/", opt=needs(Action.VIEW_SCHEDULE, across_sites=True))
    async def document_list(
        self, study: StudyPath, access: AccessDep, today: Today, saved: QueryStr = None
    ) -> Template:
        context = await _context(study, access, today)
        return Template("documents.html", context={**context, "notice": NOTICES.get(saved or "")})

    @post("/", opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True), request_max_body_size=documents.MAX_BYTES + 65536)
    async def add_version(self, study: StudyPath, data: Upload, access: AccessDep, today: Today) -> Template | Redirect:
        upload = data.get("file")
        form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
        name, artifact = form.text("name", "document name"), form.text("artifact", "TMF artifact", choice=True)
        label, site = form.text("label", "version label"), form.text("site", "site", required=False, choice=True)
        summary = form.text("change_summary", "change summary", required=False) or ""
        if not isinstance(upload, UploadFile):
            form.errors["file"] = "Choose the file to store."
        if form.errors or name is None or artifact is None or label is None or not isinstance(upload, UploadFile):
            return await _rerender(study, access, today, "add", form.errors, form.data)
        may_manage(access, site, study)
        content = await upload.read()
        try:
            await documents.add_version(
                DocumentKey(study, site, name), artifact, label, content, upload.filename, summary, actor=access.user_id
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
        letter = form.text("approval_letter_sha256", "approval letter's SHA-256", required=False)
        key = f"status:{site or ''}:{name}:{label}"
        if (reference or approved_on or letter) and not (reference and approved_on and letter):
            form.errors["approval_reference"] = "An approval needs its reference, date and the letter's SHA-256."
        if form.errors or name is None or label is None or status is None or on is None:
            return await _rerender(study, access, today, key, form.errors, form.data)
        may_manage(access, site, study)
        try:  # an approval is all three or none (checked above)
            approval = IrbApproval(reference, approved_on, letter) if reference and approved_on and letter else None
            await documents.change_status(
                DocumentKey(study, site, name), label, status, on, reason, approval, actor=access.user_id
            )
        except (InvalidInput, Conflict, NotFound) as error:
            return await _rerender(study, access, today, key, field_messages(error), form.data)
        return Redirect(f"/studies/{study}/documents?saved=status", status_code=303)


async def _rerender(
    study: str, access: Access, today: date, key: str, errors: dict[str, str], values: dict[str, str]
) -> Template:
    context = await _context(study, access, today)
    context["failed"] = {"key": key, "errors": errors, "form": values}
    return Template("documents.html", context=context, status_code=422)


async def _context(study: str, access: Access, today: date) -> dict[str, Any]:
    details = await protocols.get_study(study)
    rows = [
        row
        for row in await documents.list_documents(study, reader=reader(access, today))
        if visible(access, study, row, today)
    ]
    sites = [row.code for row in await list_sites(study) if access.shows(row.code)]
    study_wide = access.may(Action.MANAGE_DOCUMENTS, study, None, today)
    manage = study_wide or any(access.may(Action.MANAGE_DOCUMENTS, study, site, today) for site in sites)
    return {
        "study": details,
        "rows": rows,
        "sites": [(code, f"site {code}") for code in sites],
        "artifacts": [
            (a.unique_id, f"{a.number} {a.name}") for a in sorted(ARTIFACTS.values(), key=lambda a: a.number)
        ],
        "next_states": {
            str(s): [(str(n), str(n).replace("_", " ")) for n in sorted(PERMITTED[s])] for s in DocumentStatus
        },
        "can_manage": manage,
        "study_level": study_wide,
        "today": today,
        "notice": None,
        "failed": {"key": "", "errors": {}, "form": {}},
    }
