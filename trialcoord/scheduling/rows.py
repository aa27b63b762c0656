"""Visit occurrences as JSON, CSV or a text table: the output of `schedule`, `check` and `visits`.

Rows are (participant or None, VisitOccurrence) pairs, written straight to a text stream: `check`
renders a million rows, so no intermediate strings or dicts are built where the writer can do without.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

import msgspec

from trialcoord.kernel.render.tabular import inert
from trialcoord.scheduling.rules.schedule import VisitOccurrence

Pair = tuple["str | None", VisitOccurrence]

COLUMNS = (
    "visit",
    "occurrence",
    "name",
    "target",
    "earliest",
    "latest",
    "actual",
    "status",
    "days_outside",
    "study_day",
)
TABLE_COLUMNS = ("visit", "name", "target", "earliest", "latest", "actual", "status", "days_outside", "study_day")


def _values(row: VisitOccurrence) -> tuple:
    """The COLUMNS of one row; dates stay dates (each writer renders them as ISO 8601)."""
    return (
        row.visit,
        row.occurrence,
        row.name,
        row.target,
        row.earliest,
        row.latest,
        row.actual,
        row.status,
        row.days_outside,
        row.study_day,
    )


def write_json(pairs: Iterable[Pair], out: TextIO, with_participant: bool) -> None:
    keys = ("participant", *COLUMNS) if with_participant else COLUMNS
    records = [
        dict(zip(keys, (subject, *_values(row)) if with_participant else _values(row))) for subject, row in pairs
    ]
    out.write(msgspec.json.format(msgspec.json.encode(records), indent=1).decode())
    out.write("\n")


_safe = inert  # one guard for every CSV the product writes


def write_csv(pairs: Iterable[Pair], out: TextIO, with_participant: bool) -> None:
    """csv renders dates with str() (ISO 8601) and None as an empty cell; text cells are guarded."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("participant", *COLUMNS) if with_participant else COLUMNS)
    for subject, row in pairs:
        values = (_safe(row.visit), row.occurrence, _safe(row.name), *_values(row)[3:])
        writer.writerow((_safe(_named(subject)), *values) if with_participant else values)


def write_table(pairs: Iterable[Pair], out: TextIO, with_participant: bool) -> None:
    columns = ("participant", *TABLE_COLUMNS) if with_participant else TABLE_COLUMNS
    picked = [COLUMNS.index(name) for name in TABLE_COLUMNS]
    cells: list[list[str]] = []
    for subject, row in pairs:
        values = _values(row)
        lead: list[object] = [subject] if with_participant else []
        cells.append([("" if v is None else str(v)) for v in lead + [values[i] for i in picked]])
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    for line in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() + "\n")


def _named(subject: str | None) -> str:
    """A participant's subject ID, which rows written with participants have."""
    if subject is None:
        raise ValueError("a row written with its participant has none")
    return subject


WRITERS = {"json": write_json, "csv": write_csv, "table": write_table}
