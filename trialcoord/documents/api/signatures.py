"""Electronic signatures of document versions, the files that print them, and the regulatory binder.

Signing runs the re-authentication ceremony on the caller's own session (user ID and password at the
first signing of a continuous period, the password alone after). A review may be signed by anyone who
sees the version (monitors review); authorship, approval, responsibility and consent need the right to
manage the document at its site.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import FromQuery, JSONBody

from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.accounts.signing import signing_ceremony
from trialcoord.accounts.users import AccountRules
from trialcoord.documents import binder_checklist, binder_export, documents, signature_requests, signatures
from trialcoord.documents.api.documents import Name, may_manage, reader, visible
from trialcoord.documents.rules.documents import DOCX, PDF, DocumentKey
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import NotFound
from trialcoord.kernel.rules.access import Action, Viewer
from trialcoord.kernel.web.downloads import attachment
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.openapi import files
from trialcoord.kernel.web.params import AccessDep, InstallationDep, QueryStr, StudyPath, Today
from trialcoord.kernel.web.schemas import Code

VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
KINDS = (signatures.SIGNATURE_PAGE, signatures.SIGNED_COPY, signatures.PADES)


class SignIn(msgspec.Struct):
    name: Name
    label: Code
    meaning: Annotated[str, msgspec.Meta(min_length=1, max_length=20, description=", ".join(Meaning))]
    password: Annotated[str, msgspec.Meta(max_length=1024)]
    site: Code | None = None
    user_id: Code | None = None  # required at the first signing of a continuous period


class SignatureOut(msgspec.Struct):
    version_sha256: str
    record: str
    signer_id: str
    printed_name: str
    meaning: str
    instant: str
    local_time: str
    key_id: str
    signature: str
    verdict: str
    reason: str


class FileOut(msgspec.Struct):
    kind: str
    signatures: int
    sha256: str
    size: int
    media_type: str
    created_at: str


class SignaturesOut(msgspec.Struct):
    signatures: list[SignatureOut]
    files: list[FileOut]


class SignatureRequestIn(msgspec.Struct):
    name: Name
    label: Code
    signer_id: Code
    meaning: Annotated[str, msgspec.Meta(min_length=1, max_length=20, description=", ".join(Meaning))]
    site: Code | None = None


class ReminderIn(msgspec.Struct):
    name: Name
    label: Code
    request: Annotated[int, msgspec.Meta(ge=1, description="the signature request's ID")]
    site: Code | None = None


class SignatureRequestOut(msgspec.Struct):
    id: int
    signer_id: str
    signer_name: str
    meaning: str
    requested_by: str
    requested_by_name: str
    requested_at: str
    reminders: int
    reminded_at: str | None
    fulfilled_at: str | None
    state: str


class ChecklistItemOut(msgspec.Struct):
    artifact: dict[str, str]
    scope: str
    person: str | None
    consent_version: str | None
    state: str
    document: str | None
    expires_on: str | None


def signed_in(access: Access) -> Viewer:
    """The person behind a request to a route that declares an action (the guard let no one else through)."""
    if access.viewer is None:
        raise NotAuthorizedException("sign in first")
    return access.viewer


async def check_may_sign(access: Access, study: str, key: DocumentKey, label: str, meaning: str, today: date) -> None:
    """Before the password is asked for: the same rule the service applies after it (`signatures.may_sign`);
    a version the viewer may not read is not found."""
    version = await documents.get_version(key, label, reader(access, today))
    if not visible(access, study, version, today):
        raise PermissionDeniedException(f"{access.user_id} may not see {key.name}")
    if meaning in set(Meaning) and not signatures.may_sign(signed_in(access).grants, key, meaning, today):
        raise PermissionDeniedException(f"{access.user_id} may not sign {key.name} for {meaning}")


async def sign_as_viewer(
    access: Access,
    study: str,
    key: DocumentKey,
    label: str,
    meaning: str,
    password: str,
    typed_user_id: str | None,
    today: date,
    rules: AccountRules,
    installation: Installation,
) -> signatures.SignatureRecord:
    await check_may_sign(access, study, key, label, meaning, today)
    signing = await signing_ceremony(signed_in(access), meaning, password, typed_user_id, rules=rules)
    return await signatures.sign(key, label, signing, installation)


class SignatureController(Controller):
    path = "/api/studies/{study:str}/documents"
    tags = ["documents"]

    @get("/signatures", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def list_signatures(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        name: FromQuery[Name],
        label: FromQuery[Code],
        installation: InstallationDep,
        site: QueryStr = None,
    ) -> SignaturesOut:
        """The version's signatures, each judged now against the signer registry, and the files printing them."""
        key = DocumentKey(study, site or None, name)
        if not visible(access, study, await documents.get_version(key, label, reader(access, today)), today):
            raise PermissionDeniedException(f"{access.user_id} may not see {name}")
        found = await signatures.of_version(key, label, installation, reader(access, today))
        return msgspec.convert(found, SignaturesOut, from_attributes=True)

    @post(
        "/signatures",
        opt=needs(Action.SIGN, across_sites=True),
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    )
    async def sign(
        self,
        study: StudyPath,
        data: JSONBody[SignIn],
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
        installation: InstallationDep,
    ) -> SignatureOut:
        """Sign the version electronically (Part 11 11.50, 11.200): the password, and the user ID at the first
        signing of a continuous period. A wrong password signs nothing and is audited."""
        key = DocumentKey(study, data.site, data.name)
        made = await sign_as_viewer(
            access,
            study,
            key,
            data.label,
            data.meaning,
            data.password,
            data.user_id,
            today,
            account_rules,
            installation,
        )
        shown = (await signatures.of_version(key, data.label, installation)).signatures
        return msgspec.convert(
            next(s for s in shown if s.signature == made.signature), SignatureOut, from_attributes=True
        )

    @get("/signature-requests", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def signature_requests(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        name: FromQuery[Name],
        label: FromQuery[Code],
        site: QueryStr = None,
    ) -> list[SignatureRequestOut]:
        """Who was asked to sign the version, for which meaning, by whom; reminders; open, fulfilled or closed."""
        key = DocumentKey(study, site or None, name)
        if not visible(access, study, await documents.get_version(key, label, reader(access, today)), today):
            raise PermissionDeniedException(f"{access.user_id} may not see {name}")
        found = await signature_requests.requests_of_version(key, label, reader(access, today))
        return [msgspec.convert(r, SignatureRequestOut, from_attributes=True) for r in found]

    @post(
        "/signature-requests",
        opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True),
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def request_signature(
        self, study: StudyPath, data: JSONBody[SignatureRequestIn], access: AccessDep, today: Today
    ) -> SignatureRequestOut:
        """Ask a person whose grants allow it to sign the version with a meaning; audited. Their signature of it
        with that meaning fulfils the request."""
        may_manage(access, data.site, study)
        made = await signature_requests.request_signature(
            DocumentKey(study, data.site, data.name),
            data.label,
            data.signer_id,
            data.meaning,
            access.user_id,
            today,
            reader(access, today),
        )
        return msgspec.convert(made, SignatureRequestOut, from_attributes=True)

    @post(
        "/signature-requests/remind",
        opt=needs(Action.MANAGE_DOCUMENTS, across_sites=True),
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def remind(
        self, study: StudyPath, data: JSONBody[ReminderIn], access: AccessDep, today: Today
    ) -> SignatureRequestOut:
        """Remind the signer of an open request of the version; audited."""
        may_manage(access, data.site, study)
        key = DocumentKey(study, data.site, data.name)
        made = await signature_requests.remind(key, data.label, data.request, access.user_id, reader(access, today))
        return msgspec.convert(made, SignatureRequestOut, from_attributes=True)

    @get(
        "/file",
        opt=VIEW,
        media_type="application/octet-stream",
        operation_class=files(PDF, DOCX),  # a signed copy of a DOCX is a DOCX
        responses=problem_responses(400, 401, 403, 404),
    )
    async def file(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        name: FromQuery[Name],
        label: FromQuery[Code],
        kind: FromQuery[Annotated[str, msgspec.Meta(pattern="^(" + "|".join(KINDS) + ")$")]],
        installation: InstallationDep,
        site: QueryStr = None,
        inline: FromQuery[bool] = False,
    ) -> Response[bytes]:
        """The newest file of this kind made from the version: its signature page, the copy with the page
        appended, or that copy with the site's PAdES signature (`inline`: shown, not saved). Audited."""
        key = DocumentKey(study, site or None, name)
        version = await documents.get_version(key, label, reader(access, today))
        if not visible(access, study, version, today):
            raise PermissionDeniedException(f"{access.user_id} may not see {name}")
        data, made = await signatures.file_bytes(key, label, kind, installation, reader(access, today))
        if data is None or made is None:
            raise NotFound(f"version {label} of {name} has no {kind.replace('_', ' ')}")
        stem = version.file_name.rsplit(".", 1)[0]
        suffix = {"signature_page": ".signature-page.pdf", "signed_copy": ".signed-copy", "pades_signed": ".signed.pdf"}
        file_name = stem + suffix[kind] + ("." + version.file_name.rsplit(".", 1)[-1] if kind == "signed_copy" else "")
        await audit_log.record_alone(
            access.user_id,
            Change(
                "view" if inline else "export",
                "document_file",
                documents.record_id(key, label),
                None,
                {"kind": kind, "sha256": made.sha256},
            ),
        )
        return Response(
            data, media_type=made.media_type, headers={"Content-Disposition": attachment(file_name, inline)}
        )


class BinderController(Controller):
    path = "/api/studies/{study:str}/binder"
    tags = ["binder"]

    @get("/checklist", opt=VIEW, responses=problem_responses(400, 401, 403, 404))
    async def checklist(
        self, study: StudyPath, access: AccessDep, today: Today, site: FromQuery[Code]
    ) -> list[ChecklistItemOut]:
        """The site's expected documents: present, missing, expiring within 60 days, or expired."""
        access.require_site(site, "see the binder")
        items = await binder_checklist.site_checklist(study, site, today, reader(access, today))
        return [
            ChecklistItemOut(
                artifact={"unique_id": i.artifact.unique_id, "number": i.artifact.number, "name": i.artifact.name},
                scope=i.scope,
                person=i.person,
                consent_version=i.consent_version,
                state=i.state,
                document=i.document,
                expires_on=i.expires_on.isoformat() if i.expires_on else None,
            )
            for i in items
        ]

    @get("/checklist.pdf", opt=VIEW, media_type="application/pdf", responses=problem_responses(400, 401, 403, 404))
    async def checklist_report(
        self, study: StudyPath, access: AccessDep, today: Today, site: FromQuery[Code]
    ) -> Response[bytes]:
        """The site's expected-documents checklist as a PDF/A report. Audited as an export."""
        access.require_site(site, "see the binder")
        data = await binder_checklist.checklist_report(study, site, today, reader(access, today))
        await audit_log.record_alone(
            access.user_id, Change("export", "binder_checklist", f"{study}/{site}", None, {"as_of": today})
        )
        return Response(
            data,
            media_type="application/pdf",
            headers={"Content-Disposition": attachment(f"checklist-{study}-{site}-{today}.pdf")},
        )

    @get(
        "/export",
        opt=needs(Action.EXPORT, across_sites=True),
        media_type="application/zip",
        responses=problem_responses(400, 401, 403, 404, 503),
    )
    async def export(
        self, study: StudyPath, access: AccessDep, today: Today, installation: InstallationDep, site: QueryStr = None
    ) -> Response[bytes]:
        """The binder as a signed ZIP (manifest, detached signature, index, exchange.xml, registry): the study's
        documents and those of the sites the caller works at (or of `site`), the versions the caller sees (a
        monitor or a sponsor: released ones only). Audited."""
        if site:
            access.require_site(site, "export the binder")
        only = None if access.sites is None or access.sites.all_sites else set(access.sites.sites)

        def personal_at(where: str | None) -> bool:
            return access.may(Action.VIEW_PERSONAL_DATA, study, where, today)

        with tempfile.TemporaryDirectory() as directory:
            out = Path(directory) / "binder.zip"
            await binder_export.export(
                study,
                site or None,
                out,
                access.user_id,
                installation,
                personal_at=personal_at,
                only_sites=only,
                reader=reader(access, today),
            )
            data = out.read_bytes()
        name = f"binder-{study}" + (f"-{site}" if site else "") + ".zip"
        return Response(data, media_type="application/zip", headers={"Content-Disposition": attachment(name)})
