"""The system's Ed25519 signing key, kept encrypted at rest, and signed audit checkpoints.

Key file (JSON, written once with mode 0600, never into the repository):
    {"format": "trialcoord-ed25519-key/1", "public_key": "<64 hex>",
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<base64, 16 bytes>"},
     "cipher": "AES-256-GCM", "nonce": "<base64, 12 bytes>", "ciphertext": "<base64: 32-byte seed + tag>"}
The AES key is scrypt(passphrase); every member but `nonce` and `ciphertext` is the GCM associated data,
so a swapped public key or weakened parameters fail to decrypt. (cryptography's BestAvailableEncryption
uses PBKDF2 with 2,048 iterations only, hence our own envelope.)

Exported checkpoint file (JSON): {"size": 1234, "root": "<64 hex>", "issued_at": "2026-11-27T09:30:00.000000Z",
"key_id": "<16 hex>", "signature": "<128 hex>"}. The signature is Ed25519 over `Checkpoint.canonical_bytes()`
(canonical JSON of issued_at, kind, root, size); `key_id` is the first 8 bytes of SHA-256 of the raw
public key, in hex, and only says which public key to verify with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from trialcoord.kernel.rules.audit_verification import Checkpoint

KEY_FORMAT = "trialcoord-ed25519-key/1"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1  # 128 MiB per derivation: OWASP's recommended minimum for scrypt
MIN_SCRYPT_N, MIN_SCRYPT_R = 2**15, 8  # refuse weaker files: below 32 MiB per guess
MAX_SCRYPT_MEMORY = 2**30  # and files that would exhaust memory (scrypt needs 128 * n * r bytes)
CHECKPOINT_FIELDS = ("size", "root", "issued_at", "key_id", "signature")


class SigningKeyError(Exception):
    """A key or passphrase that cannot be used; the message says which file and why."""


class CheckpointError(Exception):
    """A checkpoint file that is malformed, or whose signature does not verify."""


# --- keys --------------------------------------------------------------------------------------------


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def read_passphrase(
    *, file: Path | None = None, env: str | None = None, environ: Mapping[str, str] = os.environ
) -> bytes:
    """The passphrase from exactly one source the caller names: a file (one line) or an environment variable."""
    if file is not None and env is None:
        try:
            text = Path(file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as error:
            raise SigningKeyError(f"passphrase file {file}: {error.strerror or error}") from None
        source = f"passphrase file {file}"
    elif env is not None and file is None:
        text, source = environ.get(env, ""), f"environment variable {env}"
    else:
        raise SigningKeyError("name exactly one passphrase source: a passphrase file or an environment variable")
    if not text:
        raise SigningKeyError(f"{source} is empty or missing")
    return text.encode()


def save_private_key(key: Ed25519PrivateKey, path: Path, passphrase: bytes) -> None:
    """Encrypt the key under the passphrase into a new file (never overwrites: losing a key is not undoable)."""
    text = encrypt_key(key, passphrase) + "\n"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise SigningKeyError(f"key file {path}: {error.strerror or error}") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def load_private_key(path: Path, passphrase: bytes) -> Ed25519PrivateKey:
    return decrypt_key(_read_key_file(path), passphrase, f"key file {path}")


def encrypt_key(key: Ed25519PrivateKey, passphrase: bytes, n: int = SCRYPT_N) -> str:
    """The key file's JSON text: also how signers' keys are kept in the database."""
    kdf = {"name": "scrypt", "n": n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(os.urandom(16))}
    header = {"format": KEY_FORMAT, "public_key": public_key_hex(key.public_key()), "kdf": kdf, "cipher": "AES-256-GCM"}
    nonce = os.urandom(12)
    seed = key.private_bytes_raw()
    ciphertext = AESGCM(_derive(passphrase, kdf)).encrypt(nonce, seed, _associated(header))
    return json.dumps({**header, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}, indent=2)


def decrypt_key(document: Any, passphrase: bytes, where: str) -> Ed25519PrivateKey:
    """The key an encrypted key document holds; `where` names it in errors (a file, a signer's key)."""
    if not isinstance(document, dict):
        raise SigningKeyError(f"{where} is corrupted: not a JSON object")
    try:
        header = {name: document[name] for name in ("format", "public_key", "kdf", "cipher")}
        nonce, ciphertext = _unb64(document["nonce"]), _unb64(document["ciphertext"])
        if header["format"] != KEY_FORMAT or header["cipher"] != "AES-256-GCM":
            raise ValueError(f"format {header['format']!r}, cipher {header['cipher']!r}")
        aes_key = _derive(passphrase, header["kdf"])
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        raise SigningKeyError(f"{where} is corrupted or not a trialcoord key ({error})") from None
    try:
        seed = AESGCM(aes_key).decrypt(nonce, ciphertext, _associated(header))
    except InvalidTag:
        raise SigningKeyError(f"{where}: wrong passphrase, or the key was altered") from None
    key = Ed25519PrivateKey.from_private_bytes(seed)
    if public_key_hex(key.public_key()) != header["public_key"]:
        raise SigningKeyError(f"{where}: the key does not match its public key")
    return key


def _read_key_file(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise SigningKeyError(f"key file {path}: {error.strerror or error}") from None
    except ValueError:
        raise SigningKeyError(f"key file {path} is corrupted: not JSON") from None


def _derive(passphrase: bytes, kdf: Mapping[str, Any]) -> bytes:
    name, n, r, p = kdf["name"], kdf["n"], kdf["r"], kdf["p"]
    if name != "scrypt" or n < MIN_SCRYPT_N or r < MIN_SCRYPT_R or 128 * n * r > MAX_SCRYPT_MEMORY or not 1 <= p <= 16:
        raise ValueError(f"unsupported or weak key derivation {name} n={n} r={r} p={p}")
    return Scrypt(salt=_unb64(kdf["salt"]), length=32, n=n, r=r, p=p).derive(passphrase)


def _associated(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- public keys -------------------------------------------------------------------------------------


def public_key_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes_raw().hex()


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key from 64 hex digits or a PEM block (the forms `signatures/` keeps)."""
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.strip()))
    except (ValueError, UnsupportedAlgorithm) as error:
        raise SigningKeyError(f"not an Ed25519 public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"not an Ed25519 public key but {type(key).__name__}")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes_raw()).digest()[:8].hex()


# --- signatures of statements and manifests ----------------------------------------------------------


def sign_bytes(message: bytes, private_key: Ed25519PrivateKey) -> str:
    return private_key.sign(message).hex()


def verify_hex(public_key: str, message: bytes, signature: str) -> bool:
    """True when `signature` (hex) is `public_key`'s (64 hex digits) Ed25519 signature of `message`."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(bytes.fromhex(signature), message)
    except (TypeError, ValueError, InvalidSignature):
        return False
    return True


# --- checkpoints -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with its signature: what the exported file and the stored copy hold. A sound checkpoint by
    construction, its signature unverified until `verify_checkpoint`."""

    size: int
    root: str
    issued_at: str
    key_id: str  # hex
    signature: str  # hex

    def __post_init__(self) -> None:
        Checkpoint(self.size, self.root, self.issued_at)  # ValueError unless size, root and issued_at are sound
        for name in ("key_id", "signature"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"checkpoint {name} must be hex text, not {getattr(self, name)!r}")

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.size, self.root, self.issued_at)

    def to_json(self) -> dict[str, Any]:
        """The JSON document, members in the file's order (CHECKPOINT_FIELDS)."""
        return {name: getattr(self, name) for name in CHECKPOINT_FIELDS}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> SignedCheckpoint:
        missing = [name for name in CHECKPOINT_FIELDS if name not in document]
        if missing:
            raise CheckpointError(f"checkpoint lacks {', '.join(missing)}")
        try:
            return cls(*(document[name] for name in CHECKPOINT_FIELDS))
        except ValueError as error:
            raise CheckpointError(f"checkpoint is malformed: {error}") from None


def sign_checkpoint(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> SignedCheckpoint:
    return SignedCheckpoint(
        checkpoint.size,
        checkpoint.root,
        checkpoint.issued_at,
        key_id(private_key.public_key()),
        private_key.sign(checkpoint.canonical_bytes()).hex(),
    )


def verify_checkpoint(signed: SignedCheckpoint, public_key: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint `signed` states, once its signature verifies under `public_key`."""
    if signed.key_id != key_id(public_key):
        raise CheckpointError(f"checkpoint was signed by key {signed.key_id}, not by key {key_id(public_key)}")
    checkpoint = signed.checkpoint
    try:
        public_key.verify(bytes.fromhex(signed.signature), checkpoint.canonical_bytes())
    except (ValueError, InvalidSignature):
        raise CheckpointError(
            "checkpoint signature does not verify: the checkpoint was altered after signing"
        ) from None
    return checkpoint


def save_checkpoint(signed: SignedCheckpoint, path: Path) -> None:
    Path(path).write_text(json.dumps(signed.to_json(), indent=2) + "\n", encoding="utf-8")


def load_checkpoint(path: Path) -> SignedCheckpoint:
    """The signed checkpoint a file holds, unverified: pass it to `verify_checkpoint`."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise CheckpointError(f"checkpoint file {path}: {error.strerror or error}") from None
    except ValueError:
        raise CheckpointError(f"checkpoint file {path} is not JSON") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"checkpoint file {path} is not a JSON object")
    return SignedCheckpoint.from_json(document)
