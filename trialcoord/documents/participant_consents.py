"""Participants' consents: that a participant signed a consent version (or a paper consent before its version was
registered here), one act with the schedule's consent event, and a participant's consents beside their site's
versions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from trialcoord.documents import consent_store as store
from trialcoord.documents.consent_records import consent_version, day, versions_and_consents
from trialcoord.documents.rules.consent import consent_signatures, in_force, replaced_by
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import NotFound, invalid
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.scheduling import protocols
from trialcoord.scheduling.participants import participant_site, record_id, subject_row
from trialcoord.scheduling.visits import record_event


@dataclass(frozen=True, slots=True)
class RecordedConsent:
    """A consent as recorded: on a registered version, or on paper (then `paper_reference` names the document)."""

    subject_id: str
    site: str
    language: str | None
    label: str | None
    signed_on: date
    obtained_by: str
    signed_by: list[str]
    paper_reference: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentOnRecord:
    """One of a participant's consents; `unknown`: known only from the consent event, its version not recorded."""

    language: str | None
    label: str
    signed_on: date
    obtained_by: str
    signed_by: list[str]
    paper_reference: str | None
    unknown: bool


@dataclass(frozen=True, slots=True)
class OfferedVersion:
    """A consent version of the participant's site."""

    language: str
    label: str
    effective_on: date


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
) -> RecordedConsent:
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
        if signed_on < day(version["effective_on"]):
            raise invalid(
                f"consent version {label} is effective from {version['effective_on']}; it cannot have been"
                f" signed on {signed_on}. A consent signed on paper before its version was registered is"
                " recorded with the paper document's reference instead",
                field="signed_on",
            )
        newer = replaced_by(
            consent_version(version), [consent_version(row) for row in await store.list_versions(study)], signed_on
        )
        if newer is not None:
            raise invalid(
                f"consent version {label} ({newer.language}) was replaced at site {site} by version {newer.label}"
                f" on {newer.effective_on}: a consent signed on {signed_on} is on version {newer.label}",
                field="label",
            )
        record: dict[str, Any] = {
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
    return RecordedConsent(subject_id, site, **record)


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
) -> RecordedConsent:
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
        record: dict[str, Any] = {
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
    return RecordedConsent(subject_id, site, **record)


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


async def _record(
    study: str,
    subject_id: str,
    site: str,
    signed_on: date,
    today: date,
    actor: str,
    record: dict[str, Any],
    name: str,
    insert: Callable[[int], Awaitable[object]],
) -> None:
    """Store a consent and, when it is the participant's first, the protocol's consent event on its date (in the
    caller's transaction, both audited)."""
    subject = await subject_row(study, subject_id)
    event = (await protocols.protocol_of(subject.protocol_version, subject.sha256)).consent_event
    recorded = subject.events.get(event) if event else None
    if recorded is not None and signed_on < recorded:
        raise invalid(
            f"study {study}, participant {subject_id}: the consent event is recorded on {recorded}; a consent"
            f" signed earlier, on {signed_on}, means that date is wrong: correct the {event} event first"
            " (with a reason)",
            field="signed_on",
        )
    await insert(subject.id)
    await audit_log.record(
        actor,
        Change("create", "participant_consent", record_id(study, site, subject_id, name), None, record),
    )
    if event is not None and recorded is None:
        await record_event(study, subject_id, event, signed_on, today=today, actor=actor)


async def of_participant(study: str, subject_id: str, on: date) -> tuple[list[ConsentOnRecord], list[OfferedVersion]]:
    """(the participant's consents, oldest first; the consent versions of their site in force on `on`, the day a
    consent is signed: one per language)."""
    site = await participant_site(study, subject_id)
    if site is None:
        raise NotFound(f"study {study} has no participant {subject_id}")
    async with read():
        versions, signed = await versions_and_consents(study, active_only=False)
    mine = [
        ConsentOnRecord(
            c.version.language if c.version else c.language,
            c.version_label,
            c.signed_on,
            c.obtained_by,
            list(c.signed_by),
            c.reference,
            c.unknown,
        )
        for c in signed
        if c.subject_id == subject_id
    ]
    offered = [OfferedVersion(v.language, v.label, v.effective_on) for v in in_force(versions, site, on)]
    if not any(v.site == site for v in versions):  # consent forms not kept here: a consent event is all there is
        mine = [c for c in mine if not c.unknown]
    return sorted(mine, key=lambda c: c.signed_on), offered
