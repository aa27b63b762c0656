"""Review steps of deviations and the signatures of the signed ones (migration 6)."""

from __future__ import annotations

from typing import Any

from trialcoord.kernel.database.engine import fetch


async def insert_step(
    deviation: int,
    step: str,
    from_state: str,
    to_state: str,
    actor: str,
    at: str,
    reason: str | None,
    detail: str | None,
) -> int:
    rows = await fetch(
        "INSERT INTO deviation_steps (deviation, step, from_state, to_state, actor, at, reason, detail)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}) RETURNING id",
        deviation,
        step,
        from_state,
        to_state,
        actor,
        at,
        reason,
        detail,
    )
    return rows[0]["id"]


async def steps(deviation: int) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT id, step, from_state, to_state, actor, at, reason, detail FROM deviation_steps"
        " WHERE deviation = {} ORDER BY id",
        deviation,
    )


async def insert_signature(
    deviation: int,
    step: int,
    decision: str,
    content_sha256: str,
    record: str,
    signer_id: str,
    printed_name: str,
    meaning: str,
    instant: str,
    key_id: str,
    value: str,
) -> None:
    await fetch(
        "INSERT INTO deviation_signatures (deviation, step, decision, content_sha256, record, signer_id,"
        " printed_name, meaning, instant, key_id, value) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        deviation,
        step,
        decision,
        content_sha256,
        record,
        signer_id,
        printed_name,
        meaning,
        instant,
        key_id,
        value,
    )


async def signatures(deviation: int | None = None) -> list[dict[str, Any]]:
    """With the signing step's target state and the deviation's audit name parts, for verification."""
    where = "WHERE g.deviation = {}" if deviation is not None else ""
    return await fetch(
        "SELECT g.deviation, g.step, g.decision, g.content_sha256, g.record, g.signer_id,"
        " g.printed_name, g.meaning, g.instant, g.key_id, g.value, t.step AS step_name,"
        " t.to_state, st.code AS study, s.code AS site, p.subject_id, d.state AS current_state,"
        " d.classification AS current_classification, d.category AS current_category,"
        " d.subcategory AS current_subcategory"
        " FROM deviation_signatures g JOIN deviation_steps t ON t.id = g.step"
        " JOIN deviations d ON d.id = g.deviation JOIN studies st ON st.id = d.study"
        " JOIN sites s ON s.id = d.site LEFT JOIN participants p ON p.id = d.participant"
        f" {where} ORDER BY g.id",
        *([deviation] if deviation is not None else []),
    )
