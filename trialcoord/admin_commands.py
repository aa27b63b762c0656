"""`trialcoord setup`, `user ...`, `audit ...` and `keys ...`: what administrators run on the server.

Actions taken here are audited as `cli:<operating-system user>`: whoever has a shell on the server.
"""

from __future__ import annotations

import getpass
import secrets
import sys
from datetime import UTC, date
from pathlib import Path

from trialcoord import command_support as support
from trialcoord.command_support import UsageError
from trialcoord.config import get_settings

FIRST_ADMIN = "admin"


def generated_password() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 bits


def read_password(generate: bool) -> tuple[str, bool]:
    """A generated one (printed once by the caller), or typed twice at a terminal, or a line on stdin."""
    if generate:
        return generated_password(), True
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if first != getpass.getpass("Repeat it: "):
            raise UsageError("the two passwords differ")
        return first, False
    return sys.stdin.readline().rstrip("\r\n"), False


# setup --------------------------------------------------------------------------------------------


def setup(demo: bool = True) -> int:
    """Everything a fresh installation needs; what exists already is kept (keys, users, a loaded study)."""
    from trialcoord.adapters import pii, signing_keys
    from trialcoord.services import accounts
    from trialcoord.services.demo import add_demo_users, load_demo

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not _pii_configured(settings):
        pii.generate_key_file(settings.pii_key_file, f"k{support.today():%Y%m%d}")
        print(f"created the personal-data key {settings.pii_key_file} (back it up apart from the database)")
    if not settings.audit_key_file.exists():
        passphrase = settings.audit_passphrase_file
        if not passphrase.exists():
            _write_private(passphrase, secrets.token_urlsafe(32) + "\n")
        signing_keys.save_private_key(
            signing_keys.generate_key(), settings.audit_key_file, signing_keys.read_passphrase(file=passphrase)
        )
        print(f"created the audit checkpoint key {settings.audit_key_file}")
    if not settings.pades_file.exists():
        _create_pades_credentials(settings)
        print(f"created the site's document-signing certificate {settings.pades_file}")

    async def run():
        created = None
        if await accounts.count_users() == 0:
            password = generated_password()
            await accounts.create_user(
                FIRST_ADMIN, "Administrator", "admin@localhost.invalid", password, support.actor()
            )
            await accounts.grant(FIRST_ADMIN, "administrator", None, None, support.today(), None, support.actor())
            created = password
        loaded = await load_demo(support.today()) if demo else False
        demo_password = generated_password()
        users = await add_demo_users(support.today(), demo_password, support.actor()) if loaded else []
        from trialcoord.services import signatures

        await signatures.write_registry()  # the public registry in signatures/, with this system's key
        return created, loaded, users, demo_password

    password, loaded, users, demo_password = support.database(run)
    if loaded:
        print("demo study loaded")
    if users:
        print(f"demo users {', '.join(users)} (see README), password '{demo_password}' (shown this once)")
    if password:
        print(
            f"first administrator: user ID '{FIRST_ADMIN}', password '{password}'"
            " (shown this once; change it with: trialcoord user reset-password admin)"
        )
    print("set-up complete")
    return 0


def _create_pades_credentials(settings) -> None:
    """The site's P-256 key and self-signed certificate for PAdES, as PKCS#12 under the system passphrase."""
    import os
    from datetime import datetime, timedelta

    from trialcoord.adapters import signing_keys
    from trialcoord.adapters.render.signed_pdf import new_site_credentials, save_credentials

    now = datetime.now(UTC)
    key, certificate = new_site_credentials(
        f"trialcoord document signing ({settings.host})",
        "trialcoord site",
        now - timedelta(minutes=5),
        now + timedelta(days=10 * 365),
    )
    passphrase = signing_keys.read_passphrase(file=settings.audit_passphrase_file)
    settings.pades_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.pades_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(save_credentials(key, certificate, passphrase))


def _pii_configured(settings) -> bool:
    import os

    from trialcoord.adapters.pii import KEYS_VARIABLE

    return bool(os.environ.get(KEYS_VARIABLE)) or settings.pii_key_file.exists()


def _write_private(path: Path, text: str) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


# user ---------------------------------------------------------------------------------------------


def user_create(user_id: str, name: str, email: str, generate: bool) -> int:
    from trialcoord.services import accounts

    password, shown = read_password(generate)
    row = support.database(lambda: accounts.create_user(user_id, name, email, password, support.actor()))
    print(f"user {row['user_id']} created")
    if shown:
        print(f"password: {password}  (shown this once)")
    return 0


def user_disable(user_id: str, reason: str) -> int:
    from trialcoord.services import accounts

    row = support.database(lambda: accounts.disable_user(user_id, support.actor(), reason))
    print(f"user {row['user_id']} is {row['status']}; their sessions have ended")
    return 0


def user_reset_password(user_id: str, generate: bool) -> int:
    from trialcoord.services import accounts

    password, shown = read_password(generate)
    row = support.database(lambda: accounts.reset_password(user_id, password, support.actor()))
    print(f"password of {row['user_id']} changed; their sessions have ended")
    if shown:
        print(f"password: {password}  (shown this once)")
    return 0


def user_grant(
    user_id: str,
    role: str,
    study: str | None,
    site: str | None,
    valid_from: date | None,
    valid_to: date | None,
    personal_data: bool,
) -> int:
    from trialcoord.services import accounts

    row = support.database(
        lambda: accounts.grant(
            user_id, role, study, site, valid_from or support.today(), valid_to, support.actor(), personal_data
        )
    )
    print(
        f"grant {row['id']}: {row['user_id']} is {row['role']} of {row['study'] or 'every study'}"
        f"{' at site ' + row['site'] if row['site'] else ''} from {row['valid_from']}"
        f"{' to ' + row['valid_to'] if row['valid_to'] else ''}"
    )
    return 0


def user_revoke(grant_id: int, reason: str) -> int:
    from trialcoord.services import accounts

    row = support.database(lambda: accounts.revoke(grant_id, support.actor(), reason))
    print(f"grant {row['id']} of {row['user_id']} revoked")
    return 0


def user_list() -> int:
    from trialcoord.services import accounts

    async def run():
        return [await accounts.get_user(row["user_id"]) for row in await accounts.list_users()]

    for user in support.database(run):
        print(f"{user['user_id']}\t{user['status']}\t{user['printed_name']}")
        for g in user["grants"]:
            state = (
                "revoked"
                if g["revoked_at"]
                else "in force"
                if (g["valid_to"] or "9999") >= support.today().isoformat()
                else "ended"
            )
            print(
                f"  grant {g['id']}: {g['role']} {g['study'] or '*'}/{g['site'] or '*'}"
                f" {g['valid_from']}..{g['valid_to'] or ''} {state}"
            )
    return 0


def user_token(user_id: str, days: int) -> int:
    from trialcoord.services import accounts

    signed = support.database(lambda: accounts.issue_token(user_id, days, support.actor()))
    print(f"bearer token for {signed.user_id}, valid until {signed.expires_at} (shown this once):")
    print(signed.token)
    return 0


# audit --------------------------------------------------------------------------------------------


def audit_verify(checkpoint_file: str | None, public_key_file: str | None) -> int:
    from trialcoord.services import audit_log

    given = _checked_checkpoint(checkpoint_file, public_key_file) if checkpoint_file else None
    report = support.database(lambda: audit_log.verify(given))
    for name in report.checked_against:
        print(f"compared with the {name}")
    if report.ok:
        print(f"audit trail intact: {report.result.size} entries, root {report.result.root}")
        return 0
    sequence, why = report.result.first_bad
    print(f"audit trail BROKEN at entry {sequence}: {why}", file=sys.stderr)
    print(f"entries 1 to {report.result.size} verified", file=sys.stderr)
    return 1


def _checked_checkpoint(file: str, public_key_file: str | None):
    from trialcoord.adapters import signing_keys

    signed = signing_keys.load_checkpoint(Path(file))
    if public_key_file:
        try:
            key = signing_keys.load_public_key(Path(public_key_file).read_text(encoding="utf-8"))
        except OSError as error:
            raise UsageError(f"{public_key_file}: cannot be read ({error.strerror})") from None
    else:
        key = _private_key().public_key()
    return signing_keys.verify_checkpoint(signed, key)


def _private_key():
    from trialcoord.adapters import signing_keys

    settings = get_settings()
    if not settings.audit_key_file.exists():
        raise UsageError(
            f"{settings.audit_key_file}: no audit key; run `trialcoord setup` or set TRIALCOORD_AUDIT_KEY_FILE"
        )
    passphrase = signing_keys.read_passphrase(file=settings.audit_passphrase_file)
    return signing_keys.load_private_key(settings.audit_key_file, passphrase)


def audit_checkpoint(out: str) -> int:
    from trialcoord.services import audit_log

    key = _private_key()
    signed = support.database(lambda: audit_log.checkpoint(key, Path(out)))
    print(
        f"checkpoint of {signed['size']} entries, root {signed['root']}, signed by key {signed['key_id']},"
        f" written to {out}"
    )
    return 0


def audit_public_key(out: str | None) -> int:
    from trialcoord.adapters import signing_keys

    pem = signing_keys.public_key_pem(_private_key().public_key())
    if out:
        support.write_file(out, pem)
        print(f"public key written to {out}")
    else:
        print(pem, end="")
    return 0


# keys ---------------------------------------------------------------------------------------------


def keys_rotate(new_key_id: str) -> int:
    """Add a new current personal-data key to the key file, then re-encrypt every stored value with it."""
    from trialcoord.adapters import pii
    from trialcoord.services import identities

    path = _pii_key_file()
    ring = pii.load_key_file(path).with_new_current_key(new_key_id)
    pii.write_key_file(path, ring, replace=True)
    print(f"{path}: key {new_key_id} added and made current; back the file up now")
    count = support.database(lambda: identities.rotate_stored(ring, support.actor()))
    print(f"{count} stored values re-encrypted under key {new_key_id}")
    return 0


def keys_retire(old_key_id: str) -> int:
    """Remove a personal-data key once no stored value uses it."""
    from trialcoord.adapters import pii
    from trialcoord.services import identities

    path = _pii_key_file()
    in_use = support.database(identities.key_ids_in_use)
    if old_key_id in in_use:
        raise UsageError(f"key {old_key_id} still encrypts stored values; run `trialcoord keys rotate` first")
    pii.write_key_file(path, pii.load_key_file(path).without_key(old_key_id), replace=True)
    print(f"{path}: key {old_key_id} removed")
    return 0


def _pii_key_file() -> Path:
    import os

    from trialcoord.adapters.pii import KEYS_VARIABLE

    if os.environ.get(KEYS_VARIABLE):
        raise UsageError(f"{KEYS_VARIABLE} holds the keys: rotate them where that variable is set, with a key file")
    path = get_settings().pii_key_file
    if not path.exists():
        raise UsageError(f"{path}: no key file; run `trialcoord setup` or set TRIALCOORD_PII_KEY_FILE")
    return path
