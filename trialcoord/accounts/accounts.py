"""Accounts, grants, sign-in, sessions and the signing ceremony (rules in docs/access-control.md).

Sessions are server-side rows named by the SHA-256 of a random token (the cookie or bearer value is never
stored). Every change to an account or grant, every sign-in and failed sign-in is audited.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from anyio import to_thread

from trialcoord.accounts import signer_keys, store
from trialcoord.accounts.passwords import MAX_LENGTH, PasswordHashing, password_problems
from trialcoord.accounts.rules.accounts import (
    INACTIVITY_TIMEOUT,
    AccountStatus,
    LockoutPolicy,
    Signing,
    SigningAttempt,
    SigningSession,
    UserAccount,
    login_gate,
    normalize_user_id,
    session_lapsed,
    valid_user_id,
)
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.config import Settings
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound, Problem, invalid
from trialcoord.kernel.rules.access import Grant, Resolution, Viewer, parse_role
from trialcoord.kernel.rules.audit_entries import utc_instant

PAGE, API, TOKEN = "page", "api", "token"  # session kinds: cookie, bearer from sign-in, long-lived bearer
TOUCH_EVERY = timedelta(seconds=30)  # last activity is written at most this often (a lapse comes early, never late)
ADDRESS_LIMIT = 50  # failures from one address within the lock-out window before it is refused (spraying)


@dataclass(frozen=True)
class AccountRules:
    """How passwords are hashed, when sign-in locks and when a session lapses: built once by the composition root
    (`create_app`, the command line) from the settings, and handed to every use case that needs it."""

    hashing: PasswordHashing = field(default_factory=PasswordHashing)
    lockout: LockoutPolicy = LockoutPolicy()
    inactivity: timedelta = INACTIVITY_TIMEOUT
    # The hash an unknown user ID is checked against, made at first need (so an unknown ID costs as much).
    _dummy: list[str] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountRules:
        return cls(inactivity=settings.session_timeout)

    async def dummy_hash(self) -> str:
        if not self._dummy:
            self._dummy.append(await to_thread.run_sync(self.hashing.hash, secrets.token_urlsafe(16)))
        return self._dummy[0]


def _now() -> datetime:
    return audit_log.clock()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Accounts ----------------------------------------------------------------------------------------


async def create_user(
    user_id: str, printed_name: str, email: str, password: str, actor: str, *, rules: AccountRules
) -> dict:
    account = UserAccount(normalize_user_id(user_id), printed_name.strip(), email.strip())
    _check_password(password, account)
    stored_hash = await to_thread.run_sync(rules.hashing.hash, password)
    async with transaction(f"user {account.user_id}"):
        if await store.find_user(account.user_id):
            raise Conflict(f"user ID {account.user_id} is taken (IDs are never reused, even of disabled accounts)")
        await store.insert_user(account.user_id, account.printed_name, account.email, stored_hash, utc_instant(_now()))
        await audit_log.record(
            actor,
            Change(
                "create",
                "user",
                account.user_id,
                None,
                {"printed_name": account.printed_name, "email": account.email, "status": "active"},
            ),
        )
    return await get_user(account.user_id)


async def get_user(user_id: str) -> dict:
    async with read():
        row = await _user_row(normalize_user_id(user_id))
        grants = await store.grants_of(row["user_id"], include_revoked=True)
    return {**_public(row), "grants": [_grant_dict(g) for g in grants]}


async def list_users() -> list[dict]:
    async with read():
        return [_public(row) for row in await store.list_users()]


async def count_users() -> int:
    async with read():
        return await store.count_users()


async def disable_user(user_id: str, actor: str, reason: str) -> dict:
    user_id = normalize_user_id(user_id)
    if not (reason or "").strip():
        raise invalid(f"user {user_id}: give the reason for disabling the account", field="reason")
    async with transaction(f"user {user_id}"):
        row = await _user_row(user_id)
        if row["status"] != AccountStatus.DISABLED:
            await store.update_user(user_id, status=str(AccountStatus.DISABLED))
            ended = await store.end_sessions_of(user_id, utc_instant(_now()), "account disabled")
            await audit_log.record(
                actor,
                Change(
                    "update",
                    "user",
                    user_id,
                    {"status": row["status"]},
                    {"status": "disabled", "sessions_ended": ended},
                    reason.strip(),
                ),
            )

    await signer_keys.end_signer_keys(user_id, "account disabled", actor)
    return await get_user(user_id)


async def reset_password(user_id: str, password: str, actor: str, *, rules: AccountRules) -> dict:
    """A new password ends every session of the account (sign-out everywhere)."""
    user_id = normalize_user_id(user_id)
    async with read():
        row = await _user_row(user_id)
    _check_password(password, UserAccount(row["user_id"], row["printed_name"], row["email"]))
    stored_hash = await to_thread.run_sync(rules.hashing.hash, password)
    async with transaction(f"user {user_id}"):
        await _user_row(user_id)
        at = utc_instant(_now())
        await store.update_user(user_id, password_hash=stored_hash, password_changed_at=at)
        ended = await store.end_sessions_of(user_id, at, "password changed")
        await audit_log.record(
            actor, Change("update", "user", user_id, None, {"password": "changed", "sessions_ended": ended})
        )
    return await get_user(user_id)


def _check_password(password: str, account: UserAccount) -> None:
    problems = password_problems(password, user_id=account.user_id, email=account.email)
    if problems:
        raise InvalidInput(problems)


async def _user_row(user_id: str) -> dict:
    row = await store.find_user(user_id)
    if row is None:
        raise NotFound(f"there is no user {user_id}")
    return row


def _public(row: dict) -> dict:
    return {
        "user_id": row["user_id"],
        "printed_name": row["printed_name"],
        "email": row["email"],
        "status": row["status"],
        "created_at": row["created_at"],
    }


# Grants ------------------------------------------------------------------------------------------


async def grant(
    user_id: str,
    role: str,
    study: str | None,
    site: str | None,
    valid_from: date,
    valid_to: date | None,
    actor: str,
    personal_data: bool = False,
) -> dict:
    user_id = normalize_user_id(user_id)
    new = Grant(user_id, parse_role(role), study or None, site or None, valid_from, valid_to, personal_data)
    async with transaction(f"grant for user {user_id}"):
        row = await _user_row(user_id)
        if row["status"] != AccountStatus.ACTIVE:
            raise invalid(f"user {user_id} is disabled; a disabled account gets no grants", field="user_id")
        await _check_scope(new)
        grant_id = await store.insert_grant(new, actor, utc_instant(_now()))
        await audit_log.record(actor, Change("grant", "grant", str(grant_id), None, _grant_fields(new)))
        return _grant_dict(await store.find_grant(grant_id))


async def _check_scope(new: Grant) -> None:
    """A typing mistake in a study or site code would give a grant that never covers anything."""
    from trialcoord.scheduling import lookups

    if new.study is None:
        return
    study = await lookups.find_study(new.study)
    if study is None:
        raise invalid(f"study {new.study} does not exist; load its protocol first", field="study")
    if new.site is not None and await lookups.find_site(study["id"], new.site) is None:
        known = ", ".join(site["code"] for site in await lookups.list_sites(study["id"])) or "none yet"
        raise invalid(f"study {new.study} has no site {new.site}; sites: {known}", field="site")


async def revoke(grant_id: int, actor: str, reason: str) -> dict:
    if not (reason or "").strip():
        raise invalid(f"grant {grant_id}: give the reason for revoking it", field="reason")
    async with transaction(f"grant {grant_id}"):
        row = await store.find_grant(grant_id)
        if row is None:
            raise NotFound(f"there is no grant {grant_id}")
        if row["revoked_at"] is None:
            await store.revoke_grant(grant_id, actor, utc_instant(_now()))
            await audit_log.record(
                actor,
                Change("revoke", "grant", str(grant_id), _grant_fields(store.grant_of(row)), None, reason.strip()),
            )
        return _grant_dict(await store.find_grant(grant_id))


def _grant_fields(g: Grant) -> dict:
    return {
        "user_id": g.user_id,
        "role": str(g.role),
        "study": g.study,
        "site": g.site,
        "valid_from": g.valid_from.isoformat(),
        "valid_to": g.valid_to.isoformat() if g.valid_to else None,
        "personal_data": g.personal_data,
    }


def _grant_dict(row: dict) -> dict:
    return {
        "id": row["id"],
        **_grant_fields(store.grant_of(row)),
        "granted_by": row["granted_by"],
        "granted_at": row["granted_at"],
        "revoked_by": row["revoked_by"],
        "revoked_at": row["revoked_at"],
    }


# Sign-in and sessions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedIn:
    token: str  # shown once: the cookie or bearer value
    csrf_token: str
    user_id: str
    expires_at: str | None


class SignInRefused(Exception):
    """Wrong credentials, a locked account or a throttled address: one message that reveals no more."""

    def __init__(self, message: str, retry_at: datetime | None = None):
        super().__init__(message)
        self.retry_at = retry_at


WRONG = "The user ID or password is not correct."
UNKNOWN = "(unknown user ID)"  # recorded instead of what was typed: it may be a password typed in the wrong field


async def sign_in(
    typed_user_id: str, password: str, address: str, kind: str = PAGE, *, rules: AccountRules
) -> SignedIn:
    """Check the password behind the lock-out gate; unknown IDs cost the same argon2 work as known ones.

    The attempt is recorded (pending) before anything is checked, so concurrent attempts see each other.
    """
    user_id = normalize_user_id(typed_user_id or "")
    now = _now()
    since = now - rules.lockout.window
    async with transaction("sign-in attempt"):
        row = await store.find_user(user_id) if valid_user_id(user_id) else None
        recorded = row["user_id"] if row else UNKNOWN
        attempt = await store.insert_attempt(utc_instant(now), recorded, address, "pending")
    async with read():
        # A lock lasts `lock_for` after the failures that caused it, which span up to `window`.
        failures = (
            [
                _instant(at)
                for at in await store.failures_before(recorded, attempt, utc_instant(since - rules.lockout.lock_for))
            ]
            if row
            else []
        )
        sprayed = await store.address_failures_before(address, attempt, utc_instant(since)) >= ADDRESS_LIMIT
    gate = login_gate(failures, now, rules.lockout)
    if not gate.allowed or sprayed:
        await _finish(
            attempt,
            "refused",
            recorded,
            "sign_in_refused",
            {"address": address, "locked": gate.locked, "address_throttled": sprayed},
        )
        retry_at = gate.retry_at if not sprayed else now + rules.lockout.window
        wait = "the account is locked" if gate.locked else "too many failed sign-ins"
        raise SignInRefused(f"Sign-in refused: {wait}; try again after {utc_instant(retry_at)[:19]}Z UTC.", retry_at)
    password = password or ""
    # No password is longer than MAX_LENGTH: a longer one is refused without making argon2 hash megabytes.
    # argon2 runs in a worker thread: tens of milliseconds of CPU must not stall every other request.
    stored_hash = row["password_hash"] if row else await rules.dummy_hash()
    valid = len(password) <= MAX_LENGTH and await to_thread.run_sync(rules.hashing.verify, stored_hash, password)
    if not valid or row is None or row["status"] != AccountStatus.ACTIVE:
        await _finish(
            attempt,
            "failed",
            recorded,
            "sign_in_failed",
            {"address": address, "disabled": bool(row) and row["status"] != "active"},
        )
        raise SignInRefused(WRONG)
    rehashed = (
        await to_thread.run_sync(rules.hashing.hash, password) if rules.hashing.needs_rehash(stored_hash) else None
    )
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    async with transaction(f"sign-in of {user_id}"):
        at = utc_instant(now)
        if rehashed:
            await store.update_user(user_id, password_hash=rehashed)
        session_id = await store.insert_session(_token_hash(token), user_id, kind, csrf, at, None)
        await store.set_attempt_outcome(attempt, "succeeded")
        await audit_log.record(
            user_id, Change("sign_in", "session", str(session_id), None, {"kind": kind, "address": address})
        )
    return SignedIn(token, csrf, user_id, None)


async def _finish(attempt: int, outcome: str, user_id: str, action: str, details: dict) -> None:
    async with transaction("sign-in attempt"):
        await store.set_attempt_outcome(attempt, outcome)
        await audit_log.record(user_id, Change(action, "user", user_id, None, details))


async def issue_token(user_id: str, days: int, actor: str) -> SignedIn:
    """A bearer token for a program, valid for `days` whatever the activity; revoked by sign-out everywhere."""
    user_id = normalize_user_id(user_id)
    if not 1 <= days <= 366:
        raise invalid("a token is valid for 1 to 366 days", field="days")
    token, now = secrets.token_urlsafe(32), _now()
    expires = utc_instant(now + timedelta(days=days))
    async with transaction(f"token for {user_id}"):
        row = await _user_row(user_id)
        if row["status"] != AccountStatus.ACTIVE:
            raise invalid(f"user {user_id} is disabled", field="user_id")
        session_id = await store.insert_session(
            _token_hash(token), user_id, TOKEN, secrets.token_urlsafe(32), utc_instant(now), expires
        )
        await audit_log.record(
            actor,
            Change(
                "create", "session", str(session_id), None, {"kind": TOKEN, "user_id": user_id, "expires_at": expires}
            ),
        )
    return SignedIn(token, "", user_id, expires)


async def resolve(token: str | None, *, rules: AccountRules) -> Resolution:
    """The viewer a session token stands for, keeping the session alive; ends a lapsed one."""
    if not token or len(token) > 200:
        return Resolution(None, "missing" if not token else "unknown")
    now = _now()
    async with read():
        row = await store.find_session(_token_hash(token))
        if row is None or row["status"] != AccountStatus.ACTIVE:
            return Resolution(None, "unknown")
        grant_rows = await store.grants_of(row["user_id"])
    last_seen = _instant(row["last_seen_at"])
    if row["expires_at"] is not None and now >= _instant(row["expires_at"]):
        return Resolution(None, "expired")
    if row["kind"] != TOKEN and session_lapsed(last_seen, now, rules.inactivity):
        async with transaction("session"):
            await store.end_session(row["id"], utc_instant(now), "inactivity")
            await audit_log.record(
                row["user_id"], Change("sign_out", "session", str(row["id"]), None, {"why": "inactivity"})
            )
        return Resolution(None, "lapsed")
    if now - last_seen >= TOUCH_EVERY:
        async with transaction("session"):
            await store.touch_session(row["id"], utc_instant(now))
    grants = tuple(store.grant_of(g) for g in grant_rows)
    return Resolution(Viewer(row["user_id"], row["printed_name"], grants, row["id"], row["kind"], row["csrf_token"]))


async def sign_out(viewer: Viewer) -> None:
    async with transaction("session"):
        await store.end_session(viewer.session_id, utc_instant(_now()), "signed out")
        await audit_log.record(
            viewer.user_id, Change("sign_out", "session", str(viewer.session_id), None, {"why": "signed out"})
        )


async def recent_sign_in_problems(limit: int = 50) -> list[dict]:
    """Failed and refused sign-ins, newest first, for the administrators' page (11.300(d))."""
    async with read():
        return await store.recent_attempts(("failed", "refused"), limit)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# The signing ceremony (11.200(a)(1)) ------------------------------------------------------------------


async def signing_ceremony(
    viewer: Viewer, meaning: str, password: str, typed_user_id: str | None, *, rules: AccountRules
) -> Signing:
    """Re-authenticate for a signature: both components at the first signing of a continuous period, the
    password alone within it. Fails closed with InvalidInput; the period's state is kept on the session."""
    now = _now()
    async with read():
        row = await store.find_session_by_id(viewer.session_id)
        account_row = await store.find_user(viewer.user_id)
    if row is None or account_row is None:
        raise invalid("the session has ended; sign in again", field="session")
    _check_meaning(meaning)
    attempt = await _signing_gate(viewer.user_id, now, rules.lockout)
    last = _instant(row["last_seen_at"])
    session = SigningSession(viewer.user_id, last, row["signing_since"] is not None, rules.inactivity)
    account = UserAccount(
        account_row["user_id"], account_row["printed_name"], account_row["email"], account_row["status"]
    )
    verify = lambda pw: rules.hashing.verify(account_row["password_hash"], pw)  # noqa: E731
    result = await to_thread.run_sync(
        session.sign, account, SigningAttempt(meaning, password or "", typed_user_id), verify, now
    )  # argon2: off the event loop
    async with transaction("signing"):
        await store.set_signing(viewer.session_id, utc_instant(now) if result.ok else None)
        await store.touch_session(viewer.session_id, utc_instant(now))
        await store.set_attempt_outcome(attempt, _outcome(result))
        if not result.ok:
            await audit_log.record(
                viewer.user_id,
                Change(
                    "signing_failed",
                    "session",
                    str(viewer.session_id),
                    None,
                    {"meaning": meaning if meaning in _MEANINGS else "invalid"},
                    result.reason,
                ),
            )
    if not result.ok:
        raise InvalidInput([Problem(f"signing refused: {result.reason}", field="password")])
    return result.signing


async def signing_by_password(user_id: str, meaning: str, password: str, *, rules: AccountRules) -> Signing:
    """The ceremony outside a web session (the command line): always both components, as at a first
    signing. Fails closed with InvalidInput; failures are audited like the web's."""
    now = _now()
    user_id = normalize_user_id(user_id)
    async with read():
        account_row = await store.find_user(user_id)
    if account_row is None:
        await to_thread.run_sync(
            rules.hashing.verify, await rules.dummy_hash(), password or ""
        )  # same time as a wrong password
        raise InvalidInput([Problem("signing refused: the user ID or password is not correct", field="password")])
    _check_meaning(meaning)
    attempt = await _signing_gate(user_id, now, rules.lockout)
    account = UserAccount(
        account_row["user_id"], account_row["printed_name"], account_row["email"], account_row["status"]
    )
    verify = lambda pw: rules.hashing.verify(account_row["password_hash"], pw)  # noqa: E731
    result = await to_thread.run_sync(
        SigningSession.start(user_id, now, rules.inactivity).sign,
        account,
        SigningAttempt(meaning, password or "", user_id),
        verify,
        now,
    )
    async with transaction("signing"):
        await store.set_attempt_outcome(attempt, _outcome(result))
    if not result.ok:
        async with transaction("signing"):
            await audit_log.record(
                user_id,
                Change(
                    "signing_failed",
                    "user",
                    user_id,
                    None,
                    {"meaning": meaning if meaning in _MEANINGS else "invalid"},
                    result.reason,
                ),
            )
        raise InvalidInput([Problem(f"signing refused: {result.reason}", field="password")])
    return result.signing


async def _signing_gate(user_id: str, now: datetime, policy: LockoutPolicy) -> int:
    """A signing attempt goes through the sign-in lock-out gate and counts in it: wrong signing passwords
    lock the account like wrong sign-in passwords, so a stolen session cannot be used to guess."""
    async with transaction("signing attempt"):
        attempt = await store.insert_attempt(utc_instant(now), user_id, SIGNING_ADDRESS, "pending")
    async with read():
        failures = [
            _instant(at)
            for at in await store.failures_before(user_id, attempt, utc_instant(now - policy.window - policy.lock_for))
        ]
    gate = login_gate(failures, now, policy)
    if not gate.allowed:
        await _finish(attempt, "refused", user_id, "signing_refused", {"locked": gate.locked})
        raise InvalidInput(
            [
                Problem(
                    f"signing refused: {'the account is locked' if gate.locked else 'too many failed attempts'};"
                    f" try again after {utc_instant(gate.retry_at)[:19]}Z UTC",
                    field="password",
                )
            ]
        )
    return attempt


def _check_meaning(meaning: str) -> None:
    """A meaning outside the fixed list is a mistake, not a guess: refused before the lock-out gate."""
    if meaning not in _MEANINGS:
        raise InvalidInput(
            [
                Problem(
                    f"signing refused: a signature's meaning is one of {', '.join(sorted(_MEANINGS))}", field="meaning"
                )
            ]
        )


def _outcome(result) -> str:
    """Only a wrong password is a failed guess; a missing user ID or meaning is a refused attempt."""
    if result.ok:
        return "succeeded"
    return "failed" if result.reason == WRONG_SIGNING_PASSWORD else "refused"


WRONG_SIGNING_PASSWORD = "the password is not correct"  # SigningSession.sign's reason
SIGNING_ADDRESS = "(signing)"  # attempts of the signing ceremony, in the sign-in attempts table
_MEANINGS = {"authorship", "review", "approval", "responsibility", "consent"}


async def grants_held(user_id: str) -> list[Grant]:
    """The user's grants, revoked ones excluded (ended or future ones included), inside the caller's unit of work."""
    return [store.grant_of(row) for row in await store.grants_of(user_id)]


async def grants_at(study: str, site: str) -> list[dict]:
    """The site's staff: active accounts with a grant at the site itself (the binder expects their documents)."""
    return await store.grants_at(study, site)
