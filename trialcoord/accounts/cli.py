"""`trialcoord user ...`, `keys ...` and `signer revoke`: what administrators run on the server.

Actions taken here are audited as `cli:<operating-system user>`: whoever has a shell on the server.
"""

from __future__ import annotations

import getpass
import secrets
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import UsageError, iso_date
from trialcoord.kernel.config import get_settings

if TYPE_CHECKING:
    from trialcoord.accounts.users import AccountRules


def register(commands) -> None:
    user = support.group(commands, "user", "accounts and grants")
    create = user.add_parser("create", help="create an account (password typed twice, from stdin, or --generate)")
    create.add_argument("user_id")
    create.add_argument("--name", required=True, help="printed name, shown with signatures")
    create.add_argument("--email", required=True)
    create.add_argument("--generate", action="store_true", help="generate a password and print it once")
    create.set_defaults(run=lambda a: user_create(a.user_id, a.name, a.email, a.generate))
    disable = user.add_parser("disable", help="disable an account and end its sessions")
    disable.add_argument("user_id")
    disable.add_argument("--reason", required=True)
    disable.set_defaults(run=lambda a: user_disable(a.user_id, a.reason))
    reset = user.add_parser("reset-password", help="set a new password and end every session of the account")
    reset.add_argument("user_id")
    reset.add_argument("--generate", action="store_true")
    reset.set_defaults(run=lambda a: user_reset_password(a.user_id, a.generate))
    grant = user.add_parser("grant", help="give a role in a study (and site)")
    grant.add_argument("user_id")
    grant.add_argument("role", help="administrator, coordinator, investigator, monitor or sponsor")
    grant.add_argument("--study")
    grant.add_argument("--site")
    grant.add_argument("--from", dest="valid_from", type=iso_date)
    grant.add_argument("--to", dest="valid_to", type=iso_date)
    grant.add_argument("--personal-data", action="store_true", help="monitors only: may view personal data")
    grant.set_defaults(
        run=lambda a: user_grant(a.user_id, a.role, a.study, a.site, a.valid_from, a.valid_to, a.personal_data)
    )
    revoke = user.add_parser("revoke", help="revoke a grant")
    revoke.add_argument("grant_id", type=int)
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(run=lambda a: user_revoke(a.grant_id, a.reason))
    user.add_parser("list", help="accounts and their grants").set_defaults(run=lambda a: user_list())
    token = user.add_parser("token", help="issue an API bearer token for a program")
    token.add_argument("user_id")
    token.add_argument("--days", type=int, default=30)
    token.set_defaults(run=lambda a: user_token(a.user_id, a.days))

    keys = support.group(commands, "keys", "personal-data key rotation")
    rotate = keys.add_parser("rotate", help="add a new current key and re-encrypt stored personal data with it")
    rotate.add_argument("new_key_id")
    rotate.set_defaults(run=lambda a: keys_rotate(a.new_key_id))
    retire = keys.add_parser("retire", help="remove a key that no stored value uses any more")
    retire.add_argument("old_key_id")
    retire.set_defaults(run=lambda a: keys_retire(a.old_key_id))

    signer = support.group(commands, "signer", "signers' keys")
    end = signer.add_parser("revoke", help="end a signer's key; their signatures stay valid when made")
    end.add_argument("user_id")
    end.add_argument("--reason", required=True)
    end.set_defaults(run=lambda a: signer_revoke(a.user_id, a.reason))


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


def rules() -> AccountRules:
    """The accounts' rules from the settings, as the web app builds them."""
    from trialcoord.accounts.users import AccountRules

    return AccountRules.from_settings(get_settings())


# user ---------------------------------------------------------------------------------------------


def user_create(user_id: str, name: str, email: str, generate: bool) -> int:
    from trialcoord.accounts import users

    password, shown = read_password(generate)
    user = support.database(lambda: users.create_user(user_id, name, email, password, support.actor(), rules=rules()))
    print(f"user {user.user_id} created")
    if shown:
        print(f"password: {password}  (shown this once)")
    return 0


def user_disable(user_id: str, reason: str) -> int:
    from trialcoord.accounts import users

    user = support.database(lambda: users.disable_user(user_id, support.actor(), reason, support.installation()))
    print(f"user {user.user_id} is {user.status}; their sessions have ended")
    return 0


def user_reset_password(user_id: str, generate: bool) -> int:
    from trialcoord.accounts import users

    password, shown = read_password(generate)
    user = support.database(lambda: users.reset_password(user_id, password, support.actor(), rules=rules()))
    print(f"password of {user.user_id} changed; their sessions have ended")
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
    from trialcoord.accounts import users

    granted = support.database(
        lambda: users.grant(
            user_id, role, study, site, valid_from or support.today(), valid_to, support.actor(), personal_data
        )
    )
    print(
        f"grant {granted.id}: {granted.user_id} is {granted.role} of {granted.study or 'every study'}"
        f"{' at site ' + granted.site if granted.site else ''} from {granted.valid_from}"
        f"{' to ' + granted.valid_to.isoformat() if granted.valid_to else ''}"
    )
    return 0


def user_revoke(grant_id: int, reason: str) -> int:
    from trialcoord.accounts import users

    revoked = support.database(lambda: users.revoke(grant_id, support.actor(), reason))
    print(f"grant {revoked.id} of {revoked.user_id} revoked")
    return 0


def user_list() -> int:
    from trialcoord.accounts import users

    async def run() -> list[users.UserWithGrants]:
        return [await users.get_user(user.user_id) for user in await users.list_users()]

    for user in support.database(run):
        print(f"{user.user_id}\t{user.status}\t{user.printed_name}")
        for g in user.grants:
            state = (
                "revoked"
                if g.revoked_at
                else "in force"
                if (g.valid_to is None or g.valid_to >= support.today())
                else "ended"
            )
            print(
                f"  grant {g.id}: {g.role} {g.study or '*'}/{g.site or '*'} {g.valid_from}..{g.valid_to or ''} {state}"
            )
    return 0


def user_token(user_id: str, days: int) -> int:
    from trialcoord.accounts import sessions

    signed = support.database(lambda: sessions.issue_token(user_id, days, support.actor()))
    print(f"bearer token for {signed.user_id}, valid until {signed.expires_at} (shown this once):")
    print(signed.token)
    return 0


# keys ---------------------------------------------------------------------------------------------


def keys_rotate(new_key_id: str) -> int:
    """Add a new current personal-data key to the key file, then re-encrypt every stored value with it."""
    from trialcoord.kernel import pii
    from trialcoord.scheduling import identities

    path = _pii_key_file()
    ring = pii.load_key_file(path).with_new_current_key(new_key_id)
    pii.write_key_file(path, ring, replace=True)
    print(f"{path}: key {new_key_id} added and made current; back the file up now")
    count = support.database(lambda: identities.rotate_stored(ring, support.actor()))
    print(f"{count} stored values re-encrypted under key {new_key_id}")
    return 0


def keys_retire(old_key_id: str) -> int:
    """Remove a personal-data key once no stored value uses it."""
    from trialcoord.kernel import pii
    from trialcoord.scheduling import identities

    path = _pii_key_file()
    in_use = support.database(identities.key_ids_in_use)
    if old_key_id in in_use:
        raise UsageError(f"key {old_key_id} still encrypts stored values; run `trialcoord keys rotate` first")
    pii.write_key_file(path, pii.load_key_file(path).without_key(old_key_id), replace=True)
    print(f"{path}: key {old_key_id} removed")
    return 0


def _pii_key_file() -> Path:
    import os

    from trialcoord.kernel.pii import KEYS_VARIABLE

    if os.environ.get(KEYS_VARIABLE):
        raise UsageError(f"{KEYS_VARIABLE} holds the keys: rotate them where that variable is set, with a key file")
    path = get_settings().pii_key_file
    if path is None or not path.exists():
        raise UsageError(f"{path}: no key file; run `trialcoord setup` or set TRIALCOORD_PII_KEY_FILE")
    return path


# signer -------------------------------------------------------------------------------------------


def signer_revoke(user_id: str, reason: str) -> int:
    """End a signer's key (lost, compromised, left): later signatures need a new key, older ones stay
    verifiable as valid when made."""
    from trialcoord.accounts import signer_keys, users
    from trialcoord.accounts.rules.accounts import normalize_user_id

    user_id = normalize_user_id(user_id)

    async def revoke() -> list[str]:
        await users.get_user(user_id)  # an unknown user ID is an error, not "no key in force"
        return await signer_keys.end_signer_keys(user_id, reason, support.actor(), support.installation())

    ended = support.database(revoke)
    print(
        f"{user_id}: "
        + (
            f"key {', '.join(ended)} ended; signatures made with it stay valid when made"
            if ended
            else "no signing key in force"
        )
    )
    return 0
