"""`trialcoord site add|list|calendar|close|reopen`: a study's sites and the days they are closed."""

from __future__ import annotations

import sys
from datetime import date, timedelta

import msgspec

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import UsageError, iso_date


def register(commands) -> None:
    site = support.group(commands, "site", "a study's sites, their calendars and closures")
    add = site.add_parser("add", help="add a site to a study (audited; exit 3 if it exists)")
    add.add_argument("study")
    add.add_argument("code", metavar="CODE")
    add.add_argument("--name", default="")
    add.add_argument("--time-zone", default="UTC", help="IANA name, such as Europe/Berlin")
    add.add_argument("--calendar", help="business-us, weekdays or holidays:<country>[-<region>]")
    add.set_defaults(run=lambda a: site_add(a.study, a.code, a.name, a.time_zone, a.calendar))
    listing = site.add_parser("list", help="a study's sites")
    listing.add_argument("study")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(run=lambda a: site_list(a.study, a.format))
    calendar = site.add_parser("calendar", help="the calendar a site's business days follow")
    calendar.add_argument("study")
    calendar.add_argument("code", metavar="SITE")
    calendar.add_argument(
        "calendar",
        nargs="?",
        help="business-us, weekdays or holidays:<country>[-<region>] to"
        " set it; omitted: show it, with closed days ahead",
    )
    calendar.add_argument("--protocol", action="store_true", help="go back to the protocol's calendar")
    calendar.set_defaults(run=lambda a: site_calendar(a.study, a.code, a.calendar, a.protocol))
    close = site.add_parser("close", help="days a site is closed (business days skip them)")
    close.add_argument("study")
    close.add_argument("code", metavar="SITE")
    close.add_argument("first_day", type=iso_date, metavar="FROM")
    close.add_argument("last_day", type=iso_date, nargs="?", metavar="TO")
    close.add_argument("--reason", required=True)
    close.set_defaults(run=lambda a: site_close(a.study, a.code, a.first_day, a.last_day, a.reason))
    reopen = site.add_parser("reopen", help="withdraw a closure recorded by mistake (the one starting FROM)")
    reopen.add_argument("study")
    reopen.add_argument("code", metavar="SITE")
    reopen.add_argument("first_day", type=iso_date, metavar="FROM")
    reopen.add_argument("--reason", required=True)
    reopen.set_defaults(run=lambda a: site_reopen(a.study, a.code, a.first_day, a.reason))


def site_add(study: str, code: str, name: str, time_zone: str, calendar: str | None) -> int:
    from trialcoord.scheduling import sites

    row = support.database(lambda: sites.create_site(study, code, name, time_zone, calendar, actor=support.actor()))
    print(
        f"site {row.code} ({row.name}) added to {study}: time zone {row.time_zone}, business days follow"
        f" {row.calendar or 'the protocol calendar'}"
    )
    return 0


SITE_COLUMNS = ["code", "name", "time_zone", "calendar"]


def site_list(study: str, fmt: str) -> int:
    from trialcoord.kernel.render.tabular import text_table
    from trialcoord.scheduling import sites

    rows = [
        {name: getattr(row, name) for name in SITE_COLUMNS} for row in support.database(lambda: sites.list_sites(study))
    ]
    if fmt == "json":
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(rows), indent=1).decode() + "\n")
    else:
        sys.stdout.write(text_table(SITE_COLUMNS, rows) if rows else f"study {study} has no site yet\n")
    return 0


def site_calendar(study: str, site: str, calendar: str | None, protocol: bool) -> int:
    """Set the calendar (or go back to the protocol's with --protocol); without either, show it."""
    from trialcoord.scheduling import sites

    today = support.today()
    if calendar and protocol:
        raise UsageError("give a calendar or --protocol, not both")
    if calendar or protocol:
        row = support.database(
            lambda: sites.set_site_calendar(study, site, calendar or None, today=today, actor=support.actor())
        )
        print(f"site {site} of {study}: business days follow {row.calendar or 'the protocol calendar'}")
        return 0
    days = support.database(lambda: sites.site_calendar_days(study, site, today, today + timedelta(days=27)))
    own = "" if days.own else " (the protocol's)"
    print(f"site {site} of {study}: business days follow {days.calendar or 'every day'}{own}")
    for closure in days.closures:
        print(f"  closure {closure.first_day} to {closure.last_day}: {closure.reason}")
    print("  closed in the next four weeks: " + (", ".join(f"{d.date} ({d.reason})" for d in days.closed) or "none"))
    return 0


def site_reopen(study: str, site: str, first_day: date, reason: str) -> int:
    from trialcoord.scheduling import sites

    today = support.today()
    row = support.database(
        lambda: sites.withdraw_site_closure(study, site, first_day, reason, today=today, actor=support.actor())
    )
    print(f"site {site} of {study}: closure from {row.first_day} to {row.last_day} withdrawn")
    return 0


def site_close(study: str, site: str, first_day: date, last_day: date | None, reason: str) -> int:
    from trialcoord.scheduling import sites

    today = support.today()
    row = support.database(
        lambda: sites.add_site_closure(study, site, first_day, last_day, reason, today=today, actor=support.actor())
    )
    print(f"site {site} of {study}: closed from {row.first_day} to {row.last_day} ({row.reason})")
    return 0
