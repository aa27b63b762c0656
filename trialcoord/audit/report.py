"""The audit trail as CSV (machine-readable) or as a PDF/A-3b report that carries that CSV inside it.

Pure: rows in, bytes out. The same inputs give the same bytes, so a report can be cached and compared by
hash; every date in the PDF derives from `generated_at`, never the clock.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import jinja2

from trialcoord.kernel.audit_store import TrailEntry
from trialcoord.kernel.render import fonts
from trialcoord.kernel.render.pdf import reproducible_pdf, stamp
from trialcoord.kernel.render.tabular import inert as _safe

COLUMNS = (
    "sequence",
    "recorded_at",
    "actor",
    "action",
    "record_type",
    "record_id",
    "old",
    "new",
    "reason",
    "leaf_hash",
)
ABSENT = "—"  # a field that one side of a change does not have
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_TEMPLATES.globals["fonts_css"] = fonts.css


def _json(values: Mapping | None) -> str:
    return "" if values is None else json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_csv(rows: Iterable[TrailEntry]) -> bytes:
    """One line per entry; every text cell is guarded, since the trail holds text users typed."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        cells = (
            row.sequence,
            row.recorded_at,
            row.actor,
            row.action,
            row.record_type,
            row.record_id,
            _json(row.old),
            _json(row.new),
            row.reason or "",
            row.leaf_hash,
        )
        writer.writerow([_safe(c) if isinstance(c, str) else c for c in cells])
    return out.getvalue().encode("utf-8")


def _value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _changes(old: Mapping | None, new: Mapping | None) -> list[tuple[str, str, str]]:
    """(field, before, after) for each field that differs; unchanged fields would only hide the change."""
    old, new = old or {}, new or {}
    return [
        (key, _value(old[key]) if key in old else ABSENT, _value(new[key]) if key in new else ABSENT)
        for key in sorted(old.keys() | new.keys())
        if key not in old or key not in new or old[key] != new[key]
    ]


def _html(
    rows: Sequence[TrailEntry],
    *,
    title: str,
    filters: Mapping[str, str],
    generated_at: str,
    generated_by: str,
    trail_size: int,
    root: str,
) -> str:
    return _TEMPLATES.get_template("audit_trail.html").render(
        title=title,
        filters=filters,
        generated_at=generated_at,
        generated_by=generated_by,
        trail_size=trail_size,
        root=root,
        stamp=stamp(generated_at),
        entries=[{**asdict(row), "changes": _changes(row.old, row.new)} for row in rows],
    )


def audit_pdf(
    rows: Sequence[TrailEntry],
    *,
    title: str,
    filters: Mapping[str, str],
    generated_at: str,
    generated_by: str,
    trail_size: int,
    root: str,
) -> bytes:
    html = _html(
        rows,
        title=title,
        filters=filters,
        generated_at=generated_at,
        generated_by=generated_by,
        trail_size=trail_size,
        root=root,
    )
    return reproducible_pdf(
        html,
        source="audit trail report",
        created_at=generated_at,
        attachments=[("audit-trail.csv", audit_csv(rows), "The entries of this report, machine-readable")],
    )
