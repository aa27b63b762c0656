"""The public signer registry: which key each signer held, and when (Part 11 11.100, 11.300).

The registry holds only public parts. A key that was revoked or expired later keeps its old signatures
verifiable as "valid when made" (the judging lives with the signatures, in documents/rules/signatures.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REGISTRY_FORMAT = "trialcoord-signer-registry/1"
_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@dataclass(frozen=True, slots=True)
class SignerKey:
    """One row of the public registry: a signer's key and the period it may sign in."""

    signer_id: str
    printed_name: str
    key_id: str
    public_key: str  # 64 hex digits (raw Ed25519)
    valid_from: str  # instants
    valid_to: str | None = None  # set when the key is revoked or replaced
    revoked_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "signer_id": self.signer_id,
            "printed_name": self.printed_name,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "valid_from": self.valid_from,
            "valid_to": self.valid_to,
            "revoked_reason": self.revoked_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignerKey:
        try:
            key = cls(
                str(data["signer_id"]),
                str(data["printed_name"]),
                str(data["key_id"]),
                str(data["public_key"]),
                str(data["valid_from"]),
                data.get("valid_to"),
                data.get("revoked_reason"),
            )
        except KeyError as missing:
            raise ValueError(f"a registry entry lacks {missing}") from None
        for name in ("valid_from", "valid_to"):
            value = getattr(key, name)
            if value is not None and not _INSTANT.fullmatch(str(value)):
                raise ValueError(f"registry entry {key.key_id}: {name} {value!r} is not a UTC instant")
        return key


def registry_document(keys: list[SignerKey], system_keys: list[dict[str, Any]], generated_at: str) -> dict[str, Any]:
    """The public registry as one JSON document (`signatures/registry.json`, and in every export)."""
    return {
        "format": REGISTRY_FORMAT,
        "generated_at": generated_at,
        "signers": [k.as_dict() for k in sorted(keys, key=lambda k: (k.signer_id, k.valid_from, k.key_id))],
        "system_keys": system_keys,
    }


def parse_registry(document: Mapping[str, Any]) -> tuple[dict[str, SignerKey], dict[str, dict[str, Any]]]:
    """(signer keys by key ID, system keys by key ID) from a registry document; ValueError names the fault."""
    if not isinstance(document, Mapping) or document.get("format") != REGISTRY_FORMAT:
        raise ValueError(f"not a signer registry (format {REGISTRY_FORMAT} expected)")
    signers = {}
    for position, entry in enumerate(document.get("signers") or []):
        if not isinstance(entry, Mapping):
            raise ValueError(f"signers[{position}] is not an object")
        key = SignerKey.from_dict(entry)
        signers[key.key_id] = key
    system = {}
    for position, entry in enumerate(document.get("system_keys") or []):
        if not isinstance(entry, Mapping) or "key_id" not in entry or "public_key" not in entry:
            raise ValueError(f"system_keys[{position}] needs key_id and public_key")
        system[str(entry["key_id"])] = dict(entry)
    return signers, system
