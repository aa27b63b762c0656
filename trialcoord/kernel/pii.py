"""Field-level encryption of participants' personal identifiers (HIPAA 164.312(a)(2)(iv)): names,
dates of birth, contact details, medical record numbers. AES-256-GCM from `cryptography`.

Stored value, version 1 (bytes):

    offset 0        version, 0x01
    offset 1        n, length of the key id (1-64)
    offset 2        key id, n ASCII bytes
    offset 2+n      nonce, 12 random bytes
    offset 14+n     AES-GCM ciphertext followed by its 16-byte tag

Associated data is the header (version, n, key id) followed by the UTF-8 of "<record>:<field>",
for example "participant:TST-1:1001:name". A value therefore decrypts only with its own key and only
as the field of the record it was written for: copied to another participant or field, it fails.
`record` must be a coded reference (study and subject ID), never personal data itself.

Keys: a key ring {"current": id, "keys": {id: base64 of 32 bytes}} from the file named by
TRIALCOORD_PII_KEY_FILE or, inline, from TRIALCOORD_PII_KEYS. Nothing here logs, and no error
message carries a plaintext or a key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
NONCE_SIZE = 12  # random 96-bit nonces: safe for 2**32 values per key, far beyond a site's data
TAG_SIZE = 16
KEY_SIZE = 32  # AES-256
KEY_FILE_VARIABLE = "TRIALCOORD_PII_KEY_FILE"
KEYS_VARIABLE = "TRIALCOORD_PII_KEYS"

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_FIELD = re.compile(r"[a-z][a-z0-9_]*")  # no ':', so "<record>:<field>" is unambiguous
_SHAPE = '{"current": "<key id>", "keys": {"<key id>": "<base64 of 32 random bytes>"}}'


class PiiError(Exception):
    """Personal data cannot be encrypted or decrypted; the message says what to fix."""


class KeyRingError(PiiError):
    """The key configuration (file, environment, key ids, key sizes) is unusable."""


class UnknownKeyError(PiiError):
    """A value was encrypted with a key id the key ring does not hold."""


class CiphertextError(PiiError):
    """A stored value is malformed, altered, moved, or encrypted with a different key of the same id."""


@dataclasses.dataclass(frozen=True)
class KeyRing:
    current: str
    keys: Mapping[str, bytes] = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", dict(self.keys))
        for key_id, key in self.keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise KeyRingError(f"key id {key_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
            if len(key) != KEY_SIZE:
                raise KeyRingError(f"key '{key_id}' has {len(key)} bytes; AES-256 needs {KEY_SIZE}")
        if self.current not in self.keys:
            raise KeyRingError(f"the current key '{self.current}' is not among the keys ({self._ids()})")

    @classmethod
    def generate(cls, key_id: str) -> KeyRing:
        return cls(key_id, {key_id: AESGCM.generate_key(bit_length=256)})

    def with_new_current_key(self, key_id: str) -> KeyRing:
        """Step 1 of a rotation: new values use a fresh key; old keys stay to read older values."""
        if key_id in self.keys:
            raise KeyRingError(f"key id '{key_id}' is already in the key ring; key ids are never reused")
        return KeyRing(key_id, {**self.keys, key_id: AESGCM.generate_key(bit_length=256)})

    def without_key(self, key_id: str) -> KeyRing:
        """Last step of a rotation, once no stored value uses `key_id` any more."""
        if key_id == self.current:
            raise KeyRingError(f"'{key_id}' is the current key and cannot be removed")
        return KeyRing(self.current, {k: v for k, v in self.keys.items() if k != key_id})

    def encrypt(self, plaintext: str, record: str, field: str) -> bytes:
        header = _header(self.current)
        nonce = os.urandom(NONCE_SIZE)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode("utf-8"), _ad(header, record, field))
        return header + nonce + sealed

    def decrypt(self, ciphertext: bytes, record: str, field: str) -> str:
        where = _where(record, field)
        header, key_id, nonce, sealed = _parse(ciphertext, where)
        if key_id not in self.keys:
            raise UnknownKeyError(
                f"{where} was encrypted with key '{key_id}', which the key ring does not hold (it holds {self._ids()})"
            )
        try:
            plaintext = AESGCM(self.keys[key_id]).decrypt(nonce, sealed, _ad(header, record, field))
        except InvalidTag:
            raise CiphertextError(
                f"{where} does not decrypt with key '{key_id}': the key is not the one it was encrypted with, "
                "the stored value was altered, or it was copied from another record or field"
            ) from None
        return plaintext.decode("utf-8")

    def to_json(self) -> str:
        keys = {k: base64.b64encode(v).decode("ascii") for k, v in sorted(self.keys.items())}
        return json.dumps({"current": self.current, "keys": keys}, indent=2) + "\n"

    def _ids(self) -> str:
        return ", ".join(sorted(self.keys))


def key_id_of(ciphertext: bytes) -> str:
    """The id of the key a stored value was encrypted with (to find values left to rotate)."""
    return _parse(ciphertext, "the value")[1]


@dataclasses.dataclass(frozen=True, slots=True)
class EncryptedField:
    record: str
    field: str
    ciphertext: bytes = dataclasses.field(repr=False)


def rotate(ring: KeyRing, values: Iterable[EncryptedField]) -> Iterator[EncryptedField]:
    """Re-encrypt under the current key every value still under an older one; yields only the
    values to store back, so re-running after an interruption does no extra work."""
    for value in values:
        if key_id_of(value.ciphertext) != ring.current:
            plaintext = ring.decrypt(value.ciphertext, value.record, value.field)
            yield dataclasses.replace(value, ciphertext=ring.encrypt(plaintext, value.record, value.field))


def _header(key_id: str) -> bytes:
    raw = key_id.encode("ascii")
    return bytes([VERSION, len(raw)]) + raw


def _where(record: str, field: str) -> str:
    if not record or not _FIELD.fullmatch(field):
        raise ValueError(f"a record reference and a field name such as 'name' are required, not {field!r}")
    return f"{record}:{field}"


def _ad(header: bytes, record: str, field: str) -> bytes:
    return header + _where(record, field).encode("utf-8")


def _parse(ciphertext: bytes, where: str) -> tuple[bytes, str, bytes, bytes]:
    """(header, key id, nonce, sealed) of a stored value, or CiphertextError naming what is wrong."""
    blob = bytes(ciphertext)
    if len(blob) < 2 or blob[0] != VERSION:
        raise CiphertextError(f"{where} is not an encrypted value of format version {VERSION}")
    end = 2 + blob[1]
    key_id = blob[2:end].decode("ascii", errors="replace")
    if len(blob) < end + NONCE_SIZE + TAG_SIZE or not _KEY_ID.fullmatch(key_id):
        raise CiphertextError(f"{where} is truncated or has a malformed header")
    return blob[:end], key_id, blob[end : end + NONCE_SIZE], blob[end + NONCE_SIZE :]


# --- key files and environment ---


def key_ring_from_json(text: str, source: str) -> KeyRing:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyRingError(f"{source}: not JSON ({exc.msg}, line {exc.lineno}); expected {_SHAPE}") from None
    if not (isinstance(data, dict) and isinstance(data.get("current"), str) and isinstance(data.get("keys"), dict)):
        raise KeyRingError(f"{source}: expected {_SHAPE}")
    try:
        return KeyRing(data["current"], {k: _decode_key(k, v) for k, v in data["keys"].items()})
    except KeyRingError as exc:
        raise KeyRingError(f"{source}: {exc}") from None


def _decode_key(key_id: str, text: object) -> bytes:
    if not isinstance(text, str):
        raise KeyRingError(f"key '{key_id}' must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise KeyRingError(f"key '{key_id}' is not valid base64") from None


def load_key_file(path: Path) -> KeyRing:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyRingError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyRingError(f"key file {path} cannot be read: {exc.__class__.__name__}") from None
    return key_ring_from_json(text, f"key file {path}")


def key_ring_from_environment(environ: Mapping[str, str] = os.environ) -> KeyRing:
    file, inline = environ.get(KEY_FILE_VARIABLE), environ.get(KEYS_VARIABLE)
    if file and inline:
        raise KeyRingError(f"set {KEY_FILE_VARIABLE} or {KEYS_VARIABLE}, not both")
    if file:
        return load_key_file(Path(file))
    if inline:
        return key_ring_from_json(inline, KEYS_VARIABLE)
    raise KeyRingError(
        f"no key for personal data: set {KEY_FILE_VARIABLE} to a key file "
        f"(see docs/access-control.md to create one) or {KEYS_VARIABLE} to {_SHAPE}"
    )


def write_key_file(path: Path, ring: KeyRing, replace: bool = False) -> None:
    """Write `ring` readable by its owner only (0600). An existing file is never overwritten unless
    `replace=True`, which swaps the whole file atomically: a crash leaves the old ring or the new one."""
    if not replace:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyRingError(f"key file {path} already exists; it is never overwritten") from None
        _write_private(fd, ring.to_json())
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        _write_private(fd, ring.to_json())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def generate_key_file(path: Path, key_id: str) -> KeyRing:
    ring = KeyRing.generate(key_id)
    write_key_file(path, ring)
    return ring


def _write_private(fd: int, text: str) -> None:
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(fd, 0o600)  # whatever the umask
        out.write(text)
        out.flush()
        os.fsync(fd)
