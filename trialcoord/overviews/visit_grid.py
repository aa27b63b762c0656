"""The participant x visit grid (the habit of REDCap's record status dashboard): which of its columns a viewer
sees, what a cell says as text, and the grid as a listing taken out of the system (CSV, XLSX), audited as every
listing is (`kernel/exporter.py`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date
from typing import Any

from trialcoord.kernel.exporter import ListExporter
from trialcoord.kernel.rules.access import SiteScope
from trialcoord.scheduling import worklists
from trialcoord.scheduling.worklists import GridColumn, GridRow

READ_AT_ONCE = 1_000  # participants a page of the export reads (keyset pages, as on screen)


def shown_columns(columns: list[GridColumn], allocation: SiteScope, sites: Collection[str] | None) -> list[GridColumn]:
    """Every column, but a visit only some arms have (its statuses tell who is in which arm) only to a viewer who
    may see the allocation at every site the grid shows (`sites`; None: all of them)."""
    if allocation.all_sites or (sites is not None and set(sites) <= allocation.sites):
        return columns
    return [column for column in columns if not column.arm_limited]


def cell_text(cell: Sequence[tuple[str, int]]) -> str:
    """`on_time` for a visit done once; a repeat's occurrences as `missed 1; on_time 2`, the most pressing first."""
    if len(cell) == 1 and cell[0][1] == 1:
        return cell[0][0]
    return "; ".join(f"{status} {count}" for status, count in cell)


class VisitGridListing(ListExporter):
    """The grid of the participants a viewer sees, as the page shows it (its filters, its columns), every page."""

    identifier = "visit_grid"
    forms = ("csv", "xlsx")
    sheet = "Visit grid"
    counted_as = "participants"
    limit = 50_000
    narrowed_by = "site"

    def __init__(
        self,
        study: str,
        as_of: date,
        site: str | None,
        within: Collection[str] | None,
        text: str | None,
        columns: list[GridColumn],
    ) -> None:
        super().__init__(f"{study}/{site}" if site else study, {"as_of": as_of.isoformat(), "subject_id": text})
        self.study, self.as_of, self.site, self.within, self.text = study, as_of, site, within, text
        self.shown = columns
        self.columns = ("participant", "site", *(column.definition for column in columns))  # the study's visits

    def too_many(self) -> str:
        return f"the grid holds more than {self.limit} participants; choose a site"

    async def read(self, limit: int | None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        after: Sequence[Any] | None = None
        while limit is None or len(rows) < limit:
            page = await worklists.visit_grid(
                self.study, self.as_of, self.site, self.within, self.text, after=after, limit=READ_AT_ONCE
            )
            rows += [self._cells(row) for _, row in page]
            if len(page) < READ_AT_ONCE:
                break
            after = page[-1][0]
        return rows if limit is None else rows[:limit]

    def _cells(self, row: GridRow) -> dict[str, Any]:
        cells = {column.definition: cell_text(row.cells.get(column.definition, ())) for column in self.shown}
        return {"participant": row.subject_id, "site": row.site, **cells}
