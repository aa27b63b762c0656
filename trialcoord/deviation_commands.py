"""`trialcoord deviations ...`: detection runs and the deviation listing from the command line."""

from __future__ import annotations

import sys
from datetime import date

import msgspec

from trialcoord import command_support as support
from trialcoord.command_support import UsageError

# The listing's columns, the same in JSON and CSV (a spreadsheet and a program see one shape).
COLUMNS = (
    "id",
    "participant",
    "site",
    "visit",
    "occurrence",
    "rule",
    "source",
    "category",
    "subcategory",
    "classification",
    "state",
    "days_outside",
    "occurred_on",
    "detected_at",
    "description",
)
# What fits a terminal line best: the free text last, where wrapping harms least.
TABLE_COLUMNS = (
    "id",
    "site",
    "participant",
    "visit",
    "occurrence",
    "rule",
    "classification",
    "state",
    "days_outside",
    "occurred_on",
    "description",
)


def detect(study: str, as_of: date | None, full: bool) -> int:
    from trialcoord.services import deviations

    today = support.today()  # in TRIALCOORD_TIME_ZONE, for the default date and the check against days to come
    result = support.database(
        lambda: deviations.detect(study, as_of or today, actor=support.actor(), full=full, today=today)
    )
    print(
        f"{result['study']} as of {result['as_of']} ({result['scope']}): {result['created']} created, "
        f"{result['updated']} updated, {result['resolved']} resolved, {result['reopened']} reopened"
    )
    return 0


def listing(study: str, states: str | None, site: str | None, fmt: str) -> int:
    from trialcoord.domain.problems import NotFound
    from trialcoord.services import audit_log, deviations, scheduling

    wanted = _states(states)

    async def run():
        # A site that is not the study's is a mistake to name, not an empty listing.
        if site is not None and site not in {s["code"] for s in await scheduling.list_sites(study)}:
            raise NotFound(f"study {study} has no site {site}")
        rows, _ = await deviations.listing(study, states=wanted, sites=None if site is None else [site])
        # A listing taken out of the system is an export: audited, as `visits` and the app's downloads are.
        await audit_log.record_alone(
            support.actor(),
            audit_log.Change(
                "export",
                "deviation_listing",
                f"{study}/{site}" if site else study,
                None,
                {"format": fmt, "states": sorted(wanted or []), "rows": len(rows)},
            ),
        )
        return rows

    rows = support.database(run)
    records = [{name: row[name] for name in COLUMNS} for row in rows]
    if fmt == "json":
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(records), indent=1).decode() + "\n")
    elif fmt == "csv":
        from trialcoord.adapters.tabular import csv_text

        sys.stdout.write(csv_text(list(COLUMNS), records))
    else:
        sys.stdout.write(_table(records))
    return 0


def _states(text: str | None) -> list[str] | None:
    from trialcoord.services.deviations import STATES

    if not text:
        return None
    wanted = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in wanted if s not in STATES]
    if unknown:
        raise UsageError(f"--state: unknown state {', '.join(unknown)}; states are: {', '.join(STATES)}")
    return wanted


def _table(records: list[dict]) -> str:
    from trialcoord.adapters.tabular import text_table

    # A manual deviation has no rule: its source says where it came from.
    return text_table(TABLE_COLUMNS, [{**r, "rule": r["rule"] or r["source"]} for r in records])
