"""The audit trail as CSV (machine-readable) or as a PDF/A-3b report that carries that CSV inside it.

Pure: rows in, bytes out. The same inputs give the same bytes, so a report can be cached and compared by
hash; every date in the PDF derives from `generated_at`, never the clock.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from trialcoord.adapters.render.rows import _safe

COLUMNS = ("sequence", "recorded_at", "actor", "action", "record_type", "record_id", "old", "new", "reason",
           "leaf_hash")
ABSENT = "—"  # a field that one side of a change does not have
_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _json(values: Mapping | None) -> str:
    return "" if values is None else json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_csv(rows: Iterable[Mapping]) -> bytes:
    """One line per entry; every text cell is guarded, since the trail holds text users typed."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        cells = (row["sequence"], row["recorded_at"], row["actor"], row["action"], row["record_type"],
                 row["record_id"], _json(row["old"]), _json(row["new"]), row["reason"] or "", row["leaf_hash"])
        writer.writerow([_safe(c) if isinstance(c, str) else c for c in cells])
    return out.getvalue().encode("utf-8")


def _value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _changes(old: Mapping | None, new: Mapping | None) -> list[tuple[str, str, str]]:
    """(field, before, after) for each field that differs; unchanged fields would only hide the change."""
    old, new = old or {}, new or {}
    return [(key, _value(old[key]) if key in old else ABSENT, _value(new[key]) if key in new else ABSENT)
            for key in sorted(old.keys() | new.keys()) if key not in old or key not in new or old[key] != new[key]]


def _instant(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)


def _html(rows: Sequence[Mapping], *, title: str, filters: Mapping[str, str], generated_at: str,
          generated_by: str, trail_size: int, root: str) -> str:
    return _TEMPLATES.get_template("audit_trail.html").render(
        title=title, filters=filters, generated_at=generated_at, generated_by=generated_by,
        trail_size=trail_size, root=root, stamp=_instant(generated_at).strftime("%Y-%m-%dT%H:%M:%SZ"),
        entries=[{**row, "changes": _changes(row["old"], row["new"])} for row in rows])


def _pin_font_dates(_document, pdf) -> None:
    """Give each embedded font its own creation date as modification date.

    Without libharfbuzz-subset WeasyPrint subsets fonts with fontTools, which stamps every subset with the
    current second: two renders a second apart would differ in those bytes alone.
    """
    from fontTools.ttLib import TTFont

    for obj in pdf.objects:
        if getattr(obj, "extra", None) and "Length1" in obj.extra:  # an embedded TrueType font program
            font = TTFont(io.BytesIO(b"".join(obj.stream)), recalcTimestamp=False, recalcBBoxes=False)
            font["head"].modified = font["head"].created
            out = io.BytesIO()
            font.save(out)
            obj.stream, obj.extra["Length1"] = [out.getvalue()], len(out.getvalue())


def audit_pdf(rows: Sequence[Mapping], *, title: str, filters: Mapping[str, str], generated_at: str,
              generated_by: str, trail_size: int, root: str) -> bytes:
    # Imported here: loading Pango costs the CLI and the CSV path time they never need it for.
    from weasyprint import HTML, Attachment

    at = _instant(generated_at)
    # Attachment dates default to now(); pin them like every other date in the file.
    data = Attachment(file_obj=io.BytesIO(audit_csv(rows)), name="audit-trail.csv", relationship="Data",
                      description="The entries of this report, machine-readable", created=at, modified=at)
    html = _html(rows, title=title, filters=filters, generated_at=generated_at, generated_by=generated_by,
                 trail_size=trail_size, root=root)
    # PDF/A sets the file identifier to a hash of the content, so it is reproducible too.
    return HTML(string=html).write_pdf(pdf_variant="pdf/a-3b", attachments=[data], finisher=_pin_font_dates)
