"""What an administrator sees first: accounts locked out now and disabled ones, the failed and refused sign-ins
since their previous sign-in, and the jobs (the nightly run: when, and each study's last detection run; sponsor
package builds under way or failed)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from trialcoord.accounts import sessions, users
from trialcoord.accounts.rules.accounts import AccountStatus, LockoutPolicy, locked_until
from trialcoord.accounts.sessions import SignInAttempt
from trialcoord.accounts.users import User
from trialcoord.exports import packages
from trialcoord.exports.packages import Package
from trialcoord.home import store
from trialcoord.home.nightly import last_runs
from trialcoord.home.rules.nightly import Schedule, next_night
from trialcoord.home.rules.tasks import SHOWN, InStudy, Listed, first, listed
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.scheduling import protocols


@dataclass(frozen=True, slots=True)
class LockedAccount:
    user_id: str
    until: datetime


async def locked_accounts(now: datetime, policy: LockoutPolicy) -> Listed[LockedAccount]:
    """Accounts that the lock-out policy refuses now (failed sign-ins since their last successful one), and until
    when: one read of the failures recent enough to lock."""
    async with read():
        failures = await store.failures_since(utc_instant(now - policy.window - policy.lock_for))
    by_user: dict[str, list[datetime]] = defaultdict(list)
    for user_id, at in failures:
        if user_id != sessions.UNKNOWN:
            by_user[user_id].append(sessions.instant(at))
    locked = [
        LockedAccount(user_id, until)
        for user_id, times in by_user.items()
        if (until := locked_until(times, policy)) is not None and until > now
    ]
    return first(locked, key=lambda a: (a.until, a.user_id))


async def disabled_accounts() -> Listed[User]:
    return first([u for u in await users.list_users() if u.status != AccountStatus.ACTIVE], key=lambda u: u.user_id)


async def sign_in_problems(since: str | None) -> Listed[SignInAttempt]:
    """Failed and refused sign-ins at or after `since` (every one recorded, for a first visit), newest first."""
    since = since or ""
    recent = [row for row in await sessions.recent_sign_in_problems(limit=SHOWN) if row.attempted_at >= since]
    async with read():
        total = await store.sign_in_problems_since(since)
    return first(recent, key=lambda row: 0, total=total)  # already newest first


@dataclass(frozen=True, slots=True)
class StudyRun:
    """A study's last detection run (`ran_at` None: never)."""

    study: str
    ran_at: datetime | None


@dataclass(frozen=True, slots=True)
class Jobs:
    """The nightly run (its schedule and next time here, or why this server does not run it), each study's last
    detection run (oldest first: the one most behind leads), sponsor package builds under way or failed."""

    schedule: Schedule | None
    not_run_because: str | None
    next_at: datetime | None
    runs: Listed[StudyRun]
    builds: Listed[InStudy[Package]]


async def jobs(now: datetime, schedule: Schedule | None, not_run_because: str | None) -> Jobs:
    runs = [StudyRun(study, ran_at) for study, ran_at in (await last_runs()).items()]
    builds = [
        InStudy(study.code, package)
        for study in await protocols.list_studies()
        for package in await packages.packages_of(study.code)
        if package.state in ("building", "failed")
    ]
    return Jobs(
        schedule,
        not_run_because,
        next_night(now, schedule.at, schedule.tz) if schedule else None,
        first(runs, key=lambda r: (r.ran_at is not None, r.ran_at or now, r.study)),
        listed(builds, key=lambda t: (t.row.state != "building", t.study, -t.row.id)),
    )
