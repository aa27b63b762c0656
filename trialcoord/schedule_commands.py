"""`trialcoord protocol apply|impact`, `trialcoord schedules refresh` and `trialcoord site add|list|calendar|close|
reopen`."""

from __future__ import annotations

import sys
from datetime import date, timedelta

import msgspec

from trialcoord import command_support as support
from trialcoord.command_support import UsageError


def protocol_apply(study: str, version: str, effective: date, reason: str, site: str | None) -> int:
    from trialcoord.services import amendments, scheduling

    today = support.today()
    moved = support.database(
        lambda: amendments.apply_version(
            study, version, effective, reason, site=site, today=today, actor=support.actor()
        )
    )
    where = f"site {site} of {study}" if site else study
    print(
        f"{where}: {len(moved.moved)} participants moved to protocol version {version} from {effective}"
        f" ({len(moved.skipped)} left as they are)"
    )
    if moved.deviations:
        print(
            f"  deviation detection run again for them: {moved.deviations['created']} created,"
            f" {moved.deviations['resolved']} resolved by the change, {moved.deviations['updated']} updated"
        )
    for subject, why in sorted(moved.skipped.items()):
        print(f"  {subject}: {why}")
    # nobody could be moved, and not merely because everyone already follows it or has ended (a re-run): a
    # conflict a script must notice
    harmless = (scheduling.ALREADY_ON, scheduling.SCHEDULE_ENDED)
    refused = not moved.moved and any(not why.startswith(harmless) for why in moved.skipped.values())
    return 3 if refused else 0


def protocol_impact(study: str, file: str, effective: date | None, site: str | None, fmt: str, out: str | None) -> int:
    from trialcoord.adapters.protocol_files import parse_protocol
    from trialcoord.services import amendments

    if fmt == "pdf" and not out:
        raise UsageError("--format pdf writes a file: give --out FILE.pdf")
    text = support.read_text(file)
    protocol = parse_protocol(text, file=file)
    today = support.today()

    async def run():
        result = await amendments.impact(study, protocol, text, effective, site=site, today=today)
        await amendments.record_impact_read(result, fmt, support.actor())  # a listing taken out: audited as an export
        return result

    result = support.database(run)
    if fmt == "pdf":
        support.write_file(out, amendments.impact_pdf(result, created_at=f"{today.isoformat()}T00:00:00Z"))
        print(f"{out}: one-page summary of protocol version {protocol.version}'s impact")
        return 0
    if fmt == "json":
        text = msgspec.json.format(msgspec.json.encode(amendments.impact_dict(result)), indent=1).decode() + "\n"
    elif fmt == "csv":
        from trialcoord.adapters.tabular import csv_text

        text = csv_text(amendments.IMPACT_COLUMNS, amendments.impact_rows(result, left=True))
    else:
        text = _impact_table(result)
    if out:
        support.write_file(out, text)
    else:
        sys.stdout.write(text)
    return 0


def _impact_table(result) -> str:
    from trialcoord.adapters.tabular import text_table
    from trialcoord.services import amendments

    totals = amendments.impact_summary(result)["totals"]
    head = (
        f"{result.study} protocol version {result.version} from {result.effective} (as of {result.as_of}):"
        f" {totals['affected']} of {totals['participants']} active participants affected"
        + (f" ({len(result.skipped)} left out, listed below)" if result.skipped else "")
        + "; visits"
        f" {totals['visits_moving']} move, {totals['visits_appearing']} appear,"
        f" {totals['visits_disappearing']} disappear; deviations {totals['deviations_resolved']} resolved,"
        f" {totals['deviations_created']} created; re-consent required {totals['reconsent_required']}"
        + (
            f", unknown {totals['reconsent_unknown']} (no consent version for {result.version})"
            if totals["reconsent_unknown"]
            else ""
        )
        + "\n"
    )
    rows = amendments.impact_rows(result, left=True)
    table = text_table(amendments.IMPACT_COLUMNS, rows) if rows else "nothing changes and no participant is left out\n"
    differences = "".join(
        f"what {result.version} changes against {label}:\n"
        + "".join(f"  {line}\n" for line in lines or ["no visit definition changes"])
        for label, lines in sorted(result.differences.items())
    )
    return head + table + differences


def schedules_refresh(study: str | None, as_of: date | None) -> int:
    from trialcoord.services import deviations

    today = support.today()
    refreshed = support.database(lambda: deviations.refresh_schedules(study, as_of, today=today))
    for code, count in refreshed.items():
        print(
            f"{code}: {count} participant{'' if count == 1 else 's'} re-evaluated as of {as_of or today},"
            " deviation detection run for them"
        )
    return 0


def site_add(study: str, code: str, name: str, time_zone: str, calendar: str | None) -> int:
    from trialcoord.services import scheduling

    row = support.database(
        lambda: scheduling.create_site(study, code, name, time_zone, calendar, actor=support.actor())
    )
    print(
        f"site {row['code']} ({row['name']}) added to {study}: time zone {row['time_zone']}, business days follow"
        f" {row['calendar'] or 'the protocol calendar'}"
    )
    return 0


SITE_COLUMNS = ["code", "name", "time_zone", "calendar"]


def site_list(study: str, fmt: str) -> int:
    from trialcoord.adapters.tabular import text_table
    from trialcoord.services import scheduling

    rows = [
        {name: row[name] for name in SITE_COLUMNS} for row in support.database(lambda: scheduling.list_sites(study))
    ]
    if fmt == "json":
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(rows), indent=1).decode() + "\n")
    else:
        sys.stdout.write(text_table(SITE_COLUMNS, rows) if rows else f"study {study} has no site yet\n")
    return 0


def site_calendar(study: str, site: str, calendar: str | None, protocol: bool) -> int:
    """Set the calendar (or go back to the protocol's with --protocol); without either, show it."""
    from trialcoord.services import scheduling

    today = support.today()
    if calendar and protocol:
        raise UsageError("give a calendar or --protocol, not both")
    if calendar or protocol:
        row = support.database(
            lambda: scheduling.set_site_calendar(study, site, calendar or None, today=today, actor=support.actor())
        )
        print(f"site {site} of {study}: business days follow {row['calendar'] or 'the protocol calendar'}")
        return 0
    days = support.database(lambda: scheduling.site_calendar_days(study, site, today, today + timedelta(days=27)))
    own = "" if days["own"] else " (the protocol's)"
    print(f"site {site} of {study}: business days follow {days['calendar'] or 'every day'}{own}")
    for closure in days["closures"]:
        print(f"  closure {closure['first_day']} to {closure['last_day']}: {closure['reason']}")
    print(
        "  closed in the next four weeks: "
        + (", ".join(f"{d['date']} ({d['reason']})" for d in days["closed"]) or "none")
    )
    return 0


def site_reopen(study: str, site: str, first_day: date, reason: str) -> int:
    from trialcoord.services import scheduling

    today = support.today()
    row = support.database(
        lambda: scheduling.withdraw_site_closure(study, site, first_day, reason, today=today, actor=support.actor())
    )
    print(f"site {site} of {study}: closure from {row['first_day']} to {row['last_day']} withdrawn")
    return 0


def site_close(study: str, site: str, first_day: date, last_day: date | None, reason: str) -> int:
    from trialcoord.services import scheduling

    today = support.today()
    row = support.database(
        lambda: scheduling.add_site_closure(
            study, site, first_day, last_day, reason, today=today, actor=support.actor()
        )
    )
    print(f"site {site} of {study}: closed from {row['first_day']} to {row['last_day']} ({row['reason']})")
    return 0
