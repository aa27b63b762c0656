"""The window exceptions the deviation feature records (an investigator's approved extension of one visit's window),
read where the schedule shows a visit's window and books appointments in it."""

from __future__ import annotations

from trialcoord.kernel.database.engine import fetch

Extension = tuple[int, int]  # days added before the window, days added after it


async def extensions(participant: int) -> dict[str, Extension]:
    """The participant's approved extensions by visit code."""
    rows = await fetch(
        "SELECT visit, earlier_days, later_days FROM window_exceptions WHERE participant = {}", participant
    )
    return {row["visit"]: (row["earlier_days"], row["later_days"]) for row in rows}


async def extension(participant: int, visit: str) -> Extension | None:
    rows = await fetch(
        "SELECT earlier_days, later_days FROM window_exceptions WHERE participant = {} AND visit = {}",
        participant,
        visit,
    )
    return (rows[0]["earlier_days"], rows[0]["later_days"]) if rows else None
