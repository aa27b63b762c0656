"""An SDTM dataset as SAS transport version 5 (written by pyreadstat, never by hand) and as CSV with the same
columns. The XPT's four header timestamps are set to the package's instant, so a rebuilt package is
byte-identical (pyreadstat writes the current time there; XPT carries no checksum over them)."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from trialcoord.exports.rules.sdtm import Dataset, Kind
from trialcoord.kernel.render.tabular import csv_text

# Offsets of the library's and the member's created and modified times in a one-dataset v5 file (80-byte records).
_STAMPS = (144, 160, 464, 480)
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
            v.name: pandas.Series([row[i] for row in data.rows], dtype="float64" if v.kind is Kind.NUMBER else "object")
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
        return _stamped(path.read_bytes(), at)
    finally:
        path.unlink(missing_ok=True)


def csv_bytes(data: Dataset) -> bytes:
    """The same columns and rows as CSV (UTF-8, which here is ASCII): numbers as written, a whole number without
    its '.0', null as empty; text that a spreadsheet would evaluate is prefixed with ' as in every CSV of trialcoord."""
    rows = [[_plain(value) for value in row] for row in data.rows]
    return csv_text(list(data.names), rows).encode("utf-8")


def _plain(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _stamped(content: bytes, at: datetime) -> bytes:
    head = bytearray(content[:560])
    if head[:48] != _LIBRARY or head[240:288] != _MEMBER:
        raise ValueError("pyreadstat wrote an XPT whose headers are not where version 5 puts them")
    stamp = f"{at.day:02d}{_MONTHS[at.month - 1]}{at.year % 100:02d}:{at:%H:%M:%S}".encode("ascii")
    for offset in _STAMPS:
        if not _STAMP.fullmatch(bytes(head[offset : offset + 16])):
            raise ValueError(f"no timestamp at byte {offset} of the XPT header")
        head[offset : offset + 16] = stamp
    return bytes(head) + content[560:]
