"""Listings (deviations, visits, documents) as CSV text or an XLSX workbook, safe to open in a spreadsheet.

A text cell is never run as a formula. In CSV, text that a spreadsheet would evaluate (OWASP "CSV
injection": it starts with = + - @, a tab or a carriage return, also after leading spaces) gets a
leading single quote; numbers stay numbers, so -2 is still -2 but the text "-2+3" becomes '-2+3. In
XLSX every text cell is written as a string, which no spreadsheet evaluates, so text keeps its exact
value there (up to Excel's 32,767 characters a cell). Dates are ISO 8601 in CSV and real dates
(yyyy-mm-dd) in XLSX, datetimes there at their wall-clock time (convert to the zone to show first); None
is an empty cell.
Rows are mappings keyed by column name, or sequences in column order.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import SupportsFloat, SupportsIndex

import xlsxwriter

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FIXED_CREATED = datetime(2000, 1, 1)  # the workbook's "created" property: a fixed one keeps the bytes reproducible
_SHEET_FORBIDDEN = str.maketrans({c: "-" for c in "[]:*?/\\"})


def csv_text(columns: list[str], rows: Iterable[Mapping | Sequence]) -> str:
    """The header and rows as CSV (RFC 4180 line ends, so a carriage return inside a cell gets quoted too);
    for Excel, encode it as utf-8-sig so accented names survive."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([inert(name) for name in columns])
    for number, row in enumerate(rows, start=1):
        writer.writerow([_csv_cell(value) for value in _values(columns, row, number)])
    return out.getvalue()


def text_table(columns: Sequence[str], rows: Iterable[Mapping]) -> str:
    """Aligned columns for a terminal, one line a row: white space inside a cell (a line break in a description)
    is folded so that it cannot break the columns; None is blank."""
    cells = [["" if row.get(name) is None else " ".join(str(row[name]).split()) for name in columns] for row in rows]
    widths = [max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(columns)]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() + "\n" for line in [list(columns), *cells]
    )


def xlsx_bytes(
    sheet: str, columns: list[str], rows: Iterable[Mapping | Sequence], *, created: datetime = FIXED_CREATED
) -> bytes:
    """One worksheet: a bold, frozen header with an autofilter, then the rows; the same input gives the same bytes."""
    if not columns:
        raise ValueError("a listing needs at least one column")
    out = io.BytesIO()
    # Every cell is written with an explicit type; these options only make sure nothing else is inferred.
    workbook = xlsxwriter.Workbook(
        out,
        {
            "in_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "remove_timezone": True,
        },
    )
    workbook.set_properties({"created": created})
    header = workbook.add_format({"bold": True, "bottom": 1})
    day = workbook.add_format({"num_format": "yyyy-mm-dd"})
    moment = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    worksheet = workbook.add_worksheet(_sheet_name(sheet))
    widths = [len(name) for name in columns]
    for col, name in enumerate(columns):
        worksheet.write_string(0, col, name, header)
    line = 0
    for line, row in enumerate(rows, start=1):
        for col, value in enumerate(_values(columns, row, line)):
            widths[col] = max(widths[col], _write(worksheet, line, col, value, day, moment))
    for col, width in enumerate(widths):
        worksheet.set_column(col, col, min(width, 60) + 2)
    worksheet.freeze_panes(1, 0)
    worksheet.autofilter(0, 0, line, len(columns) - 1)
    workbook.close()
    return out.getvalue()


def _values(columns: list[str], row: Mapping | Sequence, number: int) -> list:
    if isinstance(row, Mapping):
        return [row.get(name) for name in columns]
    if isinstance(row, str | bytes) or len(row) != len(columns):
        raise ValueError(
            f"row {number} has {1 if isinstance(row, str | bytes) else len(row)} values for {len(columns)} columns"
        )
    return list(row)


def inert(text: str) -> str:
    """The text as a spreadsheet will not evaluate it (OWASP CSV injection), also after leading whitespace."""
    return "'" + text if text.startswith(_FORMULA_STARTS) or text.lstrip().startswith(_FORMULA_STARTS) else text


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    return value if _number(value) is not None else inert(str(value))


def _number(value: object) -> float | None:
    """The value as a float when it is a finite number: int, float, Decimal, Fraction (not bool, not text, not NaN
    or infinity); None otherwise."""
    if isinstance(value, str | bool) or not isinstance(value, int | float | SupportsFloat | SupportsIndex):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _write(worksheet, row: int, col: int, value: object, day, moment) -> int:
    """Writes one cell with its type stated; returns the width it needs."""
    if value is None:
        return 0
    if isinstance(value, bool):
        worksheet.write_boolean(row, col, value)
        return 5
    if isinstance(value, datetime):
        worksheet.write_datetime(row, col, value, moment)
        return 19
    if isinstance(value, date):
        worksheet.write_datetime(row, col, value, day)
        return 10
    if (number := _number(value)) is not None:
        worksheet.write_number(row, col, number)
        return len(str(value))
    text = str(value)
    worksheet.write_string(row, col, text)
    return max((len(line) for line in text.splitlines()), default=0)


def _sheet_name(name: str) -> str:
    """Excel's rules: at most 31 UTF-16 units, none of []:*?/\\, not empty, no apostrophe at either end."""
    name = "".join(c for c in name.translate(_SHEET_FORBIDDEN) if c.isprintable())
    while len(name.encode("utf-16-le")) > 62:
        name = name[:-1]
    return name.strip("'") or "Sheet1"
