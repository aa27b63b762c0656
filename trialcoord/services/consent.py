"""Consent: the versions of a site's consent form, who signed which, the re-consent queue, and the visits
that a consent did not cover (issue 4, section 4; rules in `trialcoord/domain/consent.py`).

A consent version is registered from an effective version of an informed consent form document (TMF
02.02.03, unique ID 040) of the same site, and becomes required from that document's effective date.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from datetime import date

from trialcoord.adapters.persistence import consent_store as store
from trialcoord.adapters.persistence import documents_store
from trialcoord.adapters.persistence.engine import read, transaction
from trialcoord.adapters.persistence import repositories as repo
from trialcoord.domain.audit import utc_instant
from trialcoord.domain.documents import DocumentKey, DocumentStatus
from trialcoord.domain.consent import (
    ConsentVersion,
    ParticipantConsent,
    ProcedureVisit,
    consent_deviation_candidates,
    consent_signatures,
    reconsent_queue,
)
from trialcoord.services import audit_log, scheduling
from trialcoord.services.audit_log import SYSTEM, Change
from trialcoord.services.errors import Conflict, NotFound, invalid

CONSENT_FORM = "040"


async def register_version(study: str, site: str, language: str, label: str, protocol_version: str,
                           document: str, document_label: str, actor: str = SYSTEM) -> dict:
    language, label = language.strip().lower(), label.strip()
    if not language or len(language) > 16 or not label or len(label) > 64:
        raise invalid("a consent version needs its language (such as en) and label", field="language")
    async with transaction(f"study {study}, consent version {label}"):
        found = await documents_store.find_document(study, site, document)
        row = await documents_store.find_version(found["id"], document_label) if found else None
        if row is None:
            raise NotFound(f"site {site} of study {study} has no document {document} version {document_label}")
        if found["artifact"] != CONSENT_FORM or row["status"] != "effective":
            raise invalid(f"document {document} version {document_label} is not an effective informed consent form"
                          f" (TMF 02.02.03); it is {row['status']}, filed under {found['artifact']}", field="document")
        versions = {v["version"] for v in await scheduling.list_protocol_versions(study)}
        if protocol_version not in versions:
            raise invalid(f"study {study} has no protocol version {protocol_version}", field="protocol_version")
        if await store.find_version(study, site, language, label):
            raise Conflict(f"site {site} already has consent version {label} in language {language}")
        effective_on = documents_store.version_of(row, DocumentKey(study, site, document)).entered(DocumentStatus.EFFECTIVE)
        await store.insert_version(study, site, language, label, protocol_version, row["id"], effective_on.isoformat(),
                                   utc_instant(audit_log.clock()))
        await audit_log.record(actor, Change("create", "consent_version", f"{study}/{site}/consent/{language}/{label}",
                                             None, {"protocol_version": protocol_version, "document": document,
                                                    "document_version": document_label, "sha256": row["sha256"],
                                                    "effective_on": effective_on}))
    return {"study": study, "site": site, "language": language, "label": label,
            "protocol_version": protocol_version, "effective_on": effective_on}


async def record_consent(study: str, subject_id: str, language: str, label: str, signed_on: date, obtained_by: str,
                         today: date, actor: str = SYSTEM, signed_by: tuple[str, ...] | None = None) -> dict:
    """That the participant signed this consent version on `signed_on`, obtained by `obtained_by`, with the
    signature blocks `signed_by` signed (participant or representative, witness, person obtaining consent);
    None: not stated (recorded as unknown, never assumed)."""
    signed_by = consent_signatures(signed_by) if signed_by is not None else ()
    site = await scheduling.participant_site(study, subject_id)
    if site is None:
        raise NotFound(f"study {study} has no participant {subject_id}")
    if signed_on > today:
        raise invalid(f"a consent cannot be recorded for {signed_on}, after today ({today})", field="signed_on")
    if not obtained_by.strip():
        raise invalid("name the person who obtained the consent", field="obtained_by")
    async with transaction(f"study {study}, participant {subject_id}"):
        version = await store.find_version(study, site, language.strip().lower(), label.strip())
        if version is None:
            raise invalid(f"site {site} has no consent version {label} in language {language}", field="label")
        if signed_on < _day(version["effective_on"]):
            raise invalid(f"consent version {label} is effective from {version['effective_on']}; it cannot have been"
                          f" signed on {signed_on}", field="signed_on")
        participant = (await scheduling.subject_row(study, subject_id))["id"]
        await store.insert_consent(participant, version["id"], signed_on.isoformat(), obtained_by.strip(),
                                   utc_instant(audit_log.clock()), signed_by)
        await audit_log.record(actor, Change("create", "participant_consent",
                                             scheduling.record_id(study, site, subject_id, "consent", label), None,
                                             {"language": version["language"], "version": label,
                                              "signed_on": signed_on, "obtained_by": obtained_by.strip(),
                                              "signed_by": list(signed_by)}))
    return {"subject_id": subject_id, "site": site, "language": version["language"], "label": label,
            "signed_on": signed_on, "obtained_by": obtained_by.strip(), "signed_by": list(signed_by)}


async def reconsent(study: str, today: date) -> list[dict]:
    """Active participants whose latest consent is older than the newest effective version for them."""
    async with read():
        versions, signed = await _versions_and_consents(study, active_only=True)
    site_of = {c.subject_id: c.version.site for c in signed}  # consent versions belong to the participant's site
    return [{"subject_id": e.subject_id, "site": site_of[e.subject_id], "signed_version": e.signed_version,
             "required_version": e.required_version, "required_since": e.required_since}
            for e in reconsent_queue(signed, versions, today)]


async def candidates(study: str, participants: Collection[int] | None = None) -> list[dict]:
    """Visits that took place before the participant's consent, or after re-consent became required and
    was not obtained: consent deviation candidates (reviewed in the deviation workflow). Sites without a
    consent version registered are not checked. `participants`: only these (ids; a detection's scope)."""
    async with read():
        versions, signed = await _versions_and_consents(study, active_only=False, participants=participants)
        # Only sites whose consent forms are kept here are checked: elsewhere no consent is "missing".
        tracked = {v.site for v in versions}
        visits = ([row for row in await store.visits_done(study, participants) if row["site"] in tracked]
                  if tracked else [])
    site_of = {row["subject_id"]: row["site"] for row in visits}
    found = consent_deviation_candidates(
        [ProcedureVisit(row["subject_id"], row["code"], _day(row["actual"])) for row in visits], signed, versions)
    return [{"subject_id": c.subject_id, "site": site_of[c.subject_id], "visit": c.visit, "visit_on": c.visit_on,
             "rule": str(c.rule), "consented_on": c.consented_on, "required_since": c.required_since,
             "signed_version": c.signed_version, "required_version": c.required_version}
            for c in found]


async def _versions_and_consents(study: str, active_only: bool, participants: Collection[int] | None = None):
    if await repo.find_study(study) is None:
        raise NotFound(f"study {study} does not exist")
    versions = [_version(row) for row in await store.list_versions(study)]
    signed = [ParticipantConsent(row["subject_id"], _version(row), _day(row["signed_on"]), row["obtained_by"],
                                 tuple(json.loads(row["signed_by"])) if row["signed_by"] else ())
              for row in await store.consents(study, active_only, participants)]
    return versions, signed


def _version(row: dict) -> ConsentVersion:
    return ConsentVersion(row["study"], row["site"], row["language"], row["label"], row["protocol_version"],
                          _day(row["effective_on"]))


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


async def list_versions(study: str) -> list[dict]:
    async with read():
        versions, _ = await _versions_and_consents(study, active_only=True)
    return [{"study": v.study, "site": v.site, "language": v.language, "label": v.label,
             "protocol_version": v.protocol_version, "effective_on": v.effective_on} for v in versions]


async def of_participant(study: str, subject_id: str) -> tuple[list[dict], list[dict]]:
    """(the participant's consents, the consent versions of their site), oldest first."""
    site = await scheduling.participant_site(study, subject_id)
    if site is None:
        raise NotFound(f"study {study} has no participant {subject_id}")
    async with read():
        versions, signed = await _versions_and_consents(study, active_only=False)
    mine = [{"language": c.version.language, "label": c.version.label, "signed_on": c.signed_on,
             "obtained_by": c.obtained_by, "signed_by": list(c.signed_by)} for c in signed if c.subject_id == subject_id]
    offered = [{"language": v.language, "label": v.label, "effective_on": v.effective_on}
               for v in versions if v.site == site]
    return sorted(mine, key=lambda c: c["signed_on"]), offered
