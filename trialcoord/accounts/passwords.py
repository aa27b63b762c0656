"""Password hashing with argon2id (argon2-cffi) and the password policy.

Production parameters are RFC 9106's second recommended option, the "low-memory" profile:
argon2id, 3 passes over 64 MiB with 4 lanes, 16-byte salt, 32-byte tag (argon2-cffi's own
default). The parameters are stored in every hash, so raising them later only makes
`needs_rehash` true for older hashes: re-hash the password at the next successful sign-in.
"""

from __future__ import annotations

from typing import TypeGuard

from argon2 import Parameters, PasswordHasher, Type, profiles
from argon2.exceptions import Argon2Error, InvalidHashError

from trialcoord.kernel.problems import Problem

PRODUCTION_PARAMETERS = profiles.RFC_9106_LOW_MEMORY
MIN_LENGTH = 12
MAX_LENGTH = 1024  # a longer "password" is an attempt to make hashing expensive, not a password


class PasswordHashing:
    """Hash, verify and re-hash passwords; tests pass cheap `parameters`, production uses the default."""

    def __init__(self, parameters: Parameters = PRODUCTION_PARAMETERS):
        if parameters.type is not Type.ID:
            raise ValueError(f"passwords are hashed with argon2id, not {parameters.type.name.lower()}")
        self.parameters = parameters
        self._hasher = PasswordHasher.from_parameters(parameters)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True only when `password` matches; a mismatch, a missing or a malformed hash is False.
        The comparison is argon2's own constant-time one."""
        if not _readable(stored_hash):
            return False
        try:
            return self._hasher.verify(stored_hash, password)
        except (Argon2Error, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters (or is unreadable): store a new one."""
        try:
            return not _readable(stored_hash) or self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True


def _readable(stored_hash: object) -> TypeGuard[str]:
    # An encoded hash is ASCII text; argon2-cffi raises UnicodeEncodeError on anything else.
    return isinstance(stored_hash, str) and stored_hash.isascii()


def password_problems(password: str, *, user_id: str, email: str) -> list[Problem]:
    """What is wrong with a new password, in words a person can act on; empty when it is acceptable.
    The messages never repeat the password."""
    length = len(password)
    checks = [
        (length < MIN_LENGTH, f"a password has at least {MIN_LENGTH} characters; this one has {length}"),
        (length > MAX_LENGTH, f"a password has at most {MAX_LENGTH} characters; this one has {length}"),
        (_same(password, user_id), "the password must not be your user ID"),
        (_same(password, email), "the password must not be your e-mail address"),
    ]
    return [Problem(message, field="password") for failed, message in checks if failed]


def _same(password: str, identifier: str) -> bool:
    return bool(identifier) and password.strip().casefold() == identifier.strip().casefold()
