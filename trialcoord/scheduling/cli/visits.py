"""`trialcoord visits`: a stored study's visit statuses."""

from __future__ import annotations

import sys
from datetime import date

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import FORMATS, UsageError, iso_date


def register(commands) -> None:
    stored = commands.add_parser("visits", help="a stored study's visit statuses")
    stored.add_argument("study")
    stored.add_argument("--site")
    stored.add_argument("--status", help="comma-separated statuses, such as missed,late")
    stored.add_argument("--as-of", type=iso_date)
    stored.add_argument("--format", choices=FORMATS, default="table")
    stored.set_defaults(run=lambda a: visits(a.study, a.site, a.status, a.as_of, a.format))


def visits(study: str, site: str | None, status: str | None, as_of: date | None, fmt: str) -> int:
    from trialcoord.kernel.database.opening import open_database
    from trialcoord.scheduling.worklists import VisitsListing

    listing = VisitsListing(study, as_of or support.today(), site, _statuses(status))

    async def run():
        async with open_database(migrate=True):
            # A listing taken out of the system is an export: audited, as the app's downloads are.
            return await listing.take_out(fmt, support.actor())

    sys.stdout.write(support.run(run()).data.decode())
    return 0


def _statuses(text: str | None) -> set[str] | None:
    from trialcoord.scheduling.rules.schedule import STATUSES

    if not text:
        return None
    wanted = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(wanted - set(STATUSES))
    if unknown:
        raise UsageError(f"--status: unknown status {', '.join(unknown)}; statuses are: {', '.join(STATUSES)}")
    return wanted
