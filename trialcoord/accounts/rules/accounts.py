"""User accounts, sign-in throttling, inactivity and the signing ceremony (Part 11 11.200, 11.300;
HIPAA 164.312(a)(2)(iii) automatic logoff).

Every rule takes `now` (an aware UTC datetime) and the recorded facts, never the clock or a database,
so the edges (the fifth failure, the minute a lock ends) are tested exactly. Password checking is
passed in as a function: hashing lives in `trialcoord.accounts.passwords`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from trialcoord.kernel.problems import InvalidInput, Problem

INACTIVITY_TIMEOUT = timedelta(minutes=15)

_USER_ID = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_PRINTED_NAME = 200
MAX_EMAIL = 254  # RFC 5321 path limit


class AccountStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


def valid_user_id(text: str) -> bool:
    return bool(_USER_ID.fullmatch(text))


def normalize_user_id(text: str) -> str:
    """The stored form of a typed user ID: IDs differ by more than case, so `JSmith` is `jsmith`."""
    return text.strip().lower()


@dataclass(frozen=True, slots=True)
class UserAccount:
    """One person's account. The user ID is unique and never reused: accounts are disabled, never
    deleted, so a signature's user ID always names the one person who made it (11.100)."""

    user_id: str
    printed_name: str  # shown with every signature (11.50)
    email: str
    status: AccountStatus = AccountStatus.ACTIVE

    def __post_init__(self) -> None:
        problems = _account_problems(self)
        if problems:
            raise InvalidInput(problems)
        object.__setattr__(self, "status", AccountStatus(self.status))

    @property
    def active(self) -> bool:
        return self.status is AccountStatus.ACTIVE


def _account_problems(account: UserAccount) -> list[Problem]:
    name, email = account.printed_name, account.email
    checks = [
        (
            not _USER_ID.fullmatch(account.user_id),
            "a user ID has 3 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
            "user_id",
        ),
        (
            not name.strip() or len(name) > MAX_PRINTED_NAME,
            f"the printed name is required and at most {MAX_PRINTED_NAME} characters",
            "printed_name",
        ),
        (len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email), "the e-mail address is not valid", "email"),
        (account.status not in set(AccountStatus), f"the status is one of {', '.join(AccountStatus)}", "status"),
    ]
    return [Problem(message, field=field) for failed, message, field in checks if failed]


# --- sign-in throttling and lock-out (11.300(d): attempted misuse is detected and stopped) ---


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """`max_failures` failures within `window` lock the account for `lock_for`; before that, each
    failure doubles the wait before the next attempt, from `first_delay` up to `max_delay`. One address with
    `per_address` failures within `window`, across accounts, is refused for a `window` (password spraying)."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)
    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(seconds=30)
    per_address: int = 50

    def __post_init__(self) -> None:
        too_few = min(self.max_failures, self.per_address) < 1
        if too_few or min(self.window, self.lock_for, self.first_delay) <= timedelta(0):
            raise ValueError("a lock-out policy needs at least one failure and positive durations")
        if self.max_delay < self.first_delay:
            raise ValueError("max_delay must be at least first_delay")


@dataclass(frozen=True, slots=True)
class LoginGate:
    allowed: bool
    locked: bool = False
    retry_at: datetime | None = None  # when an attempt will be considered again
    reason: str = ""


def locked_until(failures: Iterable[datetime], policy: LockoutPolicy = LockoutPolicy()) -> datetime | None:
    """End of the latest lock the failures cause (None: never locked). `failures` are the instants
    of failed sign-ins since the account's last successful one."""
    times, n = sorted(failures), policy.max_failures
    ends = [times[i] + policy.lock_for for i in range(n - 1, len(times)) if times[i] - times[i - n + 1] < policy.window]
    return max(ends, default=None)


def retry_delay(recent_failures: int, policy: LockoutPolicy = LockoutPolicy()) -> timedelta:
    """Wait after the last of `recent_failures` failures: 0, then first_delay doubling to max_delay."""
    if recent_failures < 1:
        return timedelta(0)
    delay: timedelta = policy.first_delay * 2 ** min(recent_failures - 1, 32)  # int ** int is typed Any
    return min(delay, policy.max_delay)


def login_gate(failures: Iterable[datetime], now: datetime, policy: LockoutPolicy = LockoutPolicy()) -> LoginGate:
    """May a sign-in attempt be checked at `now`? A refused attempt is not a failed one: record it as
    refused (and audit it), not as a failure, or a locked account could be kept locked forever."""
    times = sorted(failures)
    until = locked_until(times, policy)
    if until is not None and now < until:
        return LoginGate(
            False,
            True,
            until,
            f"locked after {policy.max_failures} failed sign-ins; try again after {until:%Y-%m-%d %H:%M} UTC",
        )
    if not times:
        return LoginGate(True)
    recent = sum(1 for t in times if times[-1] - t < policy.window)
    retry_at = times[-1] + retry_delay(recent, policy)
    if now < retry_at:
        return LoginGate(False, False, retry_at, f"too many failed sign-ins; wait until {retry_at:%H:%M:%S} UTC")
    return LoginGate(True)


# --- automatic logoff (HIPAA 164.312(a)(2)(iii)) ---


def session_lapsed(last_activity: datetime, now: datetime, timeout: timedelta = INACTIVITY_TIMEOUT) -> bool:
    """A session idle for `timeout` or longer has ended; the user signs in again."""
    return now - last_activity >= timeout


# --- the signing ceremony (11.200(a)(1)) ---


class Meaning(StrEnum):
    """What a signature means (11.50(a)(3)); the only meanings a signing can carry."""

    AUTHORSHIP = "authorship"
    REVIEW = "review"
    APPROVAL = "approval"
    RESPONSIBILITY = "responsibility"
    CONSENT = "consent"


class Components(StrEnum):
    USER_ID_AND_PASSWORD = "user ID and password"
    PASSWORD = "password"


@dataclass(frozen=True, slots=True)
class SigningAttempt:
    """What the person typed in the signing dialog."""

    meaning: str
    password: str = field(repr=False)
    user_id: str | None = None  # required for the first signing of a continuous session


@dataclass(frozen=True, slots=True)
class Signing:
    """A completed signing: who, with which meaning, when, and which components were checked."""

    user_id: str
    printed_name: str
    meaning: Meaning
    signed_at: datetime
    components: Components


@dataclass(frozen=True, slots=True)
class SigningResult:
    signing: Signing | None  # None: the ceremony failed and nothing may be signed
    session: SigningSession
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.signing is not None


@dataclass(frozen=True, slots=True)
class SigningSession:
    """Signing state of one signed-in user's continuous period of access.

    The first signing of the period needs both components (user ID and password); later ones, the
    password only. A period ends after `timeout` of inactivity or a failed signing, so the next
    signing needs both components again (11.200(a)(1)(i)-(ii)).
    """

    user_id: str
    last_activity: datetime
    first_signing_done: bool = False
    timeout: timedelta = INACTIVITY_TIMEOUT

    @classmethod
    def start(cls, user_id: str, now: datetime, timeout: timedelta = INACTIVITY_TIMEOUT) -> SigningSession:
        return cls(user_id, now, False, timeout)

    def continuous(self, now: datetime) -> bool:
        return not session_lapsed(self.last_activity, now, self.timeout)

    def required_components(self, now: datetime) -> Components:
        if self.first_signing_done and self.continuous(now):
            return Components.PASSWORD
        return Components.USER_ID_AND_PASSWORD

    def touch(self, now: datetime) -> SigningSession:
        """Any activity of the user keeps the period continuous; after a lapse a new one begins."""
        return replace(self, last_activity=now, first_signing_done=self.first_signing_done and self.continuous(now))

    def sign(
        self, account: UserAccount, attempt: SigningAttempt, verify_password: Callable[[str], bool], now: datetime
    ) -> SigningResult:
        """Run the ceremony for the current `account` (reloaded, so a disabled account cannot sign).
        `verify_password` checks a password against that account's stored hash. Every failure fails
        closed: no signing, and the next attempt needs both components."""
        required = self.required_components(now)
        reason = _refusal(self, account, attempt, required)
        if reason is None and not verify_password(attempt.password):
            reason = "the password is not correct"
        if reason is not None:
            return SigningResult(None, replace(self, first_signing_done=False), reason)
        signing = Signing(account.user_id, account.printed_name, Meaning(attempt.meaning), now, required)
        return SigningResult(signing, replace(self, last_activity=now, first_signing_done=True))


def _refusal(
    session: SigningSession, account: UserAccount, attempt: SigningAttempt, required: Components
) -> str | None:
    typed_id = normalize_user_id(attempt.user_id or "")
    if account.user_id != session.user_id:
        return "the account is not the one signed in"
    if not account.active:
        return "the account is disabled"
    if attempt.meaning not in set(Meaning):
        return f"a signature's meaning is one of {', '.join(Meaning)}"
    if required is Components.USER_ID_AND_PASSWORD and not typed_id:
        return "this signing needs your user ID and password"
    if typed_id and typed_id != session.user_id:
        return "the user ID is not the signed-in user's"
    if not attempt.password:
        return "this signing needs your password"
    return None
