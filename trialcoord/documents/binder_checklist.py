"""The regulatory binder of a study or site: the expected-documents checklist (the signed export is
`binder_export.py`'s).

The checklist is the domain's (`tmf.checklist`) over what is filed now: effective versions (and, for
documents no IRB/IEC approves, approved ones), the people granted roles at the site (the delegation
log's staff), and the effective consent forms whose IRB/IEC approval letters must be filed. Given a `Reader`,
only what they see counts: an approval letter left in draft is missing to a monitor or a sponsor. Both the checklist
and the export are audited as exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from urllib.parse import quote, urlencode

from anyio import to_thread

from trialcoord.accounts import users
from trialcoord.documents.documents import ArtifactRef, StoredVersion, versions_in
from trialcoord.documents.rules.documents import DocumentStatus, Reader
from trialcoord.documents.rules.tmf import (
    IRB_APPROVED,
    PRINCIPAL_INVESTIGATOR,
    SITE_CHECKLIST,
    FiledDocument,
    StaffMember,
    checklist,
)
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.problems import NotFound, invalid
from trialcoord.kernel.rules.access import Role
from trialcoord.scheduling import lookups

IN_FORCE = {DocumentStatus.EFFECTIVE}
STAFF_ROLES = {Role.INVESTIGATOR: PRINCIPAL_INVESTIGATOR, Role.COORDINATOR: "coordinator"}


@dataclass(frozen=True, slots=True)
class ChecklistEntry:
    """A document the site's binder is expected to hold, and its state: present, missing, expiring or expired."""

    artifact: ArtifactRef
    scope: str
    person: str | None
    consent_version: str | None
    state: str
    document: str | None  # the filed version that satisfies it: "NAME LABEL"
    expires_on: date | None
    site: str | None = None  # where it is expected (None: at study level)
    document_name: str | None = None  # the filed document's name: a renewal is a new version of it

    @property
    def to_file(self) -> bool:
        """Missing, expiring or expired: a version to upload."""
        return self.state != "present"


async def document_rows(study: str, site: str | None, reader: Reader | None = None) -> list[StoredVersion]:
    """The versions of the study's documents (and the site's, given one) the `reader` (given one) sees."""
    async with read():
        found = await lookups.find_study(study)
        if found is None:
            raise NotFound(f"study {study} does not exist")
        if site is not None and await lookups.find_site(found["id"], site) is None:
            raise invalid(f"study {study} has no site {site}", field="site")
        return await versions_in(study, site, reader)


def _in_force(stored: StoredVersion) -> bool:
    status = stored.version.status
    return status in IN_FORCE or (status is DocumentStatus.APPROVED and stored.artifact not in IRB_APPROVED)


async def site_checklist(study: str, site: str, today: date, reader: Reader | None = None) -> list[ChecklistEntry]:
    """The site's expected documents: present, missing, expiring within 60 days, or expired; of the versions
    the `reader` (given one) sees."""
    rows = await document_rows(study, site, reader)
    filed = []
    consents = []
    for row in rows:
        if not _in_force(row):
            continue
        version = row.version
        dated = version.entered(DocumentStatus.EFFECTIVE) or version.entered(DocumentStatus.APPROVED) or today
        filed.append(
            FiledDocument(
                row.artifact,
                version.key.site,
                row.person,
                f"{version.key.name} {version.label}",
                version.sha256,
                dated,
                row.expires_on,
                version.key.name,
            )
        )
        if row.artifact == "040" and version.key.site == site:
            consents.append(version)
    # An approval letter counts wherever it is filed in the study (any site, any status), once, with its expiry.
    counted = {f.sha256 for f in filed if f.artifact_id == "066"}
    for row in await document_rows(study, None, reader):
        version = row.version
        if row.artifact == "066" and version.sha256 not in counted:
            counted.add(version.sha256)
            filed.append(
                FiledDocument(
                    "066",
                    version.key.site,
                    None,
                    f"{version.key.name} {version.label}",
                    version.sha256,
                    today,
                    row.expires_on,
                    version.key.name,
                )
            )
    staff = await _staff(study, site, today)
    items = checklist(SITE_CHECKLIST, filed, staff, consents, today)
    return [
        ChecklistEntry(
            ArtifactRef(i.artifact.unique_id, i.artifact.number, i.artifact.name),
            i.rule.scope,
            i.person,
            i.consent_version,
            str(i.state),
            i.filed.label if i.filed else None,
            i.expires_on,
            site if i.rule.scope == "site" else None,
            i.filed.name if i.filed else None,
        )
        for i in items
    ]


async def checklist_report(study: str, site: str, today: date, reader: Reader | None = None) -> bytes:
    """The site's checklist as a PDF/A report, dated today (same day, same checklist: same bytes)."""
    from trialcoord.kernel.render.pdf_documents import render_pdf

    items = await site_checklist(study, site, today, reader)
    counts = {state: sum(1 for i in items if i.state == state) for state in ("missing", "expired", "expiring")}
    rows = [
        {
            "state": i.state,
            "artifact": f"{i.artifact.number} {i.artifact.name}",
            "for": i.person or (f"consent version {i.consent_version}" if i.consent_version else i.scope),
            "document": i.document,
            "expires_on": i.expires_on.isoformat() if i.expires_on else None,
        }
        for i in items
    ]
    data = {"study_code": study, "site": site, "as_of": today.isoformat(), "counts": counts, "items": rows}
    return await to_thread.run_sync(
        lambda: render_pdf(
            "binder_checklist",
            data,
            created_at=f"{today.isoformat()}T00:00:00.000000Z",
            title=f"Expected documents of site {site}",
            version_label=today.isoformat(),
        )
    )


async def _staff(study: str, site: str, today: date) -> list[StaffMember]:
    async with read():
        grants = await users.grants_at(study, site)
    return [
        StaffMember(g.user_id, STAFF_ROLES[Role(g.role)])
        for g in grants
        if g.role in {str(r) for r in STAFF_ROLES}
        and g.valid_from <= today
        and (g.valid_to is None or today <= g.valid_to)
    ]


def upload_path(study: str, item: ChecklistEntry) -> str:
    """The upload form prefilled for a checklist row: its artifact, site and person (and, to renew, its document);
    the binder page and the home page link each gap to it."""
    query = {
        "artifact": item.artifact.unique_id,
        "site": item.site,
        "person": item.person,
        "name": item.document_name,
    }
    kept = {k: v for k, v in query.items() if v}
    return f"/studies/{quote(study, safe='')}/documents/new?" + urlencode(kept, quote_via=quote)
