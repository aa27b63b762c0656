"""The deviation listing (issue 5 §3) as CSV (UTF-8 with BOM, for spreadsheets; formula-guarded) or XLSX:
SDTM DV-like rows of the deviations that stand, each download audited as an export."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from trialcoord.deviations.queue import listing
from trialcoord.deviations.records import Deviation
from trialcoord.deviations.rules import deviation_trends as figures
from trialcoord.kernel.exporter import ListExporter
from trialcoord.kernel.problems import NotFound
from trialcoord.kernel.render.tabular import text_table
from trialcoord.scheduling import lookups, protocols
from trialcoord.scheduling.rules.schedule import study_day
from trialcoord.scheduling.sites import list_sites

LISTING_COLUMNS = [
    "STUDYID",
    "DOMAIN",
    "USUBJID",
    "DVSEQ",
    "DVSPID",
    "DVTERM",
    "DVDECOD",
    "DVCAT",
    "EPOCH",
    "DVSTDTC",
    "DVSTDY",
    "SITEID",
    "VISIT",
    "RULE",
    "CLASSIFICATION",
    "STATE",
    "DAYS_OUTSIDE",
    "DETECTED_UTC",
    "CLOSED_UTC",
]


# The queue's columns as the command line lists it, the same in JSON and CSV.
QUEUE_COLUMNS = (
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
QUEUE_TABLE_COLUMNS = (
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


def listing_rows(study: str, rows: list[Deviation], day_one: dict[str, date] | None = None) -> list[dict[str, Any]]:
    """SDTM DV-like rows of the deviations that stand (resolved by data correction and not-a-deviation left
    out); DVSEQ numbers each participant's, DVSPID is the record's own ID. A site-level deviation has no
    USUBJID. DVSTDY counts from the participant's day one (`day_one`: subject -> date; no day 0); EPOCH is
    left empty, as no epoch is recorded. Each row maps the listing's columns (`LISTING_COLUMNS`) to its
    values: the exporter's rows, which its CSV and XLSX forms read by column name."""
    day_one = day_one or {}
    seq: dict[str, int] = {}
    out = []
    for row in filter(figures.stands, rows):
        subject = f"{study}-{row.participant}" if row.participant else None
        if subject:
            seq[subject] = seq.get(subject, 0) + 1
        first = day_one.get(row.participant) if row.participant else None
        occurred = _date(row.occurred_on)
        out.append(
            {
                "STUDYID": study,
                "DOMAIN": "DV",
                "USUBJID": subject,
                "DVSEQ": seq.get(subject) if subject else None,
                "DVSPID": row.id,
                "DVTERM": row.description,
                "DVDECOD": row.dvdecod,
                "DVCAT": row.dvcat,
                "EPOCH": None,
                "DVSTDTC": row.occurred_on,
                "DVSTDY": study_day(occurred, first) if first and occurred else None,
                "SITEID": row.site,
                "VISIT": row.visit,
                "RULE": row.rule or figures.MANUAL,
                "CLASSIFICATION": row.classification,
                "STATE": row.state,
                "DAYS_OUTSIDE": row.days_outside,
                "DETECTED_UTC": row.detected_at,
                "CLOSED_UTC": row.closed_at,
            }
        )
    return out


class DeviationListing(ListExporter):
    """The deviations that stand, as SDTM DV-like rows (`listing_rows`), of the whole study or some sites."""

    identifier = "deviation_listing"
    columns = LISTING_COLUMNS
    forms = ("csv", "xlsx")
    sheet = "Deviations"
    csv_bom = True

    def __init__(self, study: str, sites: Collection[str] | None) -> None:
        super().__init__(study, {"sites": sorted(sites) if sites is not None else "all"})
        self.study, self.sites = study, sites

    async def read(self, limit: int | None) -> list[dict[str, Any]]:
        rows, _ = await listing(self.study, sites=self.sites)
        return listing_rows(self.study, rows, await _day_one(self.study))

    def typed(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **row,
            "DVSTDTC": _date(row["DVSTDTC"]),
            "DETECTED_UTC": _instant(row["DETECTED_UTC"]),
            "CLOSED_UTC": _instant(row["CLOSED_UTC"]),
        }


class QueueListing(ListExporter):
    """The queue as it stands, filtered by state and site (the command line's `deviations list`): the same keys in
    JSON and CSV, so a spreadsheet and a program see one shape; the table shows what fits a terminal line best."""

    identifier = "deviation_listing"
    columns = QUEUE_COLUMNS
    forms = ("table", "json", "csv")

    def __init__(self, study: str, states: Collection[str] | None, site: str | None) -> None:
        super().__init__(f"{study}/{site}" if site else study, {"states": sorted(states or [])})
        self.study, self.states, self.site = study, states, site

    async def read(self, limit: int | None) -> list[dict[str, Any]]:
        # A site that is not the study's is a mistake to name, not an empty listing.
        if self.site is not None and self.site not in {s.code for s in await list_sites(self.study)}:
            raise NotFound(f"study {self.study} has no site {self.site}")
        rows, _ = await listing(self.study, states=self.states, sites=None if self.site is None else [self.site])
        return [{name: getattr(row, name) for name in QUEUE_COLUMNS} for row in rows]

    async def render(self, rows: Sequence[Mapping[str, Any]], form: str) -> bytes:
        if form != "table":
            return await super().render(rows, form)
        # A manual deviation has no rule: its source says where it came from; the free text goes last.
        return text_table(QUEUE_TABLE_COLUMNS, [{**r, "rule": r["rule"] or r["source"]} for r in rows]).encode()


async def listing_file(study: str, sites: Collection[str] | None, kind: str, actor: str) -> tuple[bytes, int]:
    """The listing as CSV (UTF-8 with BOM, for spreadsheets; formula-guarded) or XLSX; audited as an export."""
    export = await DeviationListing(study, sites).take_out(kind, actor)
    return export.data, export.rows


async def _day_one(study: str) -> dict[str, date]:
    """Each participant's day one: the date of their protocol's day-one event, when recorded."""
    study_id = (await protocols.require_study(study)).id
    firsts = {
        row["id"]: (await protocols.protocol_of(row["id"], row["sha256"])).day_one
        for row in await lookups.list_versions(study_id)
    }
    names = sorted(set(firsts.values()))
    rows = await lookups.event_dates(study_id, names)
    return {
        r["subject_id"]: date.fromisoformat(str(r["date"])[:10])
        for r in rows
        if firsts.get(r["protocol_version"]) == r["event"]
    }


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def _instant(text: str | None) -> datetime | None:
    """A stored UTC instant as a naive wall-clock datetime (XLSX has no zones; the column says UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None) if text else None
