"""Pages: the impact of a protocol version before it takes effect, and applying it to a site or the study."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.response import Redirect, Template

from trialcoord.amendments import applying, impact, impact_outputs
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action, visible_sites
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader, Upload
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.sites import list_sites

MAX_PROTOCOL_BYTES = 1024 * 1024
VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
IMPACT_FIELDS = ("", "file", "version", "effective", "site")  # the fields the impact form shows errors at
IMPACT_ROWS_SHOWN = 200


class AmendmentPages(Controller):
    path = "/studies/{study:str}/amendments"
    include_in_schema = False

    @get("/", opt=VIEW)
    async def amendments_page(
        self, study: StudyPath, access: AccessDep, today: Today, moved: QueryStr = None, skipped: QueryStr = None
    ) -> Template:
        notice = None
        if moved is not None:
            notice = f"{_count(moved, 'participant')} moved, {skipped or 0} left as they are."
        return Template("amendments.html", context={**await _context(study, access, today), "notice": notice})

    @post("/impact", opt=VIEW, status_code=200, request_max_body_size=MAX_PROTOCOL_BYTES + 65536)
    async def impact(self, study: StudyPath, data: Upload, access: AccessDep, today: Today) -> Template | Response:
        form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
        version = form.text("version", "protocol version", required=False, choice=True)
        effective = form.date("effective", "date it takes effect", required=False)
        site = form.text("site", "site", required=False, choice=True)
        fmt = form.data.get("format") or "html"
        fmt = fmt if fmt in ("csv", "pdf") else "html"
        upload = data.get("file")
        source: tuple[str, str] | None = None  # the protocol's text and file name
        if isinstance(upload, UploadFile) and upload.filename:
            raw = await upload.read()
            try:
                source = raw.decode("utf-8-sig"), upload.filename
            except UnicodeDecodeError:
                form.errors["file"] = "The protocol file is not UTF-8 text (is it the YAML file?)."
        elif version is None:
            form.errors["version"] = "Choose a loaded version, or a protocol file."
        if form.errors:
            return await _rerender(study, access, today, form)
        if site is not None and not access.shows(site):
            raise PermissionDeniedException(f"{access.user_id} may not see site {site}")
        try:
            if source is None:
                if version is None:  # the form's checks above asked for a version or a file
                    raise AssertionError("neither a protocol file nor a loaded version")
                source = await protocols.version_source(study, version)
            text, name = source
            protocol = parse_protocol(text, file=name)
            sites = None if access.sites is None or access.sites.all_sites else access.sites.sites
            result = await impact.impact(study, protocol, text, effective, site=site, today=today, sites=sites)
        except (InvalidInput, NotFound) as error:
            for key, message in field_messages(error).items():  # a problem of the file names its own path
                key = key if key in IMPACT_FIELDS else "file"
                form.errors[key] = f"{form.errors[key]} {message}" if key in form.errors else message
            return await _rerender(study, access, today, form)
        if fmt != "html":
            content, media, filename = await impact_outputs.impact_file(result, fmt, access.user_id)
            return Response(
                content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
            )
        await impact_outputs.record_impact_read(result, fmt, access.user_id)
        context = await _context(study, access, today, form.data)
        return Template(
            "amendments.html",
            context={
                **context,
                "impact": result,
                # The result of a posted file has no address to page through: the first rows, the rest as CSV.
                "rows": (rows := impact_outputs.impact_rows(result))[:IMPACT_ROWS_SHOWN],
                "rows_total": len(rows),
                "totals": impact_outputs.impact_summary(result).totals,
            },
        )

    @post("/apply", opt=needs(Action.ENROLL_PARTICIPANT, across_sites=True))
    async def apply(self, study: StudyPath, data: Form, access: AccessDep, today: Today) -> Template | Redirect:
        form = FormReader(data)
        version = form.text("apply_version", "protocol version", choice=True)
        effective = form.date("apply_effective", "date it takes effect")
        reason = form.text("apply_reason", "reason")
        site = form.text("apply_site", "site", required=False, choice=True)
        confirmed = bool(form.data.get("apply_confirm_downgrade"))  # a checkbox: sent only when ticked
        if form.errors or version is None or effective is None or reason is None:  # each missing one has its error
            return await _rerender(study, access, today, form)
        if site is not None:
            access.require_site(site, "change protocol versions")
        elif access.sites is not None and not access.sites.all_sites:
            form.errors["apply_site"] = "Choose your site: you may not move every participant of the study."
            return await _rerender(study, access, today, form)
        try:
            moved = await applying.apply_version(
                study,
                version,
                effective,
                reason,
                site=site,
                today=today,
                actor=access.user_id,
                confirm_downgrade=confirmed,
            )
        except (InvalidInput, Conflict, NotFound) as error:
            form.errors.update({f"apply_{k}" if k else "": v for k, v in field_messages(error).items()})
            return await _rerender(study, access, today, form)
        return Redirect(
            f"/studies/{study}/amendments?moved={len(moved.moved)}&skipped={len(moved.skipped)}", status_code=303
        )


def _count(number: str, noun: str) -> str:
    return f"{number} {noun}" if number == "1" else f"{number} {noun}s"


async def _context(
    study: str, access: Access, today: date, form: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> dict[str, Any]:
    versions = await protocols.list_protocol_versions(study)
    sites = [row for row in await list_sites(study) if access.shows(row.code)]
    if access.viewer is None:  # the guard lets only a signed-in viewer reach these pages
        raise NotAuthorizedException("Sign in to continue.")
    enrol = visible_sites(access.viewer.grants, Action.ENROLL_PARTICIPANT, study, today)
    return {
        "study": await protocols.get_study(study),
        "version_options": [(row.version, f"{row.version} (effective {row.effective})") for row in versions],
        "site_options": [(row.code, f"{row.code} – {row.name}") for row in sites],
        "apply_sites": [(row.code, f"{row.code} – {row.name}") for row in sites if enrol.includes(row.code)],
        "may_apply": enrol.all_sites or bool(enrol.sites),
        "apply_all": enrol.all_sites,
        "form": form or {},
        "errors": errors or {},
        "today": today,
    }


async def _rerender(study: str, access: Access, today: date, form: FormReader) -> Template:
    context = await _context(study, access, today, form.data, form.errors)
    return Template("amendments.html", context=context, status_code=422)
