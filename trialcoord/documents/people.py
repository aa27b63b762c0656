"""The people who work on a study, as the binder names them: whose document a CV or licence is, and who may be
asked to sign a version. Their grants decide (`accounts.users`); nothing here is stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from trialcoord.accounts import users
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.rules.access import Grant


@dataclass(frozen=True, slots=True)
class Person:
    """An active account with a grant in force in the study today."""

    user_id: str
    printed_name: str
    grants: tuple[Grant, ...]  # their grants covering the study, in force today

    @property
    def shown(self) -> str:
        return f"{self.printed_name} ({self.user_id})"

    def works_at(self, site: str | None) -> bool:
        """Granted at the site itself (its staff), or for the whole study (monitors, sponsors, administrators)."""
        return any(g.site is None or g.site == site for g in self.grants)


async def of_study(study: str, today: date) -> list[Person]:
    """Everyone granted in the study today, by printed name."""
    async with read():
        grants = [g for g in await users.grants_in_study(study) if g.in_force(today)]
        names = {u.user_id: u.printed_name for u in await users.list_users()}
    held: dict[str, list[Grant]] = {}
    for grant in grants:
        held.setdefault(grant.user_id, []).append(grant)
    people = [Person(user_id, names.get(user_id, user_id), tuple(mine)) for user_id, mine in held.items()]
    return sorted(people, key=lambda p: (p.printed_name.casefold(), p.user_id))
