"""The system's own keys, read once per installation (`kernel/installation.py`): the passphrase that wraps signers'
private keys, the Ed25519 key that signs audit checkpoints and binder manifests, and the site's PAdES
credentials.

All three live outside the repository (data/ by default, see `trialcoord/config.py`), encrypted at rest:
the Ed25519 key and signers' keys under scrypt + AES-GCM, the PAdES credentials as PKCS#12 with 600,000
PBKDF2 rounds. Without them signing answers 503 (NotConfigured), never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trialcoord.kernel import signing_keys
from trialcoord.kernel.config import Settings
from trialcoord.kernel.problems import NotConfigured


@dataclass
class SystemKeys:
    passphrase: bytes = field(repr=False)  # wraps signers' private keys (and the files below)
    manifest_key: Ed25519PrivateKey = field(repr=False)
    pades: tuple[Any, Any] | None = field(default=None, repr=False)  # (ECDSA key, certificate)
    unlocked: dict[str, Ed25519PrivateKey] = field(default_factory=dict, repr=False)  # signers' keys, by key ID
    scrypt_n: int = signing_keys.SCRYPT_N  # the cost of wrapping a new signer's key (tests: the lowest accepted)

    @property
    def manifest_key_id(self) -> str:
        return signing_keys.key_id(self.manifest_key.public_key())


def load(settings: Settings | None) -> SystemKeys:
    if settings is None or settings.audit_key_file is None or not settings.audit_key_file.exists():
        where = settings.audit_key_file if settings else "TRIALCOORD_AUDIT_KEY_FILE"
        raise NotConfigured(f"signing is unavailable: no system key at {where}; run `trialcoord setup`")
    try:
        passphrase = signing_keys.read_passphrase(file=settings.audit_passphrase_file)
        manifest_key = signing_keys.load_private_key(settings.audit_key_file, passphrase)
    except signing_keys.SigningKeyError as error:
        raise NotConfigured(f"signing is unavailable: {error}") from None
    pades = None
    if settings.pades_file is not None and settings.pades_file.exists():
        from trialcoord.kernel.render.signed_pdf import load_credentials

        try:
            pades = load_credentials(settings.pades_file.read_bytes(), passphrase)
        except (OSError, ValueError) as error:
            raise NotConfigured(f"PAdES signing is unavailable: {settings.pades_file}: {error}") from None
    return SystemKeys(passphrase, manifest_key, pades)
