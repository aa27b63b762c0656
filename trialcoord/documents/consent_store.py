"""Rows of consent versions and of participants' consents (migration 4)."""

from __future__ import annotations

import json
from collections.abc import Collection

from trialcoord.kernel.database.engine import fetch

VERSION_COLUMNS = "c.id, c.study, c.site, c.language, c.label, c.protocol_version, c.document_version, c.effective_on"


async def find_version(study: str, site: str, language: str, label: str) -> dict | None:
    rows = await fetch(
        f"SELECT {VERSION_COLUMNS} FROM consent_versions c WHERE c.study = {{}} AND c.site = {{}}"
        " AND c.language = {} AND c.label = {}",
        study,
        site,
        language,
        label,
    )
    return rows[0] if rows else None


async def insert_version(
    study: str,
    site: str,
    language: str,
    label: str,
    protocol_version: str,
    document_version: int,
    effective_on: str,
    at: str,
) -> None:
    await fetch(
        "INSERT INTO consent_versions (study, site, language, label, protocol_version, document_version,"
        " effective_on, created_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
        study,
        site,
        language,
        label,
        protocol_version,
        document_version,
        effective_on,
        at,
    )


async def list_versions(study: str) -> list[dict]:
    rows = await fetch(f"SELECT {VERSION_COLUMNS} FROM consent_versions c WHERE c.study = {{}}", study)
    return sorted(rows, key=lambda row: (row["site"], row["language"], row["effective_on"], row["label"]))


async def insert_consent(
    participant: int,
    version_id: int | None,
    signed_on: str,
    obtained_by: str,
    at: str,
    signed_by: tuple[str, ...],
    paper: tuple[str, str | None, str | None] | None = None,
) -> None:
    """`paper`: (document reference, printed label, language) of a consent without a registered version."""
    reference, label, language = paper or (None, None, None)
    await fetch(
        "INSERT INTO participant_consents (participant, consent_version, signed_on, obtained_by, recorded_at,"
        " signed_by, paper_reference, paper_label, paper_language) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
        participant,
        version_id,
        signed_on,
        obtained_by,
        at,
        json.dumps(list(signed_by)) if signed_by else None,
        reference,
        label,
        language,
    )


async def consents(study: str, active_only: bool = False, participants: Collection[int] | None = None) -> list[dict]:
    """Every consent of the study's participants (of those given), with the version signed (NULL columns for a
    paper consent)."""
    condition = (" AND p.status = 'active'" if active_only else "") + _among(participants)
    return await fetch(
        f"SELECT p.subject_id, s.code AS participant_site, pc.signed_on, pc.obtained_by, pc.signed_by,"
        f" pc.paper_reference, pc.paper_label, pc.paper_language, {VERSION_COLUMNS}"
        " FROM participant_consents pc LEFT JOIN consent_versions c ON c.id = pc.consent_version"
        " JOIN participants p ON p.id = pc.participant JOIN sites s ON s.id = p.site"
        f" JOIN studies st ON st.id = p.study WHERE st.code = {{}}{condition}",
        study,
    )


async def consent_events(
    study: str, events: Collection[str], participants: Collection[int] | None = None
) -> list[dict]:
    """The recorded consent events (the schedule's date of informed consent) of the study's participants."""
    if not events:
        return []
    names = ", ".join("{}" for _ in events)
    return await fetch(
        "SELECT p.subject_id, s.code AS site, p.status, e.date FROM recorded_events e"
        " JOIN participants p ON p.id = e.participant JOIN sites s ON s.id = p.site"
        f" JOIN studies st ON st.id = p.study WHERE st.code = {{}} AND e.event IN ({names})"
        f"{_among(participants)}",
        study,
        *sorted(events),
    )


async def visits_done(study: str, participants: Collection[int] | None = None) -> list[dict]:
    """Visits that took place (the procedures a consent must precede), by participant."""
    return await fetch(
        "SELECT p.subject_id, s.code AS site, v.code, v.actual FROM visits v"
        " JOIN participants p ON p.id = v.participant JOIN sites s ON s.id = p.site"
        " JOIN studies st ON st.id = p.study WHERE st.code = {} AND v.actual IS NOT NULL"
        f"{_among(participants)}",
        study,
    )


def _among(participants: Collection[int] | None) -> str:
    """Only these participants (integer ids, inlined: a detection scope can be large)."""
    if participants is None:
        return ""
    return f" AND p.id IN ({', '.join(str(int(i)) for i in participants) or 'NULL'})"
