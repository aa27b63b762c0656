"""Copies of the audit trail (Part 11 11.10(b)): an electronic copy as CSV and a human-readable PDF/A-3b that
carries it, of the whole trail or one study's records; each copy is itself audited as an export."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import anyio

from trialcoord.audit import report
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_store import AuditFilter, TrailEntry
from trialcoord.kernel.exporter import ListExporter
from trialcoord.kernel.problems import NotConfigured
from trialcoord.kernel.rules.audit_entries import utc_instant

CSV_LIMIT, PDF_LIMIT = 200_000, 5_000


class TrailCopy(ListExporter):
    """The entries `where` selects, oldest first; `filters` (with the `scope`) are printed on the PDF and recorded
    with the export."""

    identifier = "audit_trail"
    columns = report.COLUMNS
    forms = ("csv", "pdf")
    counted_as = "entries"

    def __init__(self, where: AuditFilter, form: str, title: str, filters: dict[str, str], generated_by: str) -> None:
        super().__init__(filters.get("scope", "all"), filters)
        self.where, self.title, self.filters, self.generated_by = where, title, filters, generated_by
        self.limit = CSV_LIMIT if form == "csv" else PDF_LIMIT

    def too_many(self) -> str:
        return (
            f"the selection holds more than {self.limit} entries; narrow it by date, record or user"
            f" (or export CSV, up to {CSV_LIMIT})"
        )

    async def read(self, limit: int | None) -> list[TrailEntry]:
        """The trail's entries as the kernel's audit store reads them (the CSV's and the PDF's input)."""
        if limit is None:  # take_out passes the copy's own limit, which a copy always has
            raise ValueError("a copy of the audit trail is read within its row limit")
        return await audit_log.export_rows(self.where, limit)

    async def render(self, rows: Sequence[TrailEntry], form: str) -> bytes:
        if form == "csv":
            return report.audit_csv(rows)
        size, root = await audit_log.latest_root()
        render = partial(
            report.audit_pdf,
            rows,
            title=self.title,
            filters=self.filters,
            generated_at=utc_instant(audit_log.clock()),
            generated_by=self.generated_by,
            trail_size=size,
            root=root,
        )
        try:
            return await anyio.to_thread.run_sync(render)  # seconds of layout: never on the event loop
        except OSError as error:  # WeasyPrint could not load Pango
            raise NotConfigured(f"PDF copies need the Pango library (Debian: libpango-1.0-0): {error}") from None
