"""Rows of users, grants, sessions and sign-in attempts. Users are never deleted (IDs are never reused).

Instants are `utc_instant` text and dates ISO text (see migration 2). Writes run in the caller's
`transaction()`.
"""

from __future__ import annotations

from datetime import date

from trialcoord.accounts.rules.signers import SignerKey
from trialcoord.kernel.database.engine import fetch, is_sqlite
from trialcoord.kernel.rules.access import Grant

USER_COLUMNS = "user_id, printed_name, email, status, password_hash, password_changed_at, created_at"
GRANT_COLUMNS = (
    "id, user_id, role, study, site, valid_from, valid_to, personal_data, granted_by, granted_at,"
    " revoked_by, revoked_at"
)


async def find_user(user_id: str) -> dict | None:
    rows = await fetch(f"SELECT {USER_COLUMNS} FROM users WHERE user_id = {{}}", user_id)
    return rows[0] if rows else None


async def list_users() -> list[dict]:
    return sorted(await fetch(f"SELECT {USER_COLUMNS} FROM users"), key=lambda row: row["user_id"])


USER_SORTS = {"user_id": "user_id", "name": "printed_name", "created": "created_at"}  # a sort -> its column


def _contains(text: str) -> str:
    """A LIKE pattern for `text` anywhere, `!` escaping LIKE's wildcards (a portable escape character)."""
    return "%" + text.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


async def users_page(
    text: str | None, role: str | None, status: str | None, sort: str, descending: bool, after: tuple | None, limit: int
) -> list[dict]:
    """Accounts matching the filters (`text` in the user ID, name or e-mail, ignoring case; a grant of `role` not
    revoked; the status), sorted by `sort` then user ID, past the keyset `after` (sort value, user ID)."""
    column = USER_SORTS[sort]
    clauses: list[str] = []
    args: list[object] = []
    if text:
        # LOWER folds ASCII on SQLite and every letter on PostgreSQL: accented capitals match by case there only.
        clauses.append(
            "(" + " OR ".join(f"LOWER({c}) LIKE {{}} ESCAPE '!'" for c in ("user_id", "printed_name", "email")) + ")"
        )
        args += [_contains(text)] * 3
    if role:
        clauses.append(
            "EXISTS (SELECT 1 FROM grants g WHERE g.user_id = users.user_id AND g.role = {} AND g.revoked_at IS NULL)"
        )
        args.append(role)
    if status:
        clauses.append("status = {}")
        args.append(status)
    if after is not None:
        beyond = "<" if descending else ">"
        clauses.append(f"({column} {beyond} {{}} OR ({column} = {{}} AND user_id {beyond} {{}}))")
        args += [after[0], after[0], after[1]]
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    order = "DESC" if descending else "ASC"
    return await fetch(
        f"SELECT {USER_COLUMNS} FROM users{where} ORDER BY {column} {order}, user_id {order} LIMIT {int(limit)}", *args
    )


async def grants_of_users(user_ids: list[str]) -> list[dict]:
    """Every grant of these users, revoked ones too, in the order they were given."""
    if not user_ids:
        return []
    marks = ", ".join("{}" for _ in user_ids)
    return await fetch(f"SELECT {GRANT_COLUMNS} FROM grants WHERE user_id IN ({marks}) ORDER BY id", *user_ids)


async def count_users() -> int:
    return (await fetch("SELECT COUNT(*) AS n FROM users"))[0]["n"]


async def insert_user(user_id: str, printed_name: str, email: str, password_hash: str, at: str) -> None:
    await fetch(
        f"INSERT INTO users ({USER_COLUMNS}) VALUES ({{}}, {{}}, {{}}, 'active', {{}}, {{}}, {{}})",
        user_id,
        printed_name,
        email,
        password_hash,
        at,
        at,
    )


async def update_user(user_id: str, **values: object) -> None:
    columns = ", ".join(f"{name} = {{}}" for name in values)  # names come from this package, never from input
    await fetch(f"UPDATE users SET {columns} WHERE user_id = {{}}", *values.values(), user_id)


async def insert_grant(grant: Grant, by: str, at: str) -> int:
    rows = await fetch(
        "INSERT INTO grants (user_id, role, study, site, valid_from, valid_to, personal_data, granted_by, granted_at)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}) RETURNING id",
        grant.user_id,
        str(grant.role),
        grant.study,
        grant.site,
        grant.valid_from.isoformat(),
        grant.valid_to.isoformat() if grant.valid_to else None,
        grant.personal_data,
        by,
        at,
    )
    return rows[0]["id"]


async def find_grant(grant_id: int) -> dict | None:
    rows = await fetch(f"SELECT {GRANT_COLUMNS} FROM grants WHERE id = {{}}", grant_id)
    return rows[0] if rows else None


async def grants_of(user_id: str, include_revoked: bool = False) -> list[dict]:
    condition = "" if include_revoked else " AND revoked_at IS NULL"
    return await fetch(f"SELECT {GRANT_COLUMNS} FROM grants WHERE user_id = {{}}{condition} ORDER BY id", user_id)


async def grants_at(study: str, site: str) -> list[dict]:
    """Grants held at the site itself (not study- or system-wide ones): the site's staff."""
    return await fetch(
        f"SELECT {GRANT_COLUMNS} FROM grants WHERE study = {{}} AND site = {{}} AND revoked_at IS NULL"
        " AND user_id IN (SELECT user_id FROM users WHERE status = 'active') ORDER BY id",
        study,
        site,
    )


async def grants_in_study(study: str) -> list[dict]:
    """Unrevoked grants of active accounts that cover the study: its own (study-wide or at a site) and
    administrators' of every study."""
    return await fetch(
        f"SELECT {GRANT_COLUMNS} FROM grants WHERE (study = {{}} OR study IS NULL) AND revoked_at IS NULL"
        " AND user_id IN (SELECT user_id FROM users WHERE status = 'active') ORDER BY user_id, id",
        study,
    )


async def revoke_grant(grant_id: int, by: str, at: str) -> None:
    await fetch("UPDATE grants SET revoked_by = {}, revoked_at = {} WHERE id = {}", by, at, grant_id)


async def administrator_grants() -> list[dict]:
    """Unrevoked grants to administer every study, of active accounts: those that let someone manage users.

    Locks them first, on PostgreSQL, until the transaction ends (in id order, so two callers never deadlock): two
    revocations of the last two at once then run one after the other, the second seeing the first's change.
    SQLite needs no lock: its write transactions are immediate, one at a time."""
    lock = "" if is_sqlite() else " FOR UPDATE"
    await fetch(
        f"SELECT id FROM grants WHERE role = 'administrator' AND study IS NULL AND revoked_at IS NULL ORDER BY id{lock}"
    )
    return await fetch(
        f"SELECT {GRANT_COLUMNS} FROM grants WHERE role = 'administrator' AND study IS NULL AND revoked_at IS NULL"
        " AND user_id IN (SELECT user_id FROM users WHERE status = 'active') ORDER BY id"
    )


def grant_of(row: dict) -> Grant:
    return Grant(
        row["user_id"],
        row["role"],
        row["study"],
        row["site"],
        date.fromisoformat(row["valid_from"]),
        date.fromisoformat(row["valid_to"]) if row["valid_to"] else None,
        bool(row["personal_data"]),
    )


# Sessions ---------------------------------------------------------------------------------------

SESSION_COLUMNS = (
    "s.id, s.user_id, s.kind, s.csrf_token, s.created_at, s.last_seen_at, s.expires_at,"
    " s.signing_since, u.status, u.printed_name"
)


async def insert_session(
    token_hash: str, user_id: str, kind: str, csrf_token: str, at: str, expires_at: str | None
) -> int:
    rows = await fetch(
        "INSERT INTO sessions (token_hash, user_id, kind, csrf_token, created_at, last_seen_at, expires_at)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}) RETURNING id",
        token_hash,
        user_id,
        kind,
        csrf_token,
        at,
        at,
        expires_at,
    )
    return rows[0]["id"]


async def find_session(token_hash: str) -> dict | None:
    rows = await fetch(
        f"SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.user_id = s.user_id"
        " WHERE s.token_hash = {} AND s.ended_at IS NULL",
        token_hash,
    )
    return rows[0] if rows else None


async def find_session_by_id(session_id: int) -> dict | None:
    rows = await fetch(
        f"SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.user_id = s.user_id"
        " WHERE s.id = {} AND s.ended_at IS NULL",
        session_id,
    )
    return rows[0] if rows else None


async def touch_session(session_id: int, at: str) -> None:
    await fetch("UPDATE sessions SET last_seen_at = {} WHERE id = {}", at, session_id)


async def set_signing(session_id: int, since: str | None) -> None:
    await fetch("UPDATE sessions SET signing_since = {} WHERE id = {}", since, session_id)


async def end_session(session_id: int, at: str, why: str) -> None:
    await fetch(
        "UPDATE sessions SET ended_at = {}, ended_why = {} WHERE id = {} AND ended_at IS NULL", at, why, session_id
    )


async def end_sessions_of(user_id: str, at: str, why: str) -> int:
    rows = await fetch(
        "UPDATE sessions SET ended_at = {}, ended_why = {} WHERE user_id = {} AND ended_at IS NULL RETURNING id",
        at,
        why,
        user_id,
    )
    return len(rows)


# Sign-in attempts -------------------------------------------------------------------------------


async def insert_attempt(at: str, user_id: str, address: str, outcome: str) -> int:
    rows = await fetch(
        "INSERT INTO login_attempts (attempted_at, user_id, address, outcome) VALUES ({}, {}, {}, {}) RETURNING id",
        at,
        user_id,
        address,
        outcome,
    )
    return rows[0]["id"]


async def set_attempt_outcome(attempt_id: int, outcome: str) -> None:
    await fetch("UPDATE login_attempts SET outcome = {} WHERE id = {}", outcome, attempt_id)


# An attempt is recorded as 'pending' before its password is checked, and pending attempts count as
# failures for the ones after them: attempts made at the same moment cannot all pass the gate together.
_FAILED = "outcome IN ('failed', 'pending')"


async def failures_before(user_id: str, attempt_id: int, since: str) -> list[str]:
    """Instants of failed (or still pending) attempts before `attempt_id`, after `since` and after the
    user's last successful sign-in."""
    rows = await fetch(
        f"SELECT attempted_at FROM login_attempts WHERE user_id = {{}} AND {_FAILED} AND id < {{}}"
        " AND attempted_at > {} AND attempted_at > COALESCE((SELECT MAX(attempted_at) FROM login_attempts"
        " WHERE user_id = {} AND outcome = 'succeeded'), '') ORDER BY attempted_at",
        user_id,
        attempt_id,
        since,
        user_id,
    )
    return [row["attempted_at"] for row in rows]


async def address_failures_before(address: str, attempt_id: int, since: str) -> int:
    rows = await fetch(
        f"SELECT COUNT(*) AS n FROM login_attempts WHERE address = {{}} AND {_FAILED} AND id < {{}}"
        " AND attempted_at > {}",
        address,
        attempt_id,
        since,
    )
    return rows[0]["n"]


async def recent_attempts(outcomes: tuple[str, ...], limit: int = 50) -> list[dict]:
    marks = ", ".join("{}" for _ in outcomes)
    return await fetch(
        f"SELECT attempted_at, user_id, address, outcome FROM login_attempts WHERE outcome IN ({marks})"
        f" ORDER BY id DESC LIMIT {int(limit)}",
        *outcomes,
    )


# Signers' keys ------------------------------------------------------------------------------------------------

_KEY_COLUMNS = "signer_id, printed_name, key_id, public_key, valid_from, valid_to, revoked_reason"


def _key(row: dict) -> SignerKey:
    return SignerKey(
        row["signer_id"],
        row["printed_name"],
        row["key_id"],
        row["public_key"],
        row["valid_from"],
        row["valid_to"],
        row["revoked_reason"],
    )


async def current_key(signer_id: str) -> tuple[SignerKey, str] | None:
    """The signer's key in force (valid_to unset) and its encrypted private part."""
    rows = await fetch(
        f"SELECT {_KEY_COLUMNS}, encrypted FROM signer_keys WHERE signer_id = {{}} AND valid_to IS NULL"
        " ORDER BY id DESC",
        signer_id,
    )
    return (_key(rows[0]), rows[0]["encrypted"]) if rows else None


async def insert_key(key: SignerKey, encrypted: str) -> None:
    await fetch(
        "INSERT INTO signer_keys (signer_id, printed_name, key_id, public_key, encrypted, valid_from)"
        " VALUES ({}, {}, {}, {}, {}, {})",
        key.signer_id,
        key.printed_name,
        key.key_id,
        key.public_key,
        encrypted,
        key.valid_from,
    )


async def keys_in_force(signer_id: str) -> list[str]:
    rows = await fetch("SELECT key_id FROM signer_keys WHERE signer_id = {} AND valid_to IS NULL", signer_id)
    return [row["key_id"] for row in rows]


async def hold_key(key_id: str) -> None:
    """Lock the key's row until the transaction ends (a no-op write: portable, where SELECT ... FOR UPDATE is
    not), so a signature and a revocation of the same key are made one after the other."""
    await fetch("UPDATE signer_keys SET revoked_reason = revoked_reason WHERE key_id = {} AND valid_to IS NULL", key_id)


async def end_keys(signer_id: str, at: str, reason: str) -> list[str]:
    """End every key of the signer still in force; their signatures stay verifiable as made before `at`."""
    rows = await fetch("SELECT key_id FROM signer_keys WHERE signer_id = {} AND valid_to IS NULL", signer_id)
    if rows:
        await fetch(
            "UPDATE signer_keys SET valid_to = {}, revoked_reason = {} WHERE signer_id = {} AND valid_to IS NULL",
            at,
            reason,
            signer_id,
        )
    return [row["key_id"] for row in rows]


async def all_keys() -> list[SignerKey]:
    return [_key(row) for row in await fetch(f"SELECT {_KEY_COLUMNS} FROM signer_keys ORDER BY id")]


# Calendar feeds -----------------------------------------------------------------------------------------------

FEED_COLUMNS = (
    "f.id, f.user_id, f.study, f.site, f.subject_id, f.created_at, f.last_used_at, f.revoked_at, f.revoked_by"
)


async def insert_feed(
    token_hash: str, user_id: str, study: str, site: str | None, subject_id: str | None, at: str
) -> int:
    rows = await fetch(
        "INSERT INTO calendar_feeds (token_hash, user_id, study, site, subject_id, created_at)"
        " VALUES ({}, {}, {}, {}, {}, {}) RETURNING id",
        token_hash,
        user_id,
        study,
        site,
        subject_id,
        at,
    )
    return rows[0]["id"]


async def find_feed(token_hash: str) -> dict | None:
    """The feed the token names, with its owner's account status and name."""
    rows = await fetch(
        f"SELECT {FEED_COLUMNS}, u.status, u.printed_name FROM calendar_feeds f JOIN users u ON u.user_id = f.user_id"
        " WHERE f.token_hash = {}",
        token_hash,
    )
    return rows[0] if rows else None


async def feed_by_id(feed_id: int) -> dict | None:
    rows = await fetch(f"SELECT {FEED_COLUMNS} FROM calendar_feeds f WHERE f.id = {{}}", feed_id)
    return rows[0] if rows else None


async def feeds_of(user_id: str) -> list[dict]:
    """A user's feeds, newest first, revoked ones too."""
    return await fetch(
        f"SELECT {FEED_COLUMNS} FROM calendar_feeds f WHERE f.user_id = {{}} ORDER BY f.id DESC", user_id
    )


async def touch_feed(feed_id: int, at: str) -> None:
    await fetch("UPDATE calendar_feeds SET last_used_at = {} WHERE id = {}", at, feed_id)


async def revoke_feed(feed_id: int, by: str, at: str) -> None:
    await fetch(
        "UPDATE calendar_feeds SET revoked_at = {}, revoked_by = {} WHERE id = {} AND revoked_at IS NULL",
        at,
        by,
        feed_id,
    )
