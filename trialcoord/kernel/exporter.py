"""One shape for every listing taken out of the system, after pretix's `ListExporter`: an exporter names what it
exports (the record type of its audit entry), its columns and a way to read its rows; `take_out` refuses a
selection past the row limit, renders the form asked for and writes the one audit entry an export makes, after
the bytes exist. The deviation listing, the audit trail's copies and the command line's listings are exporters;
sponsor exports are the next.

Forms: CSV (formula-guarded; `csv_bom` for spreadsheets), XLSX (typed cells), JSON (the same keys as the CSV's
columns) and an aligned text table; an exporter overrides `render` for a form of its own (the trail's PDF/A).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from anyio import to_thread

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.problems import InvalidInput, invalid
from trialcoord.kernel.render import tabular

Row = Mapping[str, Any]  # what the default forms read; an exporter with a `render` of its own reads any rows


@dataclass(frozen=True)
class Export:
    data: bytes
    rows: int


class ListExporter:
    """Subclasses set the class attributes and `read`; `scope` is the record the audit entry names (a study,
    `study/site`, `all`), `parameters` what the export was asked with (recorded with it)."""

    identifier: ClassVar[str]  # the audit entry's record type: deviation_listing, audit_trail, schedule
    columns: Sequence[str]  # or the instance's, where they depend on what is listed (the visit grid's visits)
    forms: ClassVar[Sequence[str]] = ("csv", "xlsx", "json", "table")
    limit: int | None = None  # rows (an exporter may set its own per form); a larger selection is refused
    counted_as: ClassVar[str] = "rows"  # the audit entry's name for the number of rows
    sheet: ClassVar[str] = "Listing"  # the XLSX worksheet's name
    csv_bom: ClassVar[bool] = False  # a byte order mark, so spreadsheets read accented text as UTF-8
    narrowed_by: ClassVar[str] = "until"  # the field a refusal past the limit names

    def __init__(self, scope: str, parameters: Mapping[str, Any] | None = None) -> None:
        self.scope = scope
        self.parameters = dict(parameters or {})

    async def read(self, limit: int | None) -> Sequence[Any]:
        """The rows, at most `limit` when given (one more than the exporter's limit: enough to tell it is past)."""
        raise NotImplementedError

    def too_many(self) -> str:
        return f"the selection holds more than {self.limit} rows; narrow it"

    async def take_out(self, form: str, actor: str) -> Export:
        if form not in self.forms:
            raise self.not_a_form(form)
        rows = await self.read(None if self.limit is None else self.limit + 1)
        if self.limit is not None and len(rows) > self.limit:
            raise invalid(self.too_many(), field=self.narrowed_by)
        data = await self.render(rows, form)
        values = {"format": form, self.counted_as: len(rows), **self.parameters}
        await audit_log.record_alone(actor, Change("export", self.identifier, self.scope, None, values))
        return Export(data, len(rows))

    async def render(self, rows: Sequence[Any], form: str) -> bytes:
        if form == "csv":  # in a worker thread, as XLSX: a large listing would hold up every other request
            text = await to_thread.run_sync(tabular.csv_text, list(self.columns), rows)
            return text.encode("utf-8-sig" if self.csv_bom else "utf-8")
        if form == "xlsx":
            typed = [self.typed(row) for row in rows]
            return await to_thread.run_sync(tabular.xlsx_bytes, self.sheet, list(self.columns), typed)
        if form == "json":
            records = [{name: row.get(name) for name in self.columns} for row in rows]
            return msgspec.json.format(msgspec.json.encode(records), indent=1) + b"\n"
        if form == "table":
            return tabular.text_table(self.columns, rows).encode("utf-8")
        raise self.not_a_form(form)

    def not_a_form(self, form: str) -> InvalidInput:
        return invalid(f"'{form}' is not a listing format; choose {_either(self.forms)}", field="format")

    def typed(self, row: Row) -> Row:
        """The row as XLSX cells: dates and instants as such (text in CSV and JSON)."""
        return row


def _either(forms: Sequence[str]) -> str:
    return ", ".join(forms[:-1]) + " or " + forms[-1] if len(forms) > 1 else forms[0]
