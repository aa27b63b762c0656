"""The one exporter shape (kernel/exporter.py): every form renders the same rows, a selection past the limit or
an unknown form is refused and records nothing, and a listing taken out writes exactly one audit entry naming
who, what, in which form and how many rows, once the bytes exist."""

from __future__ import annotations

import csv
import io
import json

import openpyxl
import pytest

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_store import AuditFilter, TrailEntry
from trialcoord.kernel.exporter import ListExporter
from trialcoord.kernel.problems import InvalidInput

pytestmark = [pytest.mark.anyio, pytest.mark.db]
ROWS = [
    {"site": "101", "participant": "1001", "note": '=HYPERLINK("x")'},
    {"site": "102", "participant": "2001", "note": "Ünïcode, 日本語"},
]


class Sample(ListExporter):
    identifier = "sample_listing"
    columns = ("site", "participant", "note")
    limit = 2

    def __init__(self, rows: list[dict]) -> None:
        super().__init__("TST-1/101", {"states": ["detected"]})
        self.rows = rows
        self.asked: list[int | None] = []

    async def read(self, limit: int | None) -> list[dict]:
        self.asked.append(limit)
        return self.rows[:limit]


async def _exports() -> list[TrailEntry]:
    return await audit_log.browse(AuditFilter(record_type="sample_listing"), None, 10)


async def test_every_form_renders_the_rows_and_one_entry_records_the_export(db):
    listing = Sample(ROWS)
    as_csv = await listing.take_out("csv", "cora")
    assert as_csv.rows == 2 and listing.asked == [3]  # one past the limit: enough to tell a larger selection
    cells = list(csv.reader(io.StringIO(as_csv.data.decode("utf-8"))))
    assert cells[0] == ["site", "participant", "note"] and cells[1][2] == '\'=HYPERLINK("x")'  # guarded
    assert json.loads((await listing.take_out("json", "cora")).data) == ROWS
    table = (await listing.take_out("table", "cora")).data.decode()
    assert table.splitlines()[0].split() == ["site", "participant", "note"] and "日本語" in table
    sheet = openpyxl.load_workbook(io.BytesIO((await listing.take_out("xlsx", "cora")).data)).active
    assert [c.value for c in sheet[3]] == ["102", "2001", "Ünïcode, 日本語"]
    entries = await _exports()
    assert [e.new["format"] for e in entries] == ["xlsx", "table", "json", "csv"]  # newest first, one each
    assert entries[-1].actor == "cora" and entries[-1].action == "export"
    assert entries[-1].record_id == "TST-1/101"
    assert entries[-1].new == {"format": "csv", "rows": 2, "states": ["detected"]}


async def test_a_selection_past_the_limit_or_an_unknown_form_is_refused_and_records_nothing(db):
    with pytest.raises(InvalidInput, match="more than 2 rows") as refused:
        await Sample([*ROWS, ROWS[0]]).take_out("csv", "cora")
    assert refused.value.problems[0].field == "until"
    with pytest.raises(InvalidInput, match="'pdf' is not a listing format; choose csv, xlsx, json or table"):
        await Sample(ROWS).take_out("pdf", "cora")
    assert await _exports() == []


async def test_a_render_that_fails_records_no_export(db):
    class Broken(Sample):
        async def render(self, rows, form):
            raise OSError("disk full")

    with pytest.raises(OSError):
        await Broken(ROWS).take_out("csv", "cora")
    assert await _exports() == []
