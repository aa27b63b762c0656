"""The versions of a site's consent form: registering one, and listing them.

A consent version is registered from an effective version of an informed consent form document (TMF
02.02.03, unique ID 040) of the same site, and becomes required from that document's effective date.
"""

from __future__ import annotations

from trialcoord.documents import consent_store as store
from trialcoord.documents import store as documents_store
from trialcoord.documents.consent_records import versions_and_consents
from trialcoord.documents.rules.consent import ConsentVersion
from trialcoord.documents.rules.documents import DocumentKey, DocumentStatus
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import Conflict, NotFound, invalid
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.scheduling import protocols

CONSENT_FORM = "040"


async def register_version(
    study: str,
    site: str,
    language: str,
    label: str,
    protocol_version: str,
    document: str,
    document_label: str,
    actor: str = SYSTEM,
) -> ConsentVersion:
    language, label = language.strip().lower(), label.strip()
    if not language or len(language) > 16 or not label or len(label) > 64:
        raise invalid("a consent version needs its language (such as en) and label", field="language")
    async with transaction(f"study {study}, consent version {label}"):
        found = await documents_store.find_document(study, site, document)
        row = await documents_store.find_version(found["id"], document_label) if found else None
        if found is None or row is None:
            raise NotFound(f"site {site} of study {study} has no document {document} version {document_label}")
        if found["artifact"] != CONSENT_FORM or row["status"] != "effective":
            raise invalid(
                f"document {document} version {document_label} is not an effective informed consent form"
                f" (TMF 02.02.03); it is {row['status']}, filed under {found['artifact']}",
                field="document",
            )
        versions = {v.version for v in await protocols.list_protocol_versions(study)}
        if protocol_version not in versions:
            raise invalid(f"study {study} has no protocol version {protocol_version}", field="protocol_version")
        if await store.find_version(study, site, language, label):
            raise Conflict(f"site {site} already has consent version {label} in language {language}")
        effective_on = documents_store.version_of(row, DocumentKey(study, site, document)).entered(
            DocumentStatus.EFFECTIVE
        )
        if effective_on is None:  # an effective version's history says since when, unless altered behind our back
            raise Conflict(f"document {document} version {document_label} is effective, but its history has no date")
        await store.insert_version(
            study,
            site,
            language,
            label,
            protocol_version,
            row["id"],
            effective_on.isoformat(),
            utc_instant(audit_log.clock()),
        )
        await audit_log.record(
            actor,
            Change(
                "create",
                "consent_version",
                f"{study}/{site}/consent/{language}/{label}",
                None,
                {
                    "protocol_version": protocol_version,
                    "document": document,
                    "document_version": document_label,
                    "sha256": row["sha256"],
                    "effective_on": effective_on,
                },
            ),
        )
    return ConsentVersion(study, site, language, label, protocol_version, effective_on)


async def list_versions(study: str) -> list[ConsentVersion]:
    async with read():
        versions, _ = await versions_and_consents(study, active_only=True)
    return versions
