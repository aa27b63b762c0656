"""Documents as byte-stable DOCX from the Word bases of `document_templates/`, via python-docx: placeholders
filled run by run, rows repeated per item, charts as pictures, tables at widths from their text
(`docx_layout.py`), a signature page appended, every ZIP entry dated `created_at`."""

from __future__ import annotations

import copy
import io
import re
import zipfile
from collections.abc import Mapping

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.render.document_data import check_data, prepare
from trialcoord.kernel.render.pdf import instant
from trialcoord.kernel.render.templates import TEMPLATE_DIR, TEMPLATES

_TOKEN = re.compile(r"\{\{([a-z_]+)(?:\.([a-z_]+))?\}\}")


def _text(value) -> str:
    if value is None:
        return ""
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


class _Missing(KeyError):
    """A placeholder of a base whose key the data lacks."""


def _fill(paragraph, values: Mapping, item: Mapping | None = None) -> None:
    """Replace the placeholders of each run; a run keeps its formatting, a field (PAGE) stays untouched."""

    def value(match: re.Match) -> str:
        scope, key = match.groups()
        if key is None:
            if scope not in values:
                raise _Missing(scope)
            return _text(values[scope])
        source = values["doc"] if scope == "doc" else item
        if source is None:
            return match.group(0)
        return _text(source.get(key))  # optional item keys may be absent; required ones were checked

    for run in paragraph.runs:
        if "{{" in run.text:
            run.text = _TOKEN.sub(value, run.text)


def _paragraphs(container):
    yield from container.paragraphs
    for table in container.tables:
        for row in table.rows:
            for cell in row.cells:
                yield from _paragraphs(cell)


def _lists(row) -> set[str]:
    """The lists a table row repeats for: those its `{{list.key}}` placeholders name."""
    return {m.group(1) for m in _TOKEN.finditer(row._tr.xml) if m.group(2) and m.group(1) != "doc"}


def _base_layout(table) -> tuple[int, frozenset[int]]:
    """A base's table: its header rows (those above its first repeated row; none in a table without one) and its
    blank columns, left to write in by hand (a signature)."""
    from trialcoord.kernel.render.docx_layout import blank_columns

    header = next((n for n, row in enumerate(table.rows) if _lists(row)), 0)
    return header, blank_columns(table, header)


def _fill_document(document, data: Mapping, doc: Mapping) -> None:
    from docx.table import _Row

    from trialcoord.kernel.render.chart_png import chart_png
    from trialcoord.kernel.render.charts import chart_of_spec
    from trialcoord.kernel.render.docx_layout import add_charts, lay_out_table, text_width

    values = {**data, "doc": doc}
    width = text_width(document.sections[-1])
    layouts = {table._tbl: _base_layout(table) for table in document.tables}
    for table in document.tables:  # rows with {{list.key}} repeat once per item of that list
        for row in list(table.rows):
            for key in _lists(row):
                for item in data.get(key) or []:  # an optional list absent: no rows
                    copied = copy.deepcopy(row._tr)
                    row._tr.addprevious(copied)
                    for cell in _Row(copied, table).cells:
                        for paragraph in _paragraphs(cell):
                            _fill(paragraph, values, item)
                row._tr.getparent().remove(row._tr)
    for paragraph in list(document.paragraphs):
        if paragraph.text.strip() == "{{sections}}":  # the consent form's body: headings and paragraphs
            for section in data["sections"]:
                paragraph.insert_paragraph_before(_text(section["heading"]), style="Heading 2")
                for text in section["paragraphs"]:
                    paragraph.insert_paragraph_before(_text(text))
            paragraph._p.getparent().remove(paragraph._p)
        elif paragraph.text.strip() == "{{charts}}":  # the charts of the PDF twin, as pictures; else left blank
            for run in paragraph.runs:
                run._r.getparent().remove(run._r)
            add_charts(paragraph, [chart_png(chart_of_spec(spec)) for spec in data.get("charts") or []], width)
    for section in document.sections:
        for part in (section.header, section.footer):
            for paragraph in _paragraphs(part):
                _fill(paragraph, values)
    for paragraph in _paragraphs(document):
        _fill(paragraph, values)
    for table in document.tables:  # last, measuring the text the reader gets
        header, blanks = layouts[table._tbl]
        lay_out_table(table, width, header_rows=header, handwritten=blanks)


def render_docx(template: str, data: Mapping, *, created_at: str, title: str, version_label: str) -> bytes:
    from docx import Document  # loaded only by the callers that render DOCX

    prepared = prepare("docx", template, data, created_at, title, version_label)
    document = Document(str(TEMPLATE_DIR / f"{template}.docx"))
    absent = {key.rstrip("?"): "" for key in TEMPLATES[template].fields if key.endswith("?")}  # optional: blank
    try:
        _fill_document(document, {**absent, **data}, prepared.doc)
    except _Missing as missing:
        raise InvalidInput([Problem("is required", field=missing.args[0])]) from None
    at = instant(created_at)
    props = document.core_properties
    props.title, props.revision = title, 1
    props.created = props.modified = props.last_printed = at
    for element in props._element.findall("{*}lastModifiedBy"):  # who saved the base is no one's business
        props._element.remove(element)
    saved = io.BytesIO()
    document.save(saved)
    return _fixed_zip(saved.getvalue(), at.timetuple()[:6])


def read_docx(data: bytes) -> int:
    """Open an uploaded Word file as python-docx does to append a signature page; its number of paragraphs.
    Run through kernel/isolation.py: parsing someone else's XML may take far more memory than the file."""
    from docx import Document

    return len(Document(io.BytesIO(data)).paragraphs)


def docx_with_signature_page(base: bytes, page: Mapping, created_at: str) -> bytes:
    """A DOCX version with the signature page (the `signature_page` template's data) appended after a page
    break: the manifestation of its signatures in the Word file itself (11.50). Byte-stable like render_docx."""
    from docx import Document
    from docx.enum.text import WD_BREAK

    from trialcoord.kernel.render.docx_layout import lay_out_table, text_width

    check_data(TEMPLATES["signature_page"], page)
    document = Document(io.BytesIO(base))
    document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    document.add_heading("Signature page", level=1)
    document.add_paragraph(
        f"{page['document']}, version {page['version']} (study {page['study_code']}, site"
        f" {page['site_code']}). The signatures below are linked to the version whose bytes have"
        f" the SHA-256 {page['version_sha256']}."
    )
    table = document.add_table(rows=1, cols=4)
    for cell, text in zip(table.rows[0].cells, ("Printed name (signer ID)", "Meaning", "Signed at", "Key · signature")):
        cell.text = text
    for s in page["signatures"]:
        row = table.add_row().cells
        row[0].text, row[1].text = f"{s['printed_name']} ({s['signer_id']})", s["meaning"]
        row[2].text, row[3].text = f"{s['local_time']}\n{s['instant']} UTC", f"{s['key_id']} · {s['signature']}"
    lay_out_table(table, text_width(document.sections[-1]), header_rows=1, borders=True)
    at = instant(created_at)
    document.core_properties.modified = at
    saved = io.BytesIO()
    document.save(saved)
    return _fixed_zip(saved.getvalue(), at.timetuple()[:6])


def _fixed_zip(data: bytes, date_time: tuple) -> bytes:
    """The same archive with every entry dated `date_time`: zip entries otherwise carry the save time."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=date_time)
            entry.compress_type, entry.external_attr = info.compress_type, info.external_attr
            target.writestr(entry, source.read(info))
    return out.getvalue()
