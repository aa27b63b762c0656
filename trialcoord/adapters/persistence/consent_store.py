"""Rows of consent versions and of participants' consents (migration 4)."""

from __future__ import annotations

import json
from collections.abc import Collection

from trialcoord.adapters.persistence.engine import fetch

VERSION_COLUMNS = "c.id, c.study, c.site, c.language, c.label, c.protocol_version, c.document_version, c.effective_on"


async def find_version(study: str, site: str, language: str, label: str) -> dict | None:
    rows = await fetch(f"SELECT {VERSION_COLUMNS} FROM consent_versions c WHERE c.study = {{}} AND c.site = {{}}"
                       " AND c.language = {} AND c.label = {}", study, site, language, label)
    return rows[0] if rows else None


async def insert_version(study: str, site: str, language: str, label: str, protocol_version: str,
                         document_version: int, effective_on: str, at: str) -> None:
    await fetch("INSERT INTO consent_versions (study, site, language, label, protocol_version, document_version,"
                " effective_on, created_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
                study, site, language, label, protocol_version, document_version, effective_on, at)


async def list_versions(study: str) -> list[dict]:
    rows = await fetch(f"SELECT {VERSION_COLUMNS} FROM consent_versions c WHERE c.study = {{}}", study)
    return sorted(rows, key=lambda row: (row["site"], row["language"], row["effective_on"], row["label"]))


async def insert_consent(participant: int, version_id: int, signed_on: str, obtained_by: str, at: str,
                         signed_by: tuple[str, ...]) -> None:
    await fetch("INSERT INTO participant_consents (participant, consent_version, signed_on, obtained_by, recorded_at,"
                " signed_by) VALUES ({}, {}, {}, {}, {}, {})", participant, version_id, signed_on, obtained_by, at,
                json.dumps(list(signed_by)) if signed_by else None)


async def consents(study: str, active_only: bool = False, participants: Collection[int] | None = None) -> list[dict]:
    """Every consent of the study's participants (of those given), with the version signed."""
    condition = (" AND p.status = 'active'" if active_only else "") + _among(participants)
    return await fetch(f"SELECT p.subject_id, s.code AS participant_site, pc.signed_on, pc.obtained_by, pc.signed_by,"
                       f" {VERSION_COLUMNS}"
                       " FROM participant_consents pc JOIN consent_versions c ON c.id = pc.consent_version"
                       " JOIN participants p ON p.id = pc.participant JOIN sites s ON s.id = p.site"
                       f" JOIN studies st ON st.id = p.study WHERE st.code = {{}}{condition}", study)


async def visits_done(study: str, participants: Collection[int] | None = None) -> list[dict]:
    """Visits that took place (the procedures a consent must precede), by participant."""
    return await fetch("SELECT p.subject_id, s.code AS site, v.code, v.actual FROM visits v"
                       " JOIN participants p ON p.id = v.participant JOIN sites s ON s.id = p.site"
                       " JOIN studies st ON st.id = p.study WHERE st.code = {} AND v.actual IS NOT NULL"
                       f"{_among(participants)}", study)


def _among(participants: Collection[int] | None) -> str:
    """Only these participants (integer ids, inlined: a detection scope can be large)."""
    if participants is None:
        return ""
    return f" AND p.id IN ({', '.join(str(int(i)) for i in participants) or 'NULL'})"
