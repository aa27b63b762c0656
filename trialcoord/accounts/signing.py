"""The signing ceremony (11.200(a)(1); rules in docs/access-control.md): re-authentication for a signature in a
web session or on the command line, through the sign-in lock-out gate; failures are audited.
"""

from __future__ import annotations

from datetime import datetime

from anyio import to_thread

from trialcoord.accounts import store, users
from trialcoord.accounts.rules.accounts import (
    LockoutPolicy,
    Signing,
    SigningAttempt,
    SigningResult,
    SigningSession,
    UserAccount,
    login_gate,
    normalize_user_id,
)
from trialcoord.accounts.sessions import finish_attempt, instant
from trialcoord.accounts.users import AccountRules
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import InvalidInput, Problem, invalid
from trialcoord.kernel.rules.access import Viewer
from trialcoord.kernel.rules.audit_entries import utc_instant

# The signing ceremony (11.200(a)(1)) ------------------------------------------------------------------


async def signing_ceremony(
    viewer: Viewer, meaning: str, password: str, typed_user_id: str | None, *, rules: AccountRules
) -> Signing:
    """Re-authenticate for a signature: both components at the first signing of a continuous period, the
    password alone within it. Fails closed with InvalidInput; the period's state is kept on the session."""
    now = users.now()
    async with read():
        row = await store.find_session_by_id(viewer.session_id)
        account_row = await store.find_user(viewer.user_id)
    if row is None or account_row is None:
        raise invalid("the session has ended; sign in again", field="session")
    _check_meaning(meaning)
    attempt = await _signing_gate(viewer.user_id, now, rules.lockout)
    last = instant(row["last_seen_at"])
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
    if result.signing is None:  # the ceremony failed (result.ok is False)
        raise InvalidInput([Problem(f"signing refused: {result.reason}", field="password")])
    return result.signing


async def signing_by_password(user_id: str, meaning: str, password: str, *, rules: AccountRules) -> Signing:
    """The ceremony outside a web session (the command line): always both components, as at a first
    signing. Fails closed with InvalidInput; failures are audited like the web's."""
    now = users.now()
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
    if result.signing is None:
        raise AssertionError("a successful signing ceremony carries its signing")
    return result.signing


async def _signing_gate(user_id: str, now: datetime, policy: LockoutPolicy) -> int:
    """A signing attempt goes through the sign-in lock-out gate and counts in it: wrong signing passwords
    lock the account like wrong sign-in passwords, so a stolen session cannot be used to guess."""
    async with transaction("signing attempt"):
        attempt = await store.insert_attempt(utc_instant(now), user_id, SIGNING_ADDRESS, "pending")
    async with read():
        failures = [
            instant(at)
            for at in await store.failures_before(user_id, attempt, utc_instant(now - policy.window - policy.lock_for))
        ]
    gate = login_gate(failures, now, policy)
    if not gate.allowed:
        await finish_attempt(attempt, "refused", user_id, "signing_refused", {"locked": gate.locked})
        if gate.retry_at is None:
            raise AssertionError("a refusal by the lock-out gate names when to try again")
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


def _outcome(result: SigningResult) -> str:
    """Only a wrong password is a failed guess; a missing user ID or meaning is a refused attempt."""
    if result.ok:
        return "succeeded"
    return "failed" if result.reason == WRONG_SIGNING_PASSWORD else "refused"


WRONG_SIGNING_PASSWORD = "the password is not correct"  # SigningSession.sign's reason
SIGNING_ADDRESS = "(signing)"  # attempts of the signing ceremony, in the sign-in attempts table
_MEANINGS = {"authorship", "review", "approval", "responsibility", "consent"}
