"""Consent: the versions of a site's consent form, who signed which, the re-consent queue, and the visits
that a consent did not cover (issue 4, section 4; rules in `documents/rules/consent.py`).

This module reads the consent records as the rules take them: the study's consent versions and its participants'
consents. `consent_versions.py` registers and lists the versions, `participant_consents.py` records and shows a
participant's consents, and `consent_checks.py` holds what the records call for (the re-consent queue, consent
deviation candidates, data issues).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import date
from typing import Any

from trialcoord.documents import consent_store as store
from trialcoord.documents.rules.consent import ConsentVersion, ParticipantConsent
from trialcoord.kernel.problems import NotFound
from trialcoord.scheduling import lookups, protocols


async def versions_and_consents(
    study: str, active_only: bool, participants: Collection[int] | None = None
) -> tuple[list[ConsentVersion], list[ParticipantConsent]]:
    """The study's consent versions and its participants' consents: those recorded, and a consent of unknown
    version for each consent event recorded on a day no consent record has."""
    study_row = await lookups.find_study(study)
    if study_row is None:
        raise NotFound(f"study {study} does not exist")
    versions = [consent_version(row) for row in await store.list_versions(study)]
    signed = [
        ParticipantConsent(
            row["subject_id"],
            consent_version(row) if row["id"] is not None else None,
            day(row["signed_on"]),
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
        if (active_only and row["status"] != "active") or (row["subject_id"], day(row["date"])) in on_record:
            continue
        signed.append(ParticipantConsent(row["subject_id"], None, day(row["date"]), "", (), row["site"]))
    return versions, signed


async def _consent_events(study_id: int) -> set[str]:
    """The names of the consent event in the study's protocol versions."""
    names = set()
    for row in await lookups.list_versions(study_id):
        event = (await protocols.protocol_of(row["id"], row["sha256"])).consent_event
        if event:
            names.add(event)
    return names


def consent_version(row: dict[str, Any]) -> ConsentVersion:
    return ConsentVersion(
        row["study"], row["site"], row["language"], row["label"], row["protocol_version"], day(row["effective_on"])
    )


def day(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
