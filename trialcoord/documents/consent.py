"""Consent: the versions of a site's consent form, who signed which, the re-consent queue, and the visits
that a consent did not cover (issue 4, section 4; rules in `documents/rules/consent.py`).

A consent version is registered from an effective version of an informed consent form document (TMF
02.02.03, unique ID 040) of the same site, and becomes required from that document's effective date.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import date

from trialcoord.documents import consent_store as store
from trialcoord.documents import store as documents_store
from trialcoord.documents.rules.consent import (
    ConsentVersion,
    ParticipantConsent,
    ProcedureVisit,
    consent_deviation_candidates,
    consent_signatures,
    data_issues,
    reconsent_queue,
)
from trialcoord.documents.rules.documents import DocumentKey, DocumentStatus
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import Conflict, NotFound, invalid
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.scheduling import lookups, protocols
from trialcoord.scheduling.participants import participant_site, record_id, subject_row
from trialcoord.scheduling.visits import record_event

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
) -> dict:
    language, label = language.strip().lower(), label.strip()
    if not language or len(language) > 16 or not label or len(label) > 64:
        raise invalid("a consent version needs its language (such as en) and label", field="language")
    async with transaction(f"study {study}, consent version {label}"):
        found = await documents_store.find_document(study, site, document)
        row = await documents_store.find_version(found["id"], document_label) if found else None
        if row is None:
            raise NotFound(f"site {site} of study {study} has no document {document} version {document_label}")
        if found["artifact"] != CONSENT_FORM or row["status"] != "effective":
            raise invalid(
                f"document {document} version {document_label} is not an effective informed consent form"
                f" (TMF 02.02.03); it is {row['status']}, filed under {found['artifact']}",
                field="document",
            )
        versions = {v["version"] for v in await protocols.list_protocol_versions(study)}
        if protocol_version not in versions:
            raise invalid(f"study {study} has no protocol version {protocol_version}", field="protocol_version")
        if await store.find_version(study, site, language, label):
            raise Conflict(f"site {site} already has consent version {label} in language {language}")
        effective_on = documents_store.version_of(row, DocumentKey(study, site, document)).entered(
            DocumentStatus.EFFECTIVE
        )
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
    return {
        "study": study,
        "site": site,
        "language": language,
        "label": label,
        "protocol_version": protocol_version,
        "effective_on": effective_on,
    }


async def record_consent(
    study: str,
    subject_id: str,
    language: str,
    label: str,
    signed_on: date,
    obtained_by: str,
    today: date,
    actor: str = SYSTEM,
    signed_by: tuple[str, ...] | None = None,
) -> dict:
    """That the participant signed this consent version on `signed_on`, obtained by `obtained_by`, with the
    signature blocks `signed_by` signed (participant or representative, witness, person obtaining consent);
    None: not stated (recorded as unknown, never assumed). One act with the schedule: a first consent also
    records the protocol's consent event on that date."""
    signed_by = consent_signatures(signed_by) if signed_by is not None else ()
    site = await _site_of(study, subject_id)
    _check_signed(signed_on, obtained_by, today)
    async with transaction(f"study {study}, participant {subject_id}"):
        version = await store.find_version(study, site, language.strip().lower(), label.strip())
        if version is None:
            raise invalid(f"site {site} has no consent version {label} in language {language}", field="label")
        if signed_on < _day(version["effective_on"]):
            raise invalid(
                f"consent version {label} is effective from {version['effective_on']}; it cannot have been"
                f" signed on {signed_on}. A consent signed on paper before its version was registered is"
                " recorded with the paper document's reference instead",
                field="signed_on",
            )
        record = {
            "language": version["language"],
            "label": label,
            "signed_on": signed_on,
            "obtained_by": obtained_by.strip(),
            "signed_by": list(signed_by),
        }
        await _record(
            study,
            subject_id,
            site,
            signed_on,
            today,
            actor,
            record,
            f"consent/{label}",
            lambda participant: store.insert_consent(
                participant,
                version["id"],
                signed_on.isoformat(),
                obtained_by.strip(),
                utc_instant(audit_log.clock()),
                signed_by,
            ),
        )
    return {"subject_id": subject_id, "site": site, **record}


async def record_paper_consent(
    study: str,
    subject_id: str,
    signed_on: date,
    reference: str,
    obtained_by: str,
    today: date,
    actor: str = SYSTEM,
    label: str | None = None,
    language: str | None = None,
    signed_by: tuple[str, ...] | None = None,
) -> dict:
    """A consent signed on paper before its version was registered here (legacy paper consent), recorded with
    the paper document's `reference` (and the version `label` and `language` printed on it, when known). It
    satisfies the before-consent checks; for re-consent it counts as the registered version its label names,
    else as older than every version of the site that became effective after it was signed."""
    signed_by = consent_signatures(signed_by) if signed_by is not None else ()
    site = await _site_of(study, subject_id)
    _check_signed(signed_on, obtained_by, today)
    reference, label = reference.strip(), (label or "").strip() or None
    language = (language or "").strip().lower() or None
    if not reference or len(reference) > 200:
        raise invalid(
            "give the paper consent document's reference (such as its binder location or scan number),"
            " at most 200 characters",
            field="paper_reference",
        )
    async with transaction(f"study {study}, participant {subject_id}"):
        record = {
            "language": language,
            "label": label,
            "signed_on": signed_on,
            "obtained_by": obtained_by.strip(),
            "signed_by": list(signed_by),
            "paper_reference": reference,
        }
        await _record(
            study,
            subject_id,
            site,
            signed_on,
            today,
            actor,
            record,
            f"consent/paper/{signed_on}",
            lambda participant: store.insert_consent(
                participant,
                None,
                signed_on.isoformat(),
                obtained_by.strip(),
                utc_instant(audit_log.clock()),
                signed_by,
                (reference, label, language),
            ),
        )
    return {"subject_id": subject_id, "site": site, **record}


async def _site_of(study: str, subject_id: str) -> str:
    site = await participant_site(study, subject_id)
    if site is None:
        raise NotFound(f"study {study} has no participant {subject_id}")
    return site


def _check_signed(signed_on: date, obtained_by: str, today: date) -> None:
    if signed_on > today:
        raise invalid(f"a consent cannot be recorded for {signed_on}, after today ({today})", field="signed_on")
    if not obtained_by.strip():
        raise invalid("name the person who obtained the consent", field="obtained_by")


async def _record(study, subject_id, site, signed_on, today, actor, record, name, insert) -> None:
    """Store a consent and, when it is the participant's first, the protocol's consent event on its date (in the
    caller's transaction, both audited)."""
    subject = await subject_row(study, subject_id)
    event = (await protocols.protocol_of(subject["protocol_version"], subject["sha256"])).consent_event
    recorded = subject["events"].get(event) if event else None
    if recorded is not None and signed_on < recorded:
        raise invalid(
            f"study {study}, participant {subject_id}: the consent event is recorded on {recorded}; a consent"
            f" signed earlier, on {signed_on}, means that date is wrong: correct the {event} event first"
            " (with a reason)",
            field="signed_on",
        )
    await insert(subject["id"])
    await audit_log.record(
        actor,
        Change("create", "participant_consent", record_id(study, site, subject_id, name), None, record),
    )
    if event is not None and recorded is None:
        await record_event(study, subject_id, event, signed_on, today=today, actor=actor)


async def reconsent(study: str, today: date) -> list[dict]:
    """Active participants whose latest consent is older than the newest effective version for them."""
    async with read():
        versions, signed = await _versions_and_consents(study, active_only=True)
    site_of = {c.subject_id: c.site for c in signed}
    return [
        {
            "subject_id": e.subject_id,
            "site": site_of[e.subject_id],
            "signed_version": e.signed_version,
            "required_version": e.required_version,
            "required_since": e.required_since,
        }
        for e in reconsent_queue(signed, versions, today)
    ]


async def candidates(study: str, participants: Collection[int] | None = None) -> list[dict]:
    """Visits that took place before the participant's consent, or after re-consent became required and
    was not obtained: consent deviation candidates (reviewed in the deviation workflow). Sites without a
    consent version registered are not checked. `participants`: only these (ids; a detection's scope)."""
    async with read():
        versions, signed = await _versions_and_consents(study, active_only=False, participants=participants)
        # Only sites whose consent forms are kept here are checked: elsewhere no consent is "missing".
        tracked = {v.site for v in versions}
        visits = (
            [row for row in await store.visits_done(study, participants) if row["site"] in tracked] if tracked else []
        )
    site_of = {row["subject_id"]: row["site"] for row in visits}
    found = consent_deviation_candidates(
        [ProcedureVisit(row["subject_id"], row["code"], _day(row["actual"])) for row in visits], signed, versions
    )
    return [
        {
            "subject_id": c.subject_id,
            "site": site_of[c.subject_id],
            "visit": c.visit,
            "visit_on": c.visit_on,
            "rule": str(c.rule),
            "consented_on": c.consented_on,
            "required_since": c.required_since,
            "signed_version": c.signed_version,
            "required_version": c.required_version,
        }
        for c in found
    ]


async def _versions_and_consents(study: str, active_only: bool, participants: Collection[int] | None = None):
    """The study's consent versions and its participants' consents: those recorded, and a consent of unknown
    version for each consent event recorded on a day no consent record has."""
    study_row = await lookups.find_study(study)
    if study_row is None:
        raise NotFound(f"study {study} does not exist")
    versions = [_version(row) for row in await store.list_versions(study)]
    signed = [
        ParticipantConsent(
            row["subject_id"],
            _version(row) if row["id"] is not None else None,
            _day(row["signed_on"]),
            row["obtained_by"],
            tuple(json.loads(row["signed_by"])) if row["signed_by"] else (),
            row["participant_site"],
            row["paper_reference"],
            row["paper_label"],
            row["paper_language"],
        )
        for row in await store.consents(study, active_only, participants)
    ]
    on_record = {(c.subject_id, c.signed_on) for c in signed}
    for row in await store.consent_events(study, await _consent_events(study_row["id"]), participants):
        if (active_only and row["status"] != "active") or (row["subject_id"], _day(row["date"])) in on_record:
            continue
        signed.append(ParticipantConsent(row["subject_id"], None, _day(row["date"]), "", (), row["site"]))
    return versions, signed


async def _consent_events(study_id: int) -> set[str]:
    """The names of the consent event in the study's protocol versions."""
    names = set()
    for row in await lookups.list_versions(study_id):
        event = (await protocols.protocol_of(row["id"], row["sha256"])).consent_event
        if event:
            names.add(event)
    return names


async def issues(study: str) -> list[dict]:
    """Consent data issues for the sites to resolve: a consent whose version nobody recorded (an import of the
    consent event, say), once per participant, at sites whose consent versions are kept here."""
    async with read():
        versions, signed = await _versions_and_consents(study, active_only=False)
    tracked = {v.site for v in versions}
    return [
        {"subject_id": issue.subject_id, "site": issue.site, "signed_on": issue.signed_on, "message": issue.message}
        for issue in data_issues(signed)
        if issue.site in tracked
    ]


async def versions_and_signatures(study: str) -> tuple[list[ConsentVersion], dict[str, set[str]]]:
    """The study's consent versions, and for each participant the labels of the versions signed."""
    async with read():
        versions, signed = await _versions_and_consents(study, active_only=False)
    labels: dict[str, set[str]] = {}
    for c in signed:
        if c.version is not None:
            labels.setdefault(c.subject_id, set()).add(c.version.label)
        elif c.label:
            labels.setdefault(c.subject_id, set()).add(c.label)
    return versions, labels


def _version(row: dict) -> ConsentVersion:
    return ConsentVersion(
        row["study"], row["site"], row["language"], row["label"], row["protocol_version"], _day(row["effective_on"])
    )


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


async def list_versions(study: str) -> list[dict]:
    async with read():
        versions, _ = await _versions_and_consents(study, active_only=True)
    return [
        {
            "study": v.study,
            "site": v.site,
            "language": v.language,
            "label": v.label,
            "protocol_version": v.protocol_version,
            "effective_on": v.effective_on,
        }
        for v in versions
    ]


async def of_participant(study: str, subject_id: str) -> tuple[list[dict], list[dict]]:
    """(the participant's consents, the consent versions of their site), oldest first."""
    site = await participant_site(study, subject_id)
    if site is None:
        raise NotFound(f"study {study} has no participant {subject_id}")
    async with read():
        versions, signed = await _versions_and_consents(study, active_only=False)
    mine = [
        {
            "language": c.version.language if c.version else c.language,
            "label": c.version_label,
            "signed_on": c.signed_on,
            "obtained_by": c.obtained_by,
            "signed_by": list(c.signed_by),
            "paper_reference": c.reference,
            "unknown": c.unknown,
        }
        for c in signed
        if c.subject_id == subject_id
    ]
    offered = [
        {"language": v.language, "label": v.label, "effective_on": v.effective_on} for v in versions if v.site == site
    ]
    if not offered:  # a site whose consent forms are not kept here: a consent event is all there is to know
        mine = [c for c in mine if not c["unknown"]]
    return sorted(mine, key=lambda c: c["signed_on"]), offered
