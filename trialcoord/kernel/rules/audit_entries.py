"""The tamper-evident audit trail: entries, their canonical bytes, and an RFC 6962 Merkle tree over them.

Each entry is serialised to canonical JSON and hashed as a leaf; the leaves form a Merkle tree exactly as
RFC 6962 section 2.1 defines it. A tree (rather than a hash chain) because a checkpoint (size, root) of
an older tree can be proved a prefix of today's tree with a logarithmic consistency proof, so a copy
of a checkpoint held outside the database proves later that history was not rewritten.

This module holds the entries, their canonical bytes and sealing; `merkle_tree.py` the tree, and
`audit_verification.py` checkpoints and the verification of a stored trail.

Pure: no clock, no database. The design and its integration are in docs/audit-trail.md.
"""

from __future__ import annotations

import json
import re
from collections import abc
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from trialcoord.kernel.rules.merkle_tree import leaf_hash

UTC_INSTANT_PATTERN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to which record, when, and why.

    `old` and `new` hold the changed fields of a regulated record by name. Entries never hold raw
    personal data (names, dates of birth, contact details, medical record numbers): such a field is
    referenced, e.g. `{"identity": "participant_identity/42"}` or `{"name": "changed"}`, never copied
    or hashed, so redacting personal data never touches the trail. There is no field for it.
    """

    sequence: int  # 1, 2, 3, ... with no gaps: the position in the trail
    recorded_at: str  # UTC instant from the server clock, `utc_instant` form: 2026-11-27T09:30:00.000000Z
    actor: str  # user id, or "system"
    action: str  # create, update, delete, sign_in, sign_in_failed, grant, revoke, export, ...
    record_type: str  # participant, visit, grant, ...
    record_id: str
    old: Mapping[str, Any] | None = None
    new: Mapping[str, Any] | None = None
    reason: str | None = None


class StoredEntry(NamedTuple):
    """An entry as the trail stores it: its fields plus the leaf hash computed when it was written."""

    entry: AuditEntry
    leaf_hash: bytes  # 32 bytes; verification recomputes it from the entry's fields
    old_text: str | None = None  # set by `seal`: the canonical JSON of `old` and `new`, as they are stored
    new_text: str | None = None


def _refuse(value: object) -> None:
    raise TypeError(
        f"{type(value).__name__} is not allowed in an audit entry: pass dates and times as UTC ISO-8601"
        " strings and numbers as int or finite float, so a database's rendering never enters the hash"
    )


# One encoder, built once: sorted keys, no whitespace, raw UTF-8 (ensure_ascii off), NaN and infinity
# refused (ValueError), anything that is not JSON refused (TypeError).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse)


def canonical_json(value: Any) -> bytes:
    """RFC 8785-like canonical JSON: keys sorted (by code point, not UTF-16 unit), no whitespace, UTF-8.

    Numbers are Python's shortest round-trip form; audit payloads should prefer ints and strings.
    """
    return _ENCODER.encode(value).encode()


def canonical_bytes(entry: AuditEntry) -> bytes:
    return canonical_json(
        {
            "action": entry.action,
            "actor": entry.actor,
            "new": entry.new,
            "old": entry.old,
            "reason": entry.reason,
            "record_id": entry.record_id,
            "record_type": entry.record_type,
            "recorded_at": entry.recorded_at,
            "sequence": entry.sequence,
        }
    )


json_string = (  # the encoder's own, ensure_ascii off
    getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
)


def stored_bytes(
    sequence: int,
    recorded_at: str,
    actor: str,
    action: str,
    record_type: str,
    record_id: str,
    old: str | None,
    new: str | None,
    reason: str | None,
) -> bytes:
    """`canonical_bytes` of an entry from its stored columns, where `old`/`new` are the canonical JSON text
    `seal` wrote: the text is spliced in, not parsed and re-serialised (the slow part of verification).

    Equal to `canonical_bytes` for every sealed entry (tested); a stored text that differs in any byte, even
    one that parses to the same value, gives other bytes, so it is reported as altered, as it was.
    """
    return (
        f'{{"action":{json_string(action)},"actor":{json_string(actor)},"new":{"null" if new is None else new},'
        f'"old":{"null" if old is None else old},"reason":{"null" if reason is None else json_string(reason)},'
        f'"record_id":{json_string(record_id)},"record_type":{json_string(record_type)},'
        f'"recorded_at":{json_string(recorded_at)},"sequence":{int(sequence)}}}'
    ).encode()


def utc_instant(moment: datetime) -> str:
    """The one text form of an instant in the trail: UTC, microseconds, `Z`."""
    if moment.utcoffset() is None:
        raise ValueError("an audit instant needs a time zone; naive datetimes are ambiguous")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def seal(entry: AuditEntry) -> StoredEntry:
    """Check an entry about to be written and compute its leaf hash.

    Refuses anything whose JSON would not come back from the database with the same canonical bytes
    (such as non-string keys, which sort differently once they are strings), so a sound entry can
    never raise a false alarm later.
    """
    _check_fields(entry)
    old, new = _payload(entry.old, entry.sequence), _payload(entry.new, entry.sequence)
    # Each payload is encoded once and spliced in, as verification splices the stored text (`stored_bytes`).
    data = stored_bytes(
        entry.sequence,
        entry.recorded_at,
        entry.actor,
        entry.action,
        entry.record_type,
        entry.record_id,
        old,
        new,
        entry.reason,
    )
    return StoredEntry(entry, leaf_hash(data), old, new)


def _payload(value: Mapping[str, Any] | None, sequence: int) -> str | None:
    if value is None:
        return None
    if not _string_keys(value):  # an int key comes back from the database as a string, sorted differently
        raise ValueError(f"audit entry {sequence}: old and new must use string keys only")
    return _ENCODER.encode(value)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _string_keys(value: Any) -> bool:
    """Whether every mapping key inside is text, as the database's JSON gives it back (an int key would come back
    as a string and sort elsewhere). Exact types first: `isinstance` against an ABC costs more than sealing."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict or (kind is not list and kind is not tuple and isinstance(value, abc.Mapping)):
        for key, item in value.items():  # a loop, not all(): the payloads are small and this runs per entry
            if not isinstance(key, str) or (type(item) not in _SCALARS and not _string_keys(item)):
                return False
        return True
    if isinstance(value, (list, tuple)):  # subclasses too (a NamedTuple is encoded as a list)
        return all(type(item) in _SCALARS or _string_keys(item) for item in value)
    return True  # anything else, the encoder refuses with its own message


def _check_fields(entry: AuditEntry) -> None:
    at = f"audit entry {entry.sequence!r}"
    if type(entry.sequence) is not int or entry.sequence < 1:
        raise ValueError(f"{at}: sequence must be a positive integer")
    if not isinstance(entry.recorded_at, str) or not UTC_INSTANT_PATTERN.fullmatch(entry.recorded_at):
        raise ValueError(f"{at}: recorded_at must be a utc_instant string, not {entry.recorded_at!r}")
    for name in ("actor", "action", "record_type", "record_id"):
        value = getattr(entry, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{at}: {name} must be a non-empty string, not {value!r}")
    for name in ("old", "new"):
        value = getattr(entry, name)
        if value is not None and type(value) is not dict and not isinstance(value, abc.Mapping):
            raise ValueError(f"{at}: {name} must be a mapping of field names to values, or None")
    if entry.reason is not None and not isinstance(entry.reason, str):
        raise ValueError(f"{at}: reason must be a string or None")
