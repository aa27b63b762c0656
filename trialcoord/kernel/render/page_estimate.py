"""About how many pages a document will have, estimated from its data without rendering: whether it is long
(`LONG_DOCUMENT_PAGES`), and so goes to a render job rather than holding a request."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trialcoord.kernel.render.templates import TEMPLATES, template_named

LONG_DOCUMENT_PAGES = 20  # at or above this estimate a render goes to a job (about 4 s of WeasyPrint)

# A row's height is its padding plus one text line per wrapped line of its tallest cell, so a log of long
# descriptions counts for more pages than one of short ones. Constants measured once (WeasyPrint 70, DejaVu
# Sans, `_document.css`): 150 deviation rows whose description wraps to 1, 2, 3, 4 and 10 lines took 6, 9,
# 13, 17 and 38 pages, a row being 5.5pt plus 10.8pt a line in a 471pt page body. With English prose the
# estimate then came within a page of the rendering: deviation log of 700 sample rows 25 (24 rendered), of
# 100 rows with 400-character descriptions 20 (21), binder index of 200 long titles 11 (12), consent form of
# 40 sections of three 500-character paragraphs 15 (15), of 20 sections of six 900-character ones 23 (23).
_LINE_8PT = 10.8  # pt: table text is 8pt at line-height 1.35
_CHAR_8PT = 4.1  # pt: mean advance of a character of English prose at 8pt, word-wrapping losses included
_CELL_PADDING = 6.0  # pt: 3pt left and right
_ROW_EXTRA = 5.5  # pt: a row's 2pt top and bottom padding and its border
_LANDSCAPE = (757.0, 487.0)  # pt: the page box of A4 landscape less the 15mm side and 18/20mm top/bottom margins
_PORTRAIT = (510.0, 734.0)


@dataclass(frozen=True)
class _Table:
    rows: str  # the list in the data that becomes the table's rows
    page: tuple[float, float]  # width, height of the page box, pt
    head: float  # pt taken from every page: the table header repeated on it
    fixed: float  # pt the rest of the document takes: title and facts before the table, anything after it
    columns: Mapping[tuple[str, ...], float]  # the items' keys shown in a column -> its share of the width
    others: tuple[str, ...] = ()  # further lists shown as short tables after it: each item two lines


# Shares mirror the <colgroup> of each template; columns holding only codes and dates never wrap and are left out.
_TABLES: dict[str, _Table] = {
    "delegation_log": _Table(
        "entries",
        _LANDSCAPE,
        16.3,
        190.0,
        {  # 190: the PI statement and signature block
            ("staff",): 0.15,
            ("role",): 0.12,
            ("tasks",): 0.25,
            ("pi_signoff",): 0.10,
        },
    ),
    "training_log": _Table(
        "entries",
        _LANDSCAPE,
        27.1,
        70.0,
        {  # two-line header: "Material version"
            ("staff",): 0.15,
            ("role",): 0.11,
            ("training",): 0.24,
            ("material_version",): 0.08,
            ("trainer", "method"): 0.13,
        },
    ),
    # 70: title and facts; its charts (`charts`, two to a row) add _CHART_ROW a row
    "deviation_log": _Table(
        "entries",
        _LANDSCAPE,
        16.3,
        70.0,
        {
            ("participant",): 0.09,
            ("visit",): 0.07,
            ("category",): 0.12,
            ("description",): 0.28,
            ("classification",): 0.11,
            ("status",): 0.09,
        },
    ),
    # 200: facts, the site status table, three headings and the CAPA table's head
    "monitoring_visit_report": _Table(
        "entries",
        _LANDSCAPE,
        16.3,
        200.0,
        {
            ("participant",): 0.09,
            ("visit",): 0.07,
            ("category",): 0.12,
            ("description",): 0.30,
            ("classification",): 0.11,
            ("status",): 0.10,
        },
        others=("capas",),
    ),
    "binder_index": _Table(
        "entries",
        _PORTRAIT,
        16.3,
        70.0,
        {("document",): 0.36, ("version",): 0.10, ("status",): 0.16, ("effective",): 0.16},
    ),
}
# The consent form is flowing text at 10pt: each paragraph its wrapped lines, each section its heading.
_LINE_10PT, _CHAR_10PT, _PARAGRAPH_GAP = 13.5, 5.1, 5.0
_HEADING_12PT, _CHAR_12PT = 32.0, 6.2  # pt: an h2 with its margins; the mean advance of its characters
_CONSENT_FIXED = 520.0  # pt: title and facts, and the signature section (four blocks)
_CHART_ROW = 215.0  # pt: a row of two charts at 48% of the landscape width (a 600-unit SVG about 330 high)
_ROWS_PER_PAGE = 15  # any other template with a list: a cautious guess, as no layout is modelled for it


def _text(value: Any) -> str:
    if value is None:
        return ""
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _lines(text: str, width: float, char: float) -> int:
    per_line = max(1, int(width / char))
    return max(1, sum(math.ceil(len(part) / per_line) or 1 for part in text.split("\n")))


def estimate_pages(template: str, data: Mapping) -> int:
    """About how many pages the PDF of `template` with `data` will have, from the data alone (no rendering).

    Meant to decide whether a render is long (`>= LONG_DOCUMENT_PAGES`), not to be exact: text that wraps
    more or less than average shifts it by a page or two per twenty. Data that would not validate estimates
    as whatever part of it can be read; an unknown template is refused like `render_pdf` refuses it.
    """
    if template not in TEMPLATES:
        template_named(template, "pdf")  # raises the same InvalidInput, naming the known templates
    if not isinstance(data, Mapping):
        return 1
    if template == "consent_form":
        return _consent_pages(data)
    table = _TABLES.get(template)
    if table is None:
        rows = sum(len(v) for v in data.values() if isinstance(v, list))
        return 1 + rows // _ROWS_PER_PAGE
    width, height = table.page
    items = [item for item in _list(data, table.rows) if isinstance(item, Mapping)]
    total = table.fixed + _CHART_ROW * math.ceil(len(_list(data, "charts")) / 2)
    total += sum(_ROW_EXTRA + 2 * _LINE_8PT for key in table.others for _ in _list(data, key))
    for item in items:
        tallest = max(
            (
                _lines(" ".join(_text(item.get(k)) for k in keys), width * share - _CELL_PADDING, _CHAR_8PT)
                for keys, share in table.columns.items()
            ),
            default=1,
        )
        total += _ROW_EXTRA + _LINE_8PT * tallest
    return max(1, math.ceil(total / (height - table.head)))


def _consent_pages(data: Mapping) -> int:
    width, height = _PORTRAIT
    total = _CONSENT_FIXED
    for section in _list(data, "sections"):
        if not isinstance(section, Mapping):
            continue
        total += _HEADING_12PT + _LINE_10PT * (_lines(_text(section.get("heading")), width, _CHAR_12PT) - 1)
        for paragraph in _list(section, "paragraphs"):
            total += _PARAGRAPH_GAP + _LINE_10PT * _lines(_text(paragraph), width, _CHAR_10PT)
    return max(1, math.ceil(total / height))


def _list(data: Mapping, key: str) -> list:
    value = data.get(key)
    return value if isinstance(value, list) else []
