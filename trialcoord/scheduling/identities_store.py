"""Encrypted personal data of participants: one row per participant, one AES-GCM value per field.

Values are the `pii` module's ciphertexts in base64 text, so the column type is the same on every engine.
"""

from __future__ import annotations

import base64

from trialcoord.kernel.database.engine import fetch

FIELDS = ("name", "date_of_birth", "contact", "mrn")


async def find(participant_id: int) -> dict[str, bytes | None] | None:
    rows = await fetch(
        f"SELECT {', '.join(FIELDS)} FROM participant_identities WHERE participant = {{}}", participant_id
    )
    if not rows:
        return None
    return {name: base64.b64decode(value) if value else None for name, value in rows[0].items()}


async def save(participant_id: int, values: dict[str, bytes | None], at: str, exists: bool) -> None:
    text = [base64.b64encode(value).decode() if (value := values.get(name)) else None for name in FIELDS]
    if exists:
        columns = ", ".join(f"{name} = {{}}" for name in FIELDS)
        await fetch(
            f"UPDATE participant_identities SET {columns}, updated_at = {{}} WHERE participant = {{}}",
            *text,
            at,
            participant_id,
        )
    else:
        await fetch(
            f"INSERT INTO participant_identities (participant, {', '.join(FIELDS)}, updated_at)"
            " VALUES ({}, {}, {}, {}, {}, {})",
            participant_id,
            *text,
            at,
        )


async def all_values() -> list[tuple[int, str, str, str, bytes]]:
    """(participant, study, subject, field, ciphertext) of every stored value, for key rotation."""
    rows = await fetch(
        f"SELECT i.participant, st.code AS study, p.subject_id, {', '.join('i.' + f for f in FIELDS)}"
        " FROM participant_identities i JOIN participants p ON p.id = i.participant"
        " JOIN studies st ON st.id = p.study"
    )
    return [
        (row["participant"], row["study"], row["subject_id"], name, base64.b64decode(row[name]))
        for row in rows
        for name in FIELDS
        if row[name]
    ]


async def replace_value(participant_id: int, field: str, value: bytes) -> None:
    if field not in FIELDS:
        raise ValueError(field)
    await fetch(
        f"UPDATE participant_identities SET {field} = {{}} WHERE participant = {{}}",
        base64.b64encode(value).decode(),
        participant_id,
    )
