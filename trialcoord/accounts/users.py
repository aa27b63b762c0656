"""Accounts and grants (rules in docs/access-control.md): the account rules every use case is handed, users,
their grants, and the grants other features read. Every change to an account or grant is audited.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from anyio import to_thread

from trialcoord.accounts import signer_keys, store
from trialcoord.accounts.passwords import PasswordHashing, password_problems
from trialcoord.accounts.rules.accounts import (
    INACTIVITY_TIMEOUT,
    AccountStatus,
    LockoutPolicy,
    UserAccount,
    normalize_user_id,
)
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.config import Settings
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound, Problem, invalid
from trialcoord.kernel.rules.access import Grant, Role, parse_role
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.kernel.web.paging import Page, PageRequest, page_of


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


def now() -> datetime:
    return audit_log.clock()


@dataclass(frozen=True, slots=True)
class StoredUser:
    """An account as stored, its password hash included: for the accounts' own use cases only."""

    user_id: str
    printed_name: str
    email: str
    status: str
    password_hash: str | None
    password_changed_at: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A grant as administered: the grant itself, who gave it when, and its revocation."""

    id: int
    user_id: str
    role: str
    study: str | None
    site: str | None
    valid_from: date
    valid_to: date | None
    personal_data: bool
    granted_by: str
    granted_at: str
    revoked_by: str | None
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class User:
    """An account as shown to administrators (never its password hash)."""

    user_id: str
    printed_name: str
    email: str
    status: str
    created_at: str


@dataclass(frozen=True, slots=True)
class UserWithGrants:
    """An account with every grant it was given, revoked ones included."""

    user_id: str
    printed_name: str
    email: str
    status: str
    created_at: str
    grants: tuple[GrantRecord, ...]


# Accounts ----------------------------------------------------------------------------------------


async def create_user(
    user_id: str, printed_name: str, email: str, password: str, actor: str, *, rules: AccountRules
) -> UserWithGrants:
    account = UserAccount(normalize_user_id(user_id), printed_name.strip(), email.strip())
    _check_password(password, account)
    stored_hash = await to_thread.run_sync(rules.hashing.hash, password)
    async with transaction(f"user {account.user_id}"):
        if await store.find_user(account.user_id):
            raise Conflict(f"user ID {account.user_id} is taken (IDs are never reused, even of disabled accounts)")
        await store.insert_user(account.user_id, account.printed_name, account.email, stored_hash, utc_instant(now()))
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


async def get_user(user_id: str) -> UserWithGrants:
    async with read():
        row = await user_row(normalize_user_id(user_id))
        grants = await store.grants_of(row.user_id, include_revoked=True)
    return UserWithGrants(
        row.user_id, row.printed_name, row.email, row.status, row.created_at, tuple(_grant_record(g) for g in grants)
    )


async def list_users() -> list[User]:
    async with read():
        return [_public(row) for row in await store.list_users()]


USER_SORTS = tuple(store.USER_SORTS)  # user_id, name, created
STATUSES = tuple(AccountStatus)


@dataclass(frozen=True, slots=True)
class UserFilter:
    """Which accounts the administrators' list shows: `text` in the user ID, name or e-mail (any case), holding a
    grant of `role` not revoked, and with `status`; None (or empty) is any."""

    text: str | None = None
    role: str | None = None
    status: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.text is not None and len(self.text) > 200:
            problems.append(Problem("search for at most 200 characters", field="text"))
        if self.role and self.role not in set(Role):
            problems.append(Problem(f"a role is one of {', '.join(Role)}", field="role"))
        if self.status and self.status not in set(AccountStatus):
            problems.append(Problem(f"a status is one of {', '.join(AccountStatus)}", field="status"))
        if problems:
            raise InvalidInput(problems)


async def users_page(filters: UserFilter, wanted: PageRequest) -> Page[UserWithGrants]:
    """A page of accounts with every grant each was given: two queries, whatever the page's size."""
    async with read():
        rows = await store.users_page(
            filters.text or None,
            filters.role or None,
            filters.status or None,
            wanted.sort,
            wanted.descending,
            wanted.after,
            wanted.size + 1,
        )
        grant_rows = await store.grants_of_users([row["user_id"] for row in rows])
    grants: dict[str, list[GrantRecord]] = {}
    for row in grant_rows:
        grants.setdefault(row["user_id"], []).append(_grant_record(row))
    found = [
        UserWithGrants(
            row["user_id"],
            row["printed_name"],
            row["email"],
            row["status"],
            row["created_at"],
            tuple(grants.get(row["user_id"], ())),
        )
        for row in rows
    ]
    column = store.USER_SORTS[wanted.sort]  # the attribute of the same name
    return page_of(found, wanted, lambda user: (getattr(user, column), user.user_id))


async def count_users() -> int:
    async with read():
        return await store.count_users()


async def disable_user(
    user_id: str, actor: str, reason: str, installation: Installation, today: date | None = None
) -> UserWithGrants:
    """Disable the account: its sessions end, and its signing key (the registry the installation publishes).
    Refused (Conflict) for the account holding the last administrator grant in force (`keep_an_administrator`)."""
    user_id = normalize_user_id(user_id)
    if not (reason or "").strip():
        raise invalid(f"user {user_id}: give the reason for disabling the account", field="reason")
    async with transaction(f"user {user_id}"):
        row = await user_row(user_id)
        if row.status != AccountStatus.DISABLED:
            await keep_an_administrator(today or now().date(), user_id=user_id)
            await store.update_user(user_id, status=str(AccountStatus.DISABLED))
            ended = await store.end_sessions_of(user_id, utc_instant(now()), "account disabled")
            await audit_log.record(
                actor,
                Change(
                    "update",
                    "user",
                    user_id,
                    {"status": row.status},
                    {"status": "disabled", "sessions_ended": ended},
                    reason.strip(),
                ),
            )

    await signer_keys.end_signer_keys(user_id, "account disabled", actor, installation)
    return await get_user(user_id)


async def reset_password(user_id: str, password: str, actor: str, *, rules: AccountRules) -> UserWithGrants:
    """A new password ends every session of the account (sign-out everywhere)."""
    user_id = normalize_user_id(user_id)
    async with read():
        row = await user_row(user_id)
    _check_password(password, UserAccount(row.user_id, row.printed_name, row.email))
    stored_hash = await to_thread.run_sync(rules.hashing.hash, password)
    async with transaction(f"user {user_id}"):
        await user_row(user_id)
        at = utc_instant(now())
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


async def user_row(user_id: str) -> StoredUser:
    row = await store.find_user(user_id)
    if row is None:
        raise NotFound(f"there is no user {user_id}")
    return _stored_user(row)


def _stored_user(row: dict[str, Any]) -> StoredUser:
    return StoredUser(
        row["user_id"],
        row["printed_name"],
        row["email"],
        row["status"],
        row["password_hash"],
        row["password_changed_at"],
        row["created_at"],
    )


def _public(row: dict[str, Any]) -> User:
    return User(row["user_id"], row["printed_name"], row["email"], row["status"], row["created_at"])


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
) -> GrantRecord:
    user_id = normalize_user_id(user_id)
    new = Grant(user_id, parse_role(role), study or None, site or None, valid_from, valid_to, personal_data)
    async with transaction(f"grant for user {user_id}"):
        row = await user_row(user_id)
        if row.status != AccountStatus.ACTIVE:
            raise invalid(f"user {user_id} is disabled; a disabled account gets no grants", field="user_id")
        await _check_scope(new)
        grant_id = await store.insert_grant(new, actor, utc_instant(now()))
        await audit_log.record(actor, Change("grant", "grant", str(grant_id), None, _grant_fields(new)))
        return _grant_record(await _stored_grant(grant_id))


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


async def revoke(grant_id: int, actor: str, reason: str, today: date | None = None) -> GrantRecord:
    """Refused (Conflict) for the last administrator grant in force (`keep_an_administrator`)."""
    if not (reason or "").strip():
        raise invalid(f"grant {grant_id}: give the reason for revoking it", field="reason")
    async with transaction(f"grant {grant_id}"):
        row = await _stored_grant(grant_id)
        if row["revoked_at"] is None:
            await keep_an_administrator(today or now().date(), grant_id=grant_id)
            await store.revoke_grant(grant_id, actor, utc_instant(now()))
            await audit_log.record(
                actor,
                Change("revoke", "grant", str(grant_id), _grant_fields(store.grant_of(row)), None, reason.strip()),
            )
        return _grant_record(await _stored_grant(grant_id))


LAST_ADMINISTRATOR = "the last active administrator grant: grant another administrator first"


async def keep_an_administrator(today: date, *, grant_id: int | None = None, user_id: str | None = None) -> None:
    """Refuse to end grant `grant_id` or disable account `user_id` when it would leave no active account with an
    administrator grant of every study in force `today` (the only grant that manages users): no one could
    administer from the web. Inside the caller's transaction, which the check holds until it ends (see
    `store.administrator_grants`). The shell's operator can always `trialcoord user grant ID administrator`."""
    in_force = [row for row in await store.administrator_grants() if store.grant_of(row).in_force(today)]
    going = [row for row in in_force if row["id"] == grant_id or row["user_id"] == user_id]
    if going and len(going) == len(in_force):
        what = f"grant {grant_id}" if grant_id is not None else f"user {user_id}"
        raise Conflict(f"{what} holds {LAST_ADMINISTRATOR}")


async def _stored_grant(grant_id: int) -> dict[str, Any]:
    row = await store.find_grant(grant_id)
    if row is None:
        raise NotFound(f"there is no grant {grant_id}")
    return row


def _grant_fields(g: Grant) -> dict[str, object]:
    return {
        "user_id": g.user_id,
        "role": str(g.role),
        "study": g.study,
        "site": g.site,
        "valid_from": g.valid_from.isoformat(),
        "valid_to": g.valid_to.isoformat() if g.valid_to else None,
        "personal_data": g.personal_data,
    }


def _grant_record(row: dict[str, Any]) -> GrantRecord:
    g = store.grant_of(row)
    return GrantRecord(
        row["id"],
        g.user_id,
        str(g.role),
        g.study,
        g.site,
        g.valid_from,
        g.valid_to,
        g.personal_data,
        row["granted_by"],
        row["granted_at"],
        row["revoked_by"],
        row["revoked_at"],
    )


async def grants_held(user_id: str) -> list[Grant]:
    """The user's grants, revoked ones excluded (ended or future ones included), inside the caller's unit of work."""
    return [store.grant_of(row) for row in await store.grants_of(user_id)]


async def grants_at(study: str, site: str) -> list[Grant]:
    """The site's staff: active accounts with a grant at the site itself (the binder expects their documents)."""
    return [store.grant_of(row) for row in await store.grants_at(study, site)]


async def grants_in_study(study: str) -> list[Grant]:
    """Who works on the study: active accounts' unrevoked grants covering it (ended or future ones included),
    administrators' of every study too; inside the caller's unit of work."""
    return [store.grant_of(row) for row in await store.grants_in_study(study)]
