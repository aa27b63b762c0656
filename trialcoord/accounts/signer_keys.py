"""Signers' own keys (Part 11 11.100, 11.300): each signer's Ed25519 key, made at their first signature and kept
encrypted (scrypt + AES-GCM under the system passphrase), ended when the account is disabled or the key is
revoked; and the public signer registry built from them (`signatures/registry.json`)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from anyio import to_thread
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trialcoord.accounts import store
from trialcoord.accounts.rules.signers import SignerKey, registry_document
from trialcoord.kernel import audit_log, signing_keys
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import Conflict, NotConfigured, invalid
from trialcoord.kernel.rules.audit_entries import utc_instant

log = logging.getLogger(__name__)


async def key_of_signer(
    user_id: str, printed_name: str, installation: Installation
) -> tuple[SignerKey, Ed25519PrivateKey]:
    """The signer's key in force, made at their first signature (valid from when it was made)."""
    keys = installation.keys()
    async with read():
        found = await store.current_key(user_id)
    if found is not None:
        signer_key, encrypted = found
        if signer_key.key_id not in keys.unlocked:
            keys.unlocked[signer_key.key_id] = await to_thread.run_sync(
                signing_keys.decrypt_key, json.loads(encrypted), keys.passphrase, f"signing key of {user_id}"
            )
        return signer_key, keys.unlocked[signer_key.key_id]
    private = signing_keys.generate_key()
    encrypted = await to_thread.run_sync(signing_keys.encrypt_key, private, keys.passphrase, keys.scrypt_n)  # scrypt
    public = private.public_key()
    async with transaction(f"signing key of {user_id}"):
        if await store.current_key(user_id) is not None:  # made meanwhile by a concurrent first signature
            return await key_of_signer(user_id, printed_name, installation)
        signer_key = SignerKey(
            user_id,
            printed_name,
            signing_keys.key_id(public),
            signing_keys.public_key_hex(public),
            utc_instant(audit_log.clock()),
        )
        await store.insert_key(signer_key, encrypted)  # a unique index keeps one key in force per signer
        await audit_log.record(
            user_id,
            Change(
                "create",
                "signer_key",
                f"{user_id}/{signer_key.key_id}",
                None,
                {"public_key": signer_key.public_key, "valid_from": signer_key.valid_from},
            ),
        )
    keys.unlocked[signer_key.key_id] = private
    await write_registry(installation)
    return signer_key, private


async def end_signer_keys(user_id: str, reason: str, actor: str, installation: Installation) -> list[str]:
    """Revoke the user's key: no new signatures with it; the old ones stay verifiable as valid when made."""
    if not reason.strip():
        raise invalid("revoking a signing key needs the reason", field="reason")
    async with transaction(f"signing keys of {user_id}"):
        for kid in await store.keys_in_force(user_id):
            await store.hold_key(kid)  # after any signature being made with it: the end comes later
        at = utc_instant(audit_log.clock())
        ended = await store.end_keys(user_id, at, reason.strip())
        for kid in ended:
            await audit_log.record(
                actor,
                Change(
                    "update", "signer_key", f"{user_id}/{kid}", {"valid_to": None}, {"valid_to": at}, reason.strip()
                ),
            )
    if ended:
        await write_registry(installation)
    return ended


async def registry(installation: Installation) -> dict[str, Any]:
    """The public signer registry: the JSON document itself (`signatures/registry.json`, in every export and
    verified as read), so a mapping, shaped by `registry_document`."""
    keys = installation.keys()
    async with read():
        signer_keys = await store.all_keys()
    public = keys.manifest_key.public_key()
    system = [
        {
            "key_id": keys.manifest_key_id,
            "public_key": signing_keys.public_key_hex(public),
            "purpose": "binder manifests and audit checkpoints",
        }
    ]
    return registry_document(signer_keys, system, utc_instant(audit_log.clock()))


_registry_lock = asyncio.Lock()


async def write_registry(installation: Installation, directory: Path | None = None) -> Path | None:
    """Refresh the installation's registry (and PAdES certificate) from the database, the registry's source: in
    `directory` if given, else under the data directory, and the published copy too while it is this
    installation's. Built and written under one lock, so a slower writer never replaces a newer registry with
    an older one (within this process; a command-line run and the server write the same current state)."""
    async with _registry_lock:
        try:
            document = await registry(installation)
        except NotConfigured:  # no system key yet (before `setup`): the database keeps the registry meanwhile
            return None
        if directory is not None:
            return _write_registry(installation, document, Path(directory))
        own = installation.registry_dir
        if own is None:
            return None
        written = _write_registry(installation, document, own)
        published = installation.signatures_dir
        if written is not None and published is not None and _installation_of(published) == _system_key(document):
            _write_registry(installation, document, Path(published))
        return written


async def publish_registry(installation: Installation, directory: Path, replace_other: bool = False) -> Path:
    """Copy the installation's current registry and PAdES certificate to `directory` (`signatures publish`);
    a registry of another installation there is kept unless `replace_other`."""
    async with _registry_lock:
        document = await registry(installation)
        found = _installation_of(directory)
        if found not in (None, _system_key(document)) and not replace_other:
            raise Conflict(
                f"{directory / 'registry.json'} is the registry of another installation (system key {found}, this"
                f" one's is {_system_key(document)}); its binders verify against it: publish elsewhere with --to,"
                " or pass --replace-other-installation"
            )
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise invalid(f"{directory}: cannot be made ({error.strerror})", field="--to") from None
        if replace_other:
            (directory / "registry.json").unlink(missing_ok=True)  # a newer generated_at of theirs must not win
        if installation.registry_dir is not None:  # the same state in both
            _write_registry(installation, document, installation.registry_dir)
        written = _write_registry(installation, document, directory)
        if written is None:
            raise invalid(f"{directory / 'registry.json'}: cannot be written", field="--to")
        return written


def _system_key(document: dict[str, Any]) -> str:
    return str(document["system_keys"][0]["key_id"])


def _installation_of(directory: Path) -> str | None:
    """Whose registry `directory` holds: its system key's ID (the installation's manifest key); None if none."""
    try:
        document = json.loads((Path(directory) / "registry.json").read_text(encoding="utf-8"))
        return str(document["system_keys"][0]["key_id"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "(unreadable)"


def _write_registry(installation: Installation, document: dict[str, Any], directory: Path) -> Path | None:
    target = directory / "registry.json"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if _published_at(target) > document["generated_at"]:  # another process published a newer state
            return target
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        temporary.replace(target)
        pades = installation.keys().pades
        if pades is not None:
            from trialcoord.kernel.render.signed_pdf import certificate_pem

            (directory / "pades-certificate.pem").write_text(certificate_pem(pades[1]), encoding="utf-8")
    except OSError as error:  # the database holds the registry; the copy is refreshed next time
        log.error("the signer registry %s could not be written: %s", target, error)
        return None
    return target


def _published_at(target: Path) -> str:
    """When the registry on disk was built ('' when absent or unreadable)."""
    try:
        return str(json.loads(target.read_text(encoding="utf-8")).get("generated_at", ""))
    except (OSError, ValueError, AttributeError):
        return ""


async def hold_in_force(signer_key: SignerKey, user_id: str) -> None:
    """Inside a signature's transaction: a concurrent revocation waits for this signature, and after it the key
    must still be the signer's current one."""
    await store.hold_key(signer_key.key_id)
    current = await store.current_key(user_id)
    if current is None or current[0].key_id != signer_key.key_id:
        raise Conflict(f"the signing key of {user_id} ended meanwhile; sign again")


async def all_keys() -> list[SignerKey]:
    """Every signer key ever held, in force or ended (to judge stored signatures)."""
    return await store.all_keys()
