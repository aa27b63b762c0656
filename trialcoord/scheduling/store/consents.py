"""The consent records the consent feature writes, read where the schedule needs the date of first consent."""

from __future__ import annotations

from trialcoord.kernel.database.engine import fetch


async def first_consents(study_id: int) -> dict[int, str]:
    """The date of each participant's earliest consent on record (ISO text), for the study's participants."""
    rows = await fetch(
        "SELECT pc.participant, MIN(pc.signed_on) AS first FROM participant_consents pc"
        " JOIN participants p ON p.id = pc.participant WHERE p.study = {} GROUP BY pc.participant",
        study_id,
    )
    return {row["participant"]: str(row["first"]) for row in rows}


async def first_signed(participant: int) -> dict | None:
    """The participant's earliest consent on record, with the label signed (or the paper's)."""
    rows = await fetch(
        "SELECT pc.signed_on, COALESCE(c.label, pc.paper_label, 'paper') AS label"
        " FROM participant_consents pc LEFT JOIN consent_versions c ON c.id = pc.consent_version"
        " WHERE pc.participant = {} ORDER BY pc.signed_on, pc.id LIMIT 1",
        participant,
    )
    return rows[0] if rows else None
