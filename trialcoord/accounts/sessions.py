"""Sign-in, sessions and tokens (rules in docs/access-control.md), and `resolve`, the guard's session lookup;
calendar feeds and `resolve_feed`, the guard's feed lookup.

Sessions are server-side rows named by the SHA-256 of a random token (the cookie or bearer value is never
stored). Every sign-in and failed sign-in is audited.

A calendar feed is a token of its own kind, in its own table: the secret part of an address a calendar app
polls (it can send no header). It opens that one calendar and nothing else; the guard re-checks its owner's
grants on every fetch (docs/_drafts/ics.md).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import quote

from anyio import to_thread

from trialcoord.accounts import store, users
from trialcoord.accounts.passwords import MAX_LENGTH
from trialcoord.accounts.rules.accounts import (
    AccountStatus,
    login_gate,
    normalize_user_id,
    session_lapsed,
    valid_user_id,
)
from trialcoord.accounts.users import AccountRules, user_row
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import NotFound, invalid
from trialcoord.kernel.rules.access import FEED_VIEWER, Action, Resolution, Viewer, authorize
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.scheduling import lookups, participants

PAGE, API, TOKEN = "page", "api", "token"  # session kinds: cookie, bearer from sign-in, long-lived bearer
TOUCH_EVERY = timedelta(seconds=30)  # last activity is written at most this often (a lapse comes early, never late)
WARN_BEFORE = timedelta(minutes=2)  # how early a page warns of the inactivity sign-out


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
    now = users.now()
    since = now - rules.lockout.window
    async with transaction("sign-in attempt"):
        row = await store.find_user(user_id) if valid_user_id(user_id) else None
        recorded = row["user_id"] if row else UNKNOWN
        attempt = await store.insert_attempt(utc_instant(now), recorded, address, "pending")
    async with read():
        # A lock lasts `lock_for` after the failures that caused it, which span up to `window`.
        failures = (
            [
                instant(at)
                for at in await store.failures_before(recorded, attempt, utc_instant(since - rules.lockout.lock_for))
            ]
            if row
            else []
        )
        sprayed = await store.address_failures_before(address, attempt, utc_instant(since)) >= rules.lockout.per_address
    gate = login_gate(failures, now, rules.lockout)
    if not gate.allowed or sprayed:
        await finish_attempt(
            attempt,
            "refused",
            recorded,
            "sign_in_refused",
            {"address": address, "locked": gate.locked, "address_throttled": sprayed},
        )
        retry_at = gate.retry_at if not sprayed else now + rules.lockout.window
        if retry_at is None:
            raise AssertionError("a refusal by the lock-out gate names when to try again")
        wait = "the account is locked" if gate.locked else "too many failed sign-ins"
        raise SignInRefused(f"Sign-in refused: {wait}; try again after {utc_instant(retry_at)[:19]}Z UTC.", retry_at)
    password = password or ""
    # No password is longer than MAX_LENGTH: a longer one is refused without making argon2 hash megabytes.
    # argon2 runs in a worker thread: tens of milliseconds of CPU must not stall every other request.
    stored_hash = row["password_hash"] if row else await rules.dummy_hash()
    valid = len(password) <= MAX_LENGTH and await to_thread.run_sync(rules.hashing.verify, stored_hash, password)
    if not valid or row is None or row["status"] != AccountStatus.ACTIVE:
        await finish_attempt(
            attempt,
            "failed",
            recorded,
            "sign_in_failed",
            {"address": address, "disabled": row is not None and row["status"] != "active"},
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


async def finish_attempt(attempt: int, outcome: str, user_id: str, action: str, details: dict[str, object]) -> None:
    async with transaction("sign-in attempt"):
        await store.set_attempt_outcome(attempt, outcome)
        await audit_log.record(user_id, Change(action, "user", user_id, None, details))


async def issue_token(user_id: str, days: int, actor: str) -> SignedIn:
    """A bearer token for a program, valid for `days` whatever the activity; revoked by sign-out everywhere."""
    user_id = normalize_user_id(user_id)
    if not 1 <= days <= 366:
        raise invalid("a token is valid for 1 to 366 days", field="days")
    token, now = secrets.token_urlsafe(32), users.now()
    expires = utc_instant(now + timedelta(days=days))
    async with transaction(f"token for {user_id}"):
        row = await user_row(user_id)
        if row.status != AccountStatus.ACTIVE:
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
    now = users.now()
    async with read():
        row = await store.find_session(_token_hash(token))
        if row is None or row["status"] != AccountStatus.ACTIVE:
            return Resolution(None, "unknown")
        grant_rows = await store.grants_of(row["user_id"])
    last_seen = instant(row["last_seen_at"])
    if row["expires_at"] is not None and now >= instant(row["expires_at"]):
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


SIGN_OUT_REASONS = ("signed out", "inactivity")  # the user's own, or their page's at the inactivity limit


async def sign_out(viewer: Viewer, why: str = "signed out") -> None:
    if why not in SIGN_OUT_REASONS:
        raise invalid(f"a sign-out is {' or '.join(SIGN_OUT_REASONS)}", field="why")
    async with transaction("session"):
        await store.end_session(viewer.session_id, utc_instant(users.now()), why)
        await audit_log.record(
            viewer.user_id, Change("sign_out", "session", str(viewer.session_id), None, {"why": why})
        )


@dataclass(frozen=True, slots=True)
class PageTiming:
    """What a page tells its script about the inactivity sign-out, in seconds: when the session ends at the latest
    counted from this answer (activity is written at most every TOUCH_EVERY, so up to that much earlier than the
    limit), and how long before that to warn."""

    ends_in: int
    warn: int


def page_timing(inactivity: timedelta) -> PageTiming:
    ends_in = max(int((inactivity - TOUCH_EVERY).total_seconds()), 1)
    return PageTiming(ends_in, min(int(WARN_BEFORE.total_seconds()), ends_in // 2))


async def extend(viewer: Viewer, rules: AccountRules) -> PageTiming:
    """Count now as activity (the page's "Stay signed in"): the session then lasts the whole inactivity limit."""
    async with transaction("session"):
        await store.touch_session(viewer.session_id, utc_instant(users.now()))
    seconds = int(rules.inactivity.total_seconds())
    return PageTiming(seconds, page_timing(rules.inactivity).warn)


@dataclass(frozen=True, slots=True)
class SignInAttempt:
    """A sign-in (or signing) attempt: when, the user ID recorded (UNKNOWN for an unknown one), from where, and
    how it ended."""

    attempted_at: str
    user_id: str
    address: str
    outcome: str


async def recent_sign_in_problems(limit: int = 50) -> list[SignInAttempt]:
    """Failed and refused sign-ins, newest first, for the administrators' page (11.300(d))."""
    async with read():
        rows = await store.recent_attempts(("failed", "refused"), limit)
    return [SignInAttempt(row["attempted_at"], row["user_id"], row["address"], row["outcome"]) for row in rows]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# Calendar feeds ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalendarFeed:
    """A user's calendar of one site or one participant (`site` or `subject_id` set), by a secret address."""

    id: int
    user_id: str
    study: str
    site: str | None
    subject_id: str | None
    created_at: str
    last_used_at: str | None  # the last fetch, served or refused
    revoked_at: str | None
    revoked_by: str | None

    @property
    def what(self) -> str:
        return f"site {self.site}" if self.site is not None else f"participant {self.subject_id}"

    def path(self, token: str) -> str:
        """The feed's address (without scheme and host): the calendar's own, with the token in it."""
        where = (
            f"sites/{quote(self.site, safe='')}"
            if self.site is not None
            else f"participants/{quote(self.subject_id or '', safe='')}"
        )
        return f"/api/studies/{quote(self.study, safe='')}/{where}/feeds/{token}/schedule.ics"


@dataclass(frozen=True, slots=True)
class NewFeed:
    feed: CalendarFeed
    token: str  # shown once, in the address

    @property
    def path(self) -> str:
        return self.feed.path(self.token)


def _feed(row: dict) -> CalendarFeed:
    return CalendarFeed(**{name: row[name] for name in CalendarFeed.__dataclass_fields__})


async def create_feed(user_id: str, study: str, site: str | None = None, subject_id: str | None = None) -> NewFeed:
    """A feed of `site`'s or `subject_id`'s visits for `user_id`, whose right to see them the route checked (and
    every fetch checks again). Audited, without the token."""
    if (site is None) == (subject_id is None):
        raise ValueError("a calendar feed is of one site or one participant")
    if subject_id is not None and await participants.participant_site(study, subject_id) is None:
        raise NotFound(f"participant {subject_id} of {study} does not exist")
    token, now = secrets.token_urlsafe(32), utc_instant(users.now())
    async with transaction(f"calendar feed for {user_id}"):
        if site is not None:
            found = await lookups.find_study(study)
            if found is None or await lookups.find_site(found["id"], site) is None:
                raise NotFound(f"site {site} of {study} does not exist")
        feed_id = await store.insert_feed(_token_hash(token), user_id, study, site, subject_id, now)
        row = await store.feed_by_id(feed_id)
        if row is None:
            raise LookupError(f"calendar feed {feed_id} is not stored")
        await audit_log.record(
            user_id,
            Change(
                "create", "calendar_feed", str(feed_id), None, {"study": study, "site": site, "subject_id": subject_id}
            ),
        )
    return NewFeed(_feed(row), token)


async def calendar_feeds(user_id: str) -> list[CalendarFeed]:
    """The user's feeds, newest first, revoked ones too."""
    async with read():
        return [_feed(row) for row in await store.feeds_of(normalize_user_id(user_id))]


async def revoke_feed(feed_id: int, viewer: Viewer, today: date) -> CalendarFeed:
    """Revoke a feed: its owner's, or any for an administrator (who may manage users). Another's feed is not
    found, so that its existence does not leak. Revoking a revoked feed changes nothing."""
    async with transaction(f"calendar feed {feed_id}"):
        row = await store.feed_by_id(feed_id)
        owner = row is not None and row["user_id"] == viewer.user_id
        if row is None or not (owner or authorize(viewer.grants, Action.MANAGE_USERS, None, None, today)):
            raise NotFound(f"calendar feed {feed_id} does not exist")
        if row["revoked_at"] is None:
            await store.revoke_feed(feed_id, viewer.user_id, utc_instant(users.now()))
            await audit_log.record(
                viewer.user_id, Change("revoke", "calendar_feed", str(feed_id), None, {"user_id": row["user_id"]})
            )
            row = await store.feed_by_id(feed_id)
    if row is None:
        raise LookupError(f"calendar feed {feed_id} is not stored")
    return _feed(row)


async def resolve_feed(token: str | None, study: str | None, site: str | None, subject_id: str | None) -> Resolution:
    """The owner a feed's address stands for, with the grants they hold now, when the token names a feed that is not
    revoked, of an active account, for exactly this calendar (study, and site or participant); whether the grants
    allow it is the guard's to decide. The fetch is noted as the feed's last use."""
    if not token or len(token) > 200:
        return Resolution(None, "unknown")
    async with read():
        row = await store.find_feed(_token_hash(token))
        if row is None or row["revoked_at"] is not None or row["status"] != AccountStatus.ACTIVE:
            return Resolution(None, "unknown")
        if (row["study"], row["site"], row["subject_id"]) != (study, site, subject_id):
            return Resolution(None, "unknown")
        grant_rows = await store.grants_of(row["user_id"])
    async with transaction("calendar feed"):
        await store.touch_feed(row["id"], utc_instant(users.now()))
    grants = tuple(store.grant_of(g) for g in grant_rows)
    return Resolution(Viewer(row["user_id"], row["printed_name"], grants, row["id"], FEED_VIEWER, ""))
