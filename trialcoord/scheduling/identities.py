"""Participants' personal data (HIPAA 164.312(a)(2)(iv), (e)(2)(ii)): encrypted field by field at rest.

The study subject ID is the only identifier anywhere else: schedules, worklists, the audit trail (which
records that a field was set or changed, never its value) and exports. Values are bound to their
participant and field (AES-GCM associated data), so a value copied to another row does not decrypt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from trialcoord.kernel import audit_log, pii
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.config import get_settings
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import NotConfigured, NotFound, invalid
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.scheduling import identities_store as store
from trialcoord.scheduling import participants
from trialcoord.scheduling.rules.facts import check_happened

FIELDS = store.FIELDS
LABELS = {
    "name": "name",
    "date_of_birth": "date of birth",
    "contact": "contact details",
    "mrn": "medical record number",
}
MAX_LENGTH = 500


@dataclass(frozen=True, slots=True)
class PersonalData:
    """A participant's personal data, decrypted (the fields of `FIELDS`, in that order)."""

    name: str | None = None
    date_of_birth: str | None = None
    contact: str | None = None
    mrn: str | None = None


def key_ring() -> pii.KeyRing:
    """From TRIALCOORD_PII_KEY_FILE or TRIALCOORD_PII_KEYS, else the settings' default key file. Read per use,
    so a rotated key file takes effect without a restart."""
    import os

    try:
        if os.environ.get(pii.KEY_FILE_VARIABLE) or os.environ.get(pii.KEYS_VARIABLE):
            return pii.key_ring_from_environment()
        path: Path | None = get_settings().pii_key_file
        if path is not None and path.exists():
            return pii.load_key_file(path)
    except pii.PiiError as error:
        raise NotConfigured(f"personal data is unavailable: {error}") from None
    raise NotConfigured(f"personal data is unavailable: no key; run `trialcoord setup` or set {pii.KEY_FILE_VARIABLE}")


def record_name(study: str, subject_id: str) -> str:
    """What binds an encrypted value to its participant (AES-GCM associated data); readers of the stored values
    decrypt with it (the sponsor package reads birth dates to give ages, never the dates)."""
    return f"participant:{study}:{subject_id}"


async def get_identity(study: str, subject_id: str) -> PersonalData:
    ring = key_ring()
    async with read():
        participant = await _participant_id(study, subject_id)
        stored = await store.find(participant) or {}
    record = record_name(study, subject_id)
    return PersonalData(**{name: _decrypt(ring, stored.get(name), record, name) for name in FIELDS})


def _decrypt(ring: pii.KeyRing, value: bytes | None, record: str, name: str) -> str | None:
    """A value that does not decrypt (copied from another record, altered, or under a removed key) is an
    installation problem to report, never a crash: the message names the record, field and key, no data."""
    if not value:
        return None
    try:
        return ring.decrypt(value, record, name)
    except pii.PiiError as error:
        raise NotConfigured(f"personal data cannot be read: {error}") from None


async def set_identity(
    study: str,
    subject_id: str,
    values: dict[str, str | None],
    actor: str = SYSTEM,
    today: date | None = None,
) -> dict[str, str]:
    """Replace the given fields (None or '' clears one); the others stay as stored. Returns what changed:
    field name -> 'set', 'changed' or 'cleared'. A date of birth after `today` is refused (a fact, not a plan)."""
    today = today or date.today()
    cleaned = {name: _clean(name, values[name], today) for name in FIELDS if name in values}
    ring = key_ring()
    record = record_name(study, subject_id)
    async with transaction(f"study {study}, participant {subject_id}"):
        participant = await _participant_id(study, subject_id)
        stored = await store.find(participant)
        current = dict(stored or {name: None for name in FIELDS})
        summary: dict[str, str] = {}
        for name, value in cleaned.items():
            before = _decrypt(ring, current[name], record, name)
            if before == value:
                continue
            current[name] = ring.encrypt(value, record, name) if value else None
            summary[name] = "set" if before is None else "cleared" if value is None else "changed"
        if summary:
            await store.save(participant, current, utc_instant(audit_log.clock()), exists=stored is not None)
            site = await participants.participant_site(study, subject_id)
            if site is None:  # impossible: the participant was read above, in this transaction
                raise NotFound(f"study {study} has no participant {subject_id}")
            await audit_log.record(
                actor,
                Change(
                    "update" if stored else "create",
                    "participant_identity",
                    participants.record_id(study, site, subject_id),
                    None,
                    summary,
                ),
            )
    return summary


def _clean(name: str, value: str | None, today: date) -> str | None:
    value = (value or "").strip() or None
    if value is None:
        return None
    if len(value) > MAX_LENGTH or any(ord(c) < 32 for c in value):
        raise invalid(
            f"the {LABELS[name]} must be at most {MAX_LENGTH} characters, without control characters", field=name
        )
    if name == "date_of_birth":
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise invalid("the date of birth is written YYYY-MM-DD", field=name) from None
        if not 1900 <= day.year <= 2199:
            raise invalid("the date of birth must fall between 1900 and 2199", field=name)
        check_happened("the date of birth", day, today, name)
    return value


async def _participant_id(study: str, subject_id: str) -> int:
    return (await participants.subject_row(study, subject_id)).id


async def rotate_stored(ring: pii.KeyRing, actor: str = SYSTEM) -> int:
    """Re-encrypt every value not under the ring's current key; safe to re-run after an interruption."""
    async with transaction("key rotation"):
        values = await store.all_values()
        by_where = {
            (record_name(study, subject), field): participant for participant, study, subject, field, _ in values
        }
        encrypted = [
            pii.EncryptedField(record_name(study, subject), field, value) for _, study, subject, field, value in values
        ]
        count = 0
        for item in pii.rotate(ring, encrypted):
            await store.replace_value(by_where[(item.record, item.field)], item.field, item.ciphertext)
            count += 1
        await audit_log.record(
            actor,
            Change(
                "update", "key_ring", "personal_data", None, {"current_key": ring.current, "values_reencrypted": count}
            ),
        )
    return count


async def key_ids_in_use() -> set[str]:
    async with read():
        return {pii.key_id_of(value) for *_, value in await store.all_values()}
