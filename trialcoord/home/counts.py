"""The navigation's "My tasks (N)": what waits on the signed-in user, counted with one statement per source
across all their studies and sites (never a list built to be counted), once per page (`pages.count_tasks`).

Counted: a coordinator's visits booked today, windows closing within CLOSING_DAYS without a booking and overdue
visits; deviations awaiting the site's response (coordinators and investigators); the signature requests awaiting
the user (whatever their role); an investigator's window-extension requests; deviations awaiting a monitor's
review; an administrator's locked accounts and sign-in problems since their previous sign-in. The home page's
lists of those sources show the same totals.
What takes the rules over every record to find (re-consent, the binder's checklist) and what is news rather than
work (the trail since, sponsor packages, metrics) is on the home page only.
"""

from __future__ import annotations

from datetime import date, datetime

from trialcoord.accounts.rules.accounts import LockoutPolicy
from trialcoord.home import store
from trialcoord.home.administration import locked_accounts
from trialcoord.home.last_visit import previous_sign_in
from trialcoord.home.rules.tasks import AWAITING_REVIEW, AWAITING_SITE, CLOSING_DAYS, administers, joined, scopes
from trialcoord.home.sources import Sources
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.rules.access import Role, Viewer


async def my_tasks(viewer: Viewer, today: date, now: datetime, sources: Sources, policy: LockoutPolicy) -> int:
    grants = viewer.grants
    coordinator = scopes(grants, Role.COORDINATOR, today)
    investigator = scopes(grants, Role.INVESTIGATOR, today)
    monitor = scopes(grants, Role.MONITOR, today)
    async with read():
        total = sum(await store.visit_counts(coordinator, today, CLOSING_DAYS))
        total += await store.deviation_count(joined(coordinator, investigator), AWAITING_SITE)
        total += await store.deviation_count(monitor, AWAITING_REVIEW)
    total += len(await sources.signature_requests(viewer.user_id, today))  # whoever was asked, in any role
    for scope in investigator:
        sites = set(scope.sites) if scope.sites is not None else None
        total += len(await sources.extension_requests(scope.study, sites))
    if administers(grants, today):
        total += (await locked_accounts(now, policy)).total
        since = await previous_sign_in(viewer.user_id, viewer.session_id)
        async with read():
            total += await store.sign_in_problems_since(since or "")
    return total
