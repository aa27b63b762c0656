"""Electronic signatures linked to the exact bytes they sign (Part 11 11.50, 11.70).

A signature covers the canonical JSON of its `Statement`: the document version's SHA-256, the signer ID,
the meaning and the UTC instant. Moving it to another version changes the bytes it covers, so it no
longer verifies (11.70). A key that was revoked or expired later keeps its old signatures verifiable as
"valid when made" (the registry of keys: accounts/rules/signers.py).
The cryptography itself (Ed25519) lives in `trialcoord/kernel/signing_keys.py`; this module says what
is signed and how a result is judged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Any

from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.accounts.rules.signers import SignerKey
from trialcoord.kernel.rules.audit_entries import canonical_json

STATEMENT_KIND = "trialcoord-signature/1"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@dataclass(frozen=True, slots=True)
class Statement:
    """What a signer signs: these four facts, nothing else."""

    version_sha256: str
    signer_id: str
    meaning: Meaning
    instant: str  # UTC, `utc_instant` form
    record: str = ""  # which record: `STUDY/SITE/documents/NAME/LABEL`, so equal bytes filed twice differ

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.version_sha256):
            raise ValueError("a signed version's SHA-256 is 64 lower-case hex digits")
        if not _INSTANT.fullmatch(self.instant):
            raise ValueError(f"instant {self.instant!r} is not a UTC instant like 2026-11-27T09:30:00.000000Z")
        Meaning(self.meaning)  # ValueError for a meaning outside the fixed list

    def canonical_bytes(self) -> bytes:
        return canonical_json(
            {
                "instant": self.instant,
                "kind": STATEMENT_KIND,
                "meaning": str(self.meaning),
                "record": self.record,
                "signer_id": self.signer_id,
                "version_sha256": self.version_sha256,
            }
        )


@dataclass(frozen=True, slots=True)
class Signature:
    """A statement, the printed name shown with it (11.50), and the Ed25519 signature by key `key_id`."""

    statement: Statement
    printed_name: str
    key_id: str
    value: str  # 128 hex digits

    def as_dict(self) -> dict[str, Any]:
        s = self.statement
        return {
            "version_sha256": s.version_sha256,
            "record": s.record,
            "signer_id": s.signer_id,
            "printed_name": self.printed_name,
            "meaning": str(s.meaning),
            "instant": s.instant,
            "key_id": self.key_id,
            "signature": self.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Raises ValueError (naming the field) for anything malformed."""
        try:
            statement = Statement(
                data["version_sha256"],
                data["signer_id"],
                Meaning(data["meaning"]),
                data["instant"],
                str(data.get("record", "")),
            )
            value, key_id = data["signature"], data["key_id"]
        except KeyError as missing:
            raise ValueError(f"a signature lacks {missing}") from None
        if not isinstance(value, str) or len(value) != 128 or not _HEX.fullmatch(value):
            raise ValueError("a signature value is 128 lower-case hex digits")
        return cls(statement, str(data.get("printed_name", "")), str(key_id), value)


class Verdict(StrEnum):
    VALID = "valid"
    VALID_WHEN_MADE = "valid when made"  # the key has since been revoked or replaced
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is not Verdict.INVALID


def judge(
    signature: Signature,
    registry: Mapping[str, SignerKey],
    expected_sha256: str | None,
    verify: Callable[[str, bytes, str], bool],
    now: str,
) -> Check:
    """Judge one signature against the registry (keyed by key ID).

    `verify(public_key_hex, message, signature_hex)` is the cryptographic check; `expected_sha256` is the
    SHA-256 of the bytes the signature is presented with (None: check the signature alone).
    """
    s = signature.statement
    if expected_sha256 is not None and s.version_sha256 != expected_sha256:
        return Check(
            Verdict.INVALID,
            f"it signs version {s.version_sha256[:12]}..., not these bytes"
            f" ({expected_sha256[:12]}...): moved from another version",
        )
    key = registry.get(signature.key_id)
    if key is None:
        return Check(Verdict.INVALID, f"key {signature.key_id} is not in the signer registry")
    if key.signer_id != s.signer_id:
        return Check(Verdict.INVALID, f"key {signature.key_id} belongs to {key.signer_id}, not to {s.signer_id}")
    if not verify(key.public_key, s.canonical_bytes(), signature.value):
        return Check(Verdict.INVALID, "the signature does not verify: the statement or the value was altered")
    if s.instant < key.valid_from or (key.valid_to is not None and s.instant >= key.valid_to):
        return Check(
            Verdict.INVALID,
            f"made at {s.instant}, outside key {key.key_id}'s validity ({key.valid_from} to {key.valid_to or 'now'})",
        )
    if key.valid_to is not None and key.valid_to <= now:
        return Check(
            Verdict.VALID_WHEN_MADE,
            f"key {key.key_id} ended {key.valid_to}" + (f" ({key.revoked_reason})" if key.revoked_reason else ""),
        )
    return Check(Verdict.VALID)


def local_time(instant: str, zone_name: str, zone: tzinfo) -> str:
    """The instant as the site reads it, with the zone named (11.50(a)(2)): `2026-11-27 10:30 CET (Europe/Berlin)`.

    `zone` is a tzinfo for `zone_name` (the caller builds it; the domain reads no zone database itself).
    """
    moment = datetime.strptime(instant, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).astimezone(zone)
    return f"{moment:%Y-%m-%d %H:%M:%S} {moment.tzname()} ({zone_name})"
