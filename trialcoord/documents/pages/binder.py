"""Pages: a document version (its history, signatures and the signing form), and a site's binder with
its expected-documents checklist and the signed export."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromQuery, Parameter
from litestar.response import Redirect, Template

from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.accounts.users import AccountRules
from trialcoord.documents import binder_checklist, documents, signature_requests, signatures
from trialcoord.documents.api.documents import may_manage, reader, visible
from trialcoord.documents.api.signatures import sign_as_viewer, signed_in
from trialcoord.documents.consent_versions import list_versions, register_version
from trialcoord.documents.pages.documents import shown_errors
from trialcoord.documents.rules.documents import DocumentKey
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import Conflict, InvalidInput, NotConfigured, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader, whole_number
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.paging import page_in_memory, page_request
from trialcoord.kernel.web.params import AccessDep, InstallationDep, QueryStr, StudyPath, Today
from trialcoord.scheduling.protocols import get_study, list_protocol_versions
from trialcoord.scheduling.sites import list_sites

MEANINGS = [(str(m), str(m)) for m in Meaning]
NOTICES = {
    "signed": "Signed.",
    "consent": "Registered as the site's consent version.",
    "requested": "Signature requested.",
    "reminded": "Reminder sent.",
}
REQUEST_FIELDS = ("signer_id", "meaning")


class VersionPages(Controller):
    path = "/studies/{study:str}/documents"
    include_in_schema = False

    @get("/version", opt=needs(Action.VIEW_SCHEDULE, across_sites=True))
    async def version(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        installation: InstallationDep,
        name: QueryStr = None,
        label: QueryStr = None,
        site: QueryStr = None,
        saved: QueryStr = None,
    ) -> Template:
        if not name or not label:
            raise NotFound("name the document and the version (name and label)")
        key = DocumentKey(study, site or None, name)
        context = await _version_context(study, access, today, key, label, installation)
        notice = NOTICES.get(saved or "")
        return Template("version.html", context={**context, "notice": notice})

    @post("/sign", opt=needs(Action.SIGN, across_sites=True))
    async def sign(
        self,
        study: StudyPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> Template | Redirect:
        form = FormReader(data)
        name, label = form.text("name", "document"), form.text("label", "version")
        site = form.text("site", "site", required=False)
        meaning = form.text("meaning", "meaning", choice=True)
        typed = form.text("user_id", "user ID", required=False)
        password = data.get("password", "")
        key = DocumentKey(study, site or None, name or "")
        if not form.errors and label is not None and meaning is not None:
            try:
                await sign_as_viewer(
                    access, study, key, label, meaning, password, typed, today, account_rules, installation
                )
            except (InvalidInput, Conflict) as error:
                form.errors.update(field_messages(error))
            except NotConfigured as error:
                form.errors["meaning"] = str(error)
        if form.errors or name is None or label is None:
            values = {k: v for k, v in form.data.items() if k != "password"}  # a password is never sent back
            state = {"errors": form.errors, "form": values}
            return await _refused(study, access, today, key, label, state, installation)
        return _back_to_version(study, name, label, site, "signed")

    @post("/consent-version", opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True))
    async def register_consent_version(
        self, study: StudyPath, data: Form, access: AccessDep, today: Today, installation: InstallationDep
    ) -> Template | Redirect:
        """An effective consent form version of a site becomes the site's consent version for a language."""
        form = FormReader(data)
        name, label = form.text("name", "document"), form.text("label", "version")
        site = form.text("site", "site")
        language = form.text("language", "language")
        consent_label = form.text("consent_label", "consent version label")
        protocol_version = form.text("protocol_version", "protocol version", choice=True)
        key = DocumentKey(study, site, name or "")
        if not form.errors and site and name and label and language and consent_label and protocol_version:
            access.require_site(site, "register consent versions")
            try:
                await register_version(
                    study, site, language, consent_label, protocol_version, name, label, actor=access.user_id
                )
            except (InvalidInput, Conflict, NotFound) as error:
                form.errors.update(field_messages(error))
        if form.errors or name is None or label is None:
            state = {"consent_errors": form.errors, "form": form.data}
            return await _refused(study, access, today, key, label, state, installation)
        return _back_to_version(study, name, label, site, "consent")

    @post("/signature-requests", opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True))
    async def request_signature(
        self, study: StudyPath, data: Form, access: AccessDep, today: Today, installation: InstallationDep
    ) -> Template | Redirect:
        """Ask a person to sign this version with a meaning."""
        form = FormReader(data)
        name, label = form.text("name", "document"), form.text("label", "version")
        site = form.text("site", "site", required=False)
        signer = form.text("signer_id", "person to sign", choice=True)
        meaning = form.text("meaning", "meaning of the signature", choice=True)
        key = DocumentKey(study, site or None, name or "")
        if not form.errors and label is not None and signer is not None and meaning is not None:
            may_manage(access, site, study)
            try:
                await signature_requests.request_signature(
                    key, label, signer, meaning, access.user_id, today, reader(access, today)
                )
            except (InvalidInput, Conflict) as error:
                form.errors.update(field_messages(error))
        if form.errors or name is None or label is None:
            state = {"request_errors": shown_errors(form.errors, REQUEST_FIELDS), "request_form": form.data}
            return await _refused(study, access, today, key, label, state, installation)
        return _back_to_version(study, name, label, site, "requested")

    @post("/signature-requests/remind", opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True))
    async def remind(
        self, study: StudyPath, data: Form, access: AccessDep, today: Today, installation: InstallationDep
    ) -> Template | Redirect:
        """Remind the signer of an open request of this version."""
        form = FormReader(data)
        name, label = form.text("name", "document"), form.text("label", "version")
        site = form.text("site", "site", required=False)
        request = whole_number(form.data.get("request", ""))
        key = DocumentKey(study, site or None, name or "")
        if request is None:
            form.errors[""] = "Choose the request to remind its signer of."
        elif label is not None:
            may_manage(access, site, study)
            try:
                await signature_requests.remind(key, label, request, access.user_id, reader(access, today))
            except (Conflict, NotFound) as error:
                form.errors.update(field_messages(error))
        if form.errors or name is None or label is None:
            return await _refused(study, access, today, key, label, {"remind_errors": form.errors}, installation)
        return _back_to_version(study, name, label, site, "reminded")


CHECKLIST_SORTS = ("state", "artifact", "person", "expires")
STATES = ("missing", "expired", "expiring", "present")


class BinderPages(Controller):
    path = "/studies/{study:str}/binder"
    include_in_schema = False

    @get("/", opt=needs(Action.VIEW_SCHEDULE, across_sites=True))
    async def binder_page(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        site: QueryStr = None,
        item_state: Annotated[str | None, Parameter(query="state")] = None,  # `state` is litestar's own
        artifact: QueryStr = None,
        q: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: FromQuery[int | None] = None,
    ) -> Template:
        """A site's expected documents, a page at a time, sorted and filtered; each one still to file links to the
        upload form, prefilled, for those who may file it."""
        sites = [row.code for row in await list_sites(study) if access.shows(row.code)]
        chosen = site if site in sites else (sites[0] if sites else None)
        items = await binder_checklist.site_checklist(study, chosen, today, reader(access, today)) if chosen else []
        counts = {s: sum(1 for i in items if i.state == s) for s in STATES}
        request = page_request(sort, order, after, size, sorts=CHECKLIST_SORTS, default="state", key_width=2)
        params = {"site": chosen, "state": item_state, "artifact": artifact, "q": q}
        chosen_items = [
            (n, i) for n, i in enumerate(items) if _matches(i, item_state or None, artifact or None, (q or "").strip())
        ]
        page = page_in_memory(chosen_items, request, lambda pair: _checklist_key(pair, request.sort))
        may_file = bool(chosen) and access.may(Action.MANAGE_DOCUMENTS, study, chosen, today)
        return Template(
            "binder.html",
            context={
                "study": await get_study(study),
                "sites": sites,
                "site": chosen,
                "rows": page.rows,  # (place in the checklist, entry)
                "page": page,
                "params": {k: v for k, v in params.items() if v},
                "states": [(s, s) for s in STATES],
                "artifacts": sorted({(i.artifact.unique_id, f"{i.artifact.number} {i.artifact.name}") for i in items}),
                "counts": counts,
                "total": len(items),
                "today": today,
                "can_export": access.may(Action.EXPORT, study, chosen, today),
                "upload_links": {
                    n: binder_checklist.upload_path(study, i) for n, i in page.rows if may_file and i.to_file
                },
            },
        )


def _matches(item: binder_checklist.ChecklistEntry, state: str | None, artifact: str | None, text: str) -> bool:
    words = " ".join(
        filter(None, (item.artifact.name, item.artifact.number, item.person, item.consent_version, item.document))
    )
    return (
        (state is None or item.state == state)
        and (artifact is None or item.artifact.unique_id == artifact)
        and (not text or text.casefold() in words.casefold())
    )


def _checklist_key(pair: tuple[int, binder_checklist.ChecklistEntry], sort: str) -> tuple[Any, ...]:
    """The row's sort value and its place in the checklist (unique, so keyset pages neither repeat nor skip)."""
    n, item = pair
    value: Any = {
        "state": STATES.index(item.state),
        "artifact": item.artifact.number,
        "person": item.person or item.consent_version,
        "expires": item.expires_on.isoformat() if item.expires_on else None,
    }[sort]
    return value, n


async def _refused(
    study: str,
    access: Access,
    today: date,
    key: DocumentKey,
    label: str | None,
    form_state: dict[str, Any],
    installation: Installation,
) -> Template:
    """The version page again, with the form's errors and values (422)."""
    context = await _version_context(study, access, today, key, label or "", installation)
    return Template("version.html", context={**context, **form_state}, status_code=422)


def _back_to_version(study: str, name: str, label: str, site: str | None, saved: str) -> Redirect:
    query = urlencode(
        {"name": name, "label": label, **({"site": site} if site else {}), "saved": saved}, quote_via=quote
    )
    return Redirect(f"/studies/{study}/documents/version?{query}", status_code=303)


async def _version_context(
    study: str, access: Access, today: date, key: DocumentKey, label: str, installation: Installation
) -> dict[str, Any]:
    row = await documents.get_version(key, label, reader(access, today))  # not found: a draft, to a monitor
    if not visible(access, study, row, today):
        raise PermissionDeniedException(f"{access.user_id} may not see {key.name}")
    found = await signatures.of_version(key, label, installation, reader(access, today))
    newest: dict[str, signatures.VersionFile] = {}
    for f in found.files:
        newest.setdefault(f.kind, f)
    manages = access.may(Action.MANAGE_DOCUMENTS, study, key.site, today)
    grants = signed_in(access).grants
    meanings = [(m, label) for m, label in MEANINGS if signatures.may_sign(grants, key, m, today)]
    registrable = row.artifact.unique_id == "040" and row.status == "effective" and key.site is not None and manages
    consent_versions = [v for v in await list_versions(study) if v.site == key.site] if registrable else []
    protocols = [(v.version, v.version) for v in await list_protocol_versions(study)]
    signable = row.status not in ("superseded", "expired")
    signers = await signature_requests.possible_signers(key, row.status, today) if manages and signable else []
    return {
        "study": await get_study(study),
        "row": row,
        "signatures": found.signatures,
        "files": list(newest.values()),
        "meanings": meanings,
        "can_sign": bool(meanings),
        "requests": await signature_requests.requests_of_version(key, label, reader(access, today)),
        "can_request": manages and signable,
        "signers": [(p.user_id, p.shown) for p in signers],
        "all_meanings": MEANINGS,
        "request_errors": {},
        "request_form": {},
        "remind_errors": {},
        "can_register": registrable,
        "consent_versions": consent_versions,
        "protocols": protocols,
        "errors": {},
        "consent_errors": {},
        "form": {},
        "notice": None,
    }
