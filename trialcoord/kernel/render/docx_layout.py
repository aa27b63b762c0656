"""How a DOCX reads (ECMA-376 WordprocessingML): each table at column widths from its text (column_widths.py),
written as the table grid (`w:tblGrid/w:gridCol`) and on every cell (`w:tcW`) with a fixed layout, so Word
and LibreOffice draw the same columns; header rows repeated on each page (`w:tblHeader`); charts as PNG
pictures whose alternative text (`wp:docPr/@descr`) gives the chart's words."""

from __future__ import annotations

import io
from collections.abc import Iterable

from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.oxml.table import CT_Row, CT_Tc
from docx.shared import Emu, Pt, Twips

from trialcoord.kernel.render.chart_png import ChartImage
from trialcoord.kernel.render.column_widths import column_widths

A4_TEXT_WIDTH = 9026  # twips: A4 portrait less 2.54 cm margins, for a section that states no page size
# the children of a table's and of a row's properties, in the order the schema requires (ECMA-376 Part 1, 17.4)
_TBL_PR = tuple(
    "w:" + tag
    for tag in "tblStyle tblpPr tblOverlap bidiVisual tblStyleRowBandSize tblStyleColBandSize tblW jc tblCellSpacing "
    "tblInd tblBorders shd tblLayout tblCellMar tblLook tblCaption tblDescription tblPrChange".split()
)
_TR_PR = tuple(
    "w:" + tag
    for tag in "cnfStyle divId gridBefore gridAfter wBefore wAfter cantSplit trHeight tblHeader tblCellSpacing jc "
    "hidden ins del trPrChange".split()
)
_NS = {"w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main"}
_T, _BREAKS = qn("w:t"), {qn("w:br"): "\n", qn("w:cr"): "\n", qn("w:tab"): "\t"}
CHARTS_PER_LINE = 2  # as the PDF lays them out: two side by side on a landscape page


def text_width(section) -> int:
    """The width between the margins of a python-docx section, in twips."""
    if section.page_width is None:
        return A4_TEXT_WIDTH
    return Emu(section.page_width - (section.left_margin or 0) - (section.right_margin or 0)).twips


def _child(parent, tag: str, order: tuple[str, ...], **attributes: str):
    """`parent`'s `tag` child, made in its place in the schema's `order` when absent, with `attributes` set."""
    element = parent.find(qn(tag))
    if element is None:
        element = OxmlElement(tag)
        parent.insert_element_before(element, *order[order.index(tag) + 1 :])
    for name, value in attributes.items():
        element.set(qn(f"w:{name}"), value)
    return element


def _number(element, path: str, default: int) -> int:
    found = element.find(path, _NS)
    return default if found is None else int(found.get(qn("w:val")))


def _cells(tr: CT_Row) -> Iterable[tuple[CT_Tc, int, int]]:
    """(cell, first grid column, columns spanned) of a row, skipping the grid columns a row leaves out."""
    column = _number(tr, "w:trPr/w:gridBefore", 0)
    for tc in tr.tc_lst:
        span = _number(tc, "w:tcPr/w:gridSpan", 1)
        yield tc, column, span
        column += span


def _text(tc: CT_Tc) -> str:
    """A cell's text, a line to a paragraph or line break (lxml: python-docx's properties cost 10 times more)."""
    return "\n".join(
        "".join((e.text or "") if e.tag == _T else _BREAKS[e.tag] for e in p.iter(_T, *_BREAKS))
        for p in tc.iter(qn("w:p"))
    )


def _texts(table) -> list[list[str]]:
    """The text of each cell, row by row, a column to a grid column ("" where a merged cell spans several)."""
    columns = len(table._tbl.tblGrid.gridCol_lst)
    rows = []
    for tr in table._tbl.tr_lst:
        texts = [""] * columns
        for tc, first, span in _cells(tr):
            if span == 1 and first < columns:  # a merged cell says nothing of one column's width
                texts[first] = _text(tc)
        rows.append(texts)
    return rows


def blank_columns(table, header_rows: int) -> frozenset[int]:
    """The columns whose cells below the header hold no text: in a base, the blanks to write in by hand."""
    body = _texts(table)[header_rows:]
    return frozenset(col for col in range(len(body[0]) if body else 0) if not any(row[col].strip() for row in body))


def lay_out_table(
    table, width: int, *, header_rows: int = 0, handwritten: frozenset[int] = frozenset(), borders: bool = False
) -> list[int]:
    """Give a python-docx table column widths from its text, filling `width` twips, the `handwritten` columns
    room to write in; its first `header_rows` rows repeat at the top of each page. With `borders`, single lines
    round every cell whatever the table style (the base of a signature page may have no "Table Grid").
    Returns the widths."""
    tbl = table._tbl
    rows = _texts(table)
    widths = column_widths(rows, width, header_rows=min(header_rows, len(rows)), handwritten=handwritten)
    tblPr = tbl.tblPr
    _child(tblPr, "w:tblW", _TBL_PR, w=str(width), type="dxa")
    _child(tblPr, "w:tblLayout", _TBL_PR, type="fixed")
    if borders:
        edges = _child(tblPr, "w:tblBorders", _TBL_PR)
        for edge in ("top", "left", "bottom", "right", "insideH", "insideV"):
            if edges.find(qn(f"w:{edge}")) is None:
                line = OxmlElement(f"w:{edge}")
                for name, value in (("val", "single"), ("sz", "4"), ("space", "0"), ("color", "auto")):
                    line.set(qn(f"w:{name}"), value)
                edges.append(line)
    for gridCol, w in zip(tbl.tblGrid.gridCol_lst, widths):
        gridCol.w = Twips(w)
    for n, tr in enumerate(tbl.tr_lst):
        for tc, first, span in _cells(tr):
            tc.width = Twips(sum(widths[first : first + span]))
        if n < header_rows:
            _child(tr.get_or_add_trPr(), "w:tblHeader", _TR_PR)
    return widths


def add_charts(paragraph, images: list[ChartImage], width: int) -> None:
    """The charts as inline pictures before `paragraph`, CHARTS_PER_LINE to a paragraph of `width` twips (a
    paragraph per line, so that a page break may fall between two lines), each described by its chart's title
    (`title`) and words (`descr`), which screen readers and Word's alt text show."""
    each = Twips(int(width * 0.96 / CHARTS_PER_LINE))  # a space between two pictures must still fit the line
    for start in range(0, len(images), CHARTS_PER_LINE):
        line = paragraph.insert_paragraph_before()
        line.paragraph_format.space_before = Pt(6)  # clear of a table above: a picture's white would hide its rule
        for n, image in enumerate(images[start : start + CHARTS_PER_LINE]):
            if n:
                line.add_run(" ")
            inline = (
                line.add_run()
                .add_picture(io.BytesIO(image.png), width=each, height=Emu(each * image.height // image.width))
                ._inline
            )
            for side in ("distT", "distB", "distL", "distR"):  # LibreOffice's default is a margin round it
                inline.set(side, "0")
            inline.docPr.set("descr", image.description)
            inline.docPr.set("title", image.title)
