"""`trialcoord visits`: a stored study's visit statuses."""

from __future__ import annotations

from datetime import date

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import FORMATS, UsageError, iso_date
from trialcoord.scheduling.cli.schedules import print_rows


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
    from trialcoord.scheduling import worklists

    statuses = _statuses(status)
    as_of = as_of or support.today()

    async def run():
        from trialcoord.kernel import audit_log

        async with open_database(migrate=True):
            rows = await worklists.study_visits(study, as_of, site=site, statuses=statuses)
            # A listing taken out of the system is an export: audited, as the app's downloads are.
            await audit_log.record_alone(
                support.actor(),
                audit_log.Change(
                    "export",
                    "schedule",
                    f"{study}/{site}" if site else study,
                    None,
                    {"format": fmt, "as_of": as_of.isoformat(), "statuses": sorted(statuses or []), "rows": len(rows)},
                ),
            )
            return rows

    print_rows(support.run(run()), fmt, with_participant=True)
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
