"""Visit occurrences as flat rows: the one shape behind JSON, CSV and table output."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Iterable

from trialcoord.domain.schedule import VisitOccurrence

COLUMNS = ("visit", "occurrence", "name", "target", "earliest", "latest", "actual", "status", "days_outside", "study_day")
TABLE_COLUMNS = ("visit", "name", "target", "earliest", "latest", "actual", "status", "days_outside", "study_day")


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def row_dict(row: VisitOccurrence, participant: str | None = None) -> dict:
    data = {"participant": participant} if participant is not None else {}
    data.update(
        visit=row.visit,
        occurrence=row.occurrence,
        name=row.name,
        target=_iso(row.target),
        earliest=_iso(row.earliest),
        latest=_iso(row.latest),
        actual=_iso(row.actual),
        status=row.status,
        days_outside=row.days_outside,
        study_day=row.study_day,
    )
    return data


def to_json(rows: Iterable[dict]) -> str:
    return json.dumps(list(rows), indent=1, ensure_ascii=False) + "\n"


def _cell(value) -> str:
    """CSV cells never start a spreadsheet formula (OWASP CSV injection)."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def to_csv(rows: Iterable[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(row.get(c)) for c in columns] for row in rows)
    return out.getvalue()


def to_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines) + "\n"
