"""An SDTM dataset as SAS transport version 5 (written by pyreadstat, never by hand) and as CSV with the same
columns. The XPT's four header timestamps are set to the package's instant, so a rebuilt package is
byte-identical (pyreadstat writes the current time there; XPT carries no checksum over them)."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import tempfile
from collections.abc import Iterable
from datetime import datetime
from operator import itemgetter
from pathlib import Path

from trialcoord.exports.rules.sdtm import Dataset, Kind, Value
from trialcoord.kernel.render.tabular import csv_text, inert

# Offsets of the library's and the member's created and modified times in a one-dataset v5 file (80-byte records).
_STAMPS = (144, 160, 464, 480)
_HEAD = 560  # the first seven 80-byte records, which hold them
_STAMP = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_LIBRARY, _MEMBER = (
    b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!",
    b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!",
)


def xpt_bytes(data: Dataset, at: datetime) -> bytes:
    """The dataset as an XPT v5 file whose timestamps read `at` (SAS: ddMMMyy:hh:mm:ss, no time zone)."""
    import pandas
    import pyreadstat

    frame = pandas.DataFrame(
        {
            v.name: pandas.Series(
                list(map(itemgetter(i), data.rows)), dtype="float64" if v.kind is Kind.NUMBER else "object"
            )
            for i, v in enumerate(data.variables)
        },
        columns=list(data.names),
    )
    handle, name = tempfile.mkstemp(suffix=".xpt")
    os.close(handle)
    path = Path(name)
    try:
        pyreadstat.write_xport(
            frame,
            str(path),
            file_label=data.label,
            table_name=data.name,
            column_labels=[v.label for v in data.variables],
            file_format_version=5,
        )
        del frame
        with path.open("r+b") as file:  # stamped in place: the file is read once, never copied after
            head = _stamped(file.read(_HEAD), at)
            file.seek(0)
            file.write(head)
            file.seek(0)
            return file.read()
    finally:
        path.unlink(missing_ok=True)


def csv_bytes(data: Dataset) -> bytes:
    """The same columns and rows as CSV (UTF-8, which here is ASCII): numbers as written, a whole number without
    its '.0', null as empty; text that a spreadsheet would evaluate is prefixed with ' as in every CSV of trialcoord
    (`tabular.csv_text`'s cells exactly). Written column by column: each distinct value's cell is made once, and
    the csv module joins the rows."""
    profile = data.profile()
    if not data.variables or not profile.typed or not all(_finite(profile.values[v.name]) for v in data.variables):
        rows = [[_plain(value) for value in row] for row in data.rows]  # what the columns below cannot tell apart
        return csv_text(list(data.names), rows).encode("utf-8")
    out = io.BytesIO()
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")  # encoded as written: no whole str, then bytes
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([inert(name) for name in data.names])
    writer.writerows(zip(*(_cells(data, index, profile.values[v.name]) for index, v in enumerate(data.variables))))
    text.flush()
    return out.getvalue()


def _finite(values: frozenset[Value]) -> bool:
    return all(math.isfinite(value) for value in values if isinstance(value, float))


def _cells(data: Dataset, index: int, values: frozenset[Value]) -> Iterable[Value]:
    """Column `index` as csv.writer is to write it: a whole float as an int, text a spreadsheet would evaluate
    with its ', null as None (written empty); the values themselves when none changes."""
    column = map(itemgetter(index), data.rows)
    cells = {value: _cell(value) for value in values}
    if all(cell is value for value, cell in cells.items()):
        return column
    return list(map(cells.__getitem__, column))


def _cell(value: Value) -> Value:
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _plain(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _stamped(head: bytes, at: datetime) -> bytes:
    """The file's first `_HEAD` bytes with the four timestamps set to `at`."""
    stamped = bytearray(head)
    if stamped[:48] != _LIBRARY or stamped[240:288] != _MEMBER:
        raise ValueError("pyreadstat wrote an XPT whose headers are not where version 5 puts them")
    stamp = f"{at.day:02d}{_MONTHS[at.month - 1]}{at.year % 100:02d}:{at:%H:%M:%S}".encode("ascii")
    for offset in _STAMPS:
        if not _STAMP.fullmatch(bytes(stamped[offset : offset + 16])):
            raise ValueError(f"no timestamp at byte {offset} of the XPT header")
        stamped[offset : offset + 16] = stamp
    return bytes(stamped)
