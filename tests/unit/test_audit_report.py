"""Audit trail reports: CSV cells that never run as formulas, PDFs that are reproducible and carry their CSV."""

import csv
import io
import json
import re

import pikepdf
import pytest
import time_machine

from trialcoord.audit.report import audit_csv, audit_pdf
from trialcoord.kernel.audit_store import TrailEntry

HEADER = "sequence,recorded_at,actor,action,record_type,record_id,old,new,reason,leaf_hash"
ROOT = "c0ffee" + "0" * 58
META = dict(
    title="Audit trail – study ABC-123",
    filters={"record_type": "visit", "actor": "maria"},
    generated_at="2026-11-27T10:15:00.123456Z",
    generated_by="admin",
    trail_size=1234,
    root=ROOT,
)


def entry(sequence=1, **fields):
    row = dict(
        sequence=sequence,
        recorded_at="2026-11-27T09:30:00.000000Z",
        actor="maria",
        action="update",
        record_type="visit",
        record_id="101-001/V2",
        old={"actual": "2024-03-04"},
        new={"actual": "2024-03-05"},
        reason="Datum korrigiert – Übertragungsfehler",
        leaf_hash="ab" * 32,
    )
    return TrailEntry(**(row | fields))


def pdf_text(data: bytes) -> str:
    """The text WeasyPrint drew, decoded through each font's ToUnicode map; runs of whitespace become one space."""
    pdf, chunks = pikepdf.open(io.BytesIO(data)), []
    for page in pdf.pages:
        maps = {}
        for name, font in page.Resources.Font.items():
            cmap = font.ToUnicode.read_bytes().decode()
            pairs = re.findall(r"<([0-9a-f]+)>\s*<([0-9a-f]+)>", cmap.split("endcodespacerange")[1])
            maps[name] = {bytes.fromhex(code): bytes.fromhex(text).decode("utf-16-be") for code, text in pairs}
        glyphs = {}
        for operands, operator in pikepdf.parse_content_stream(page):
            if str(operator) == "Tf":
                glyphs = maps[str(operands[0])]
            elif str(operator) == "TJ":
                raw = b"".join(bytes(item) for item in operands[0] if isinstance(item, pikepdf.String))
                chunks.append("".join(glyphs[raw[i : i + 2]] for i in range(0, len(raw), 2)))
    return " ".join(" ".join(chunks).split())


def attachment(data: bytes) -> bytes:
    with pikepdf.open(io.BytesIO(data)) as pdf:  # objects read from a Pdf need it alive: pikepdf segfaults otherwise
        return pdf.attachments["audit-trail.csv"].get_file().read_bytes()


def test_csv_has_the_header_and_one_line_per_entry_with_compact_json():
    created = entry(2, action="create", old=None, new={"name": "Wöche 2", "day": 14}, reason=None)
    lines = audit_csv([entry(), created]).decode("utf-8").split("\r\n")
    assert lines[0] == HEADER
    assert lines[1] == (
        '1,2026-11-27T09:30:00.000000Z,maria,update,visit,101-001/V2,"{""actual"":""2024-03-04""}",'
        '"{""actual"":""2024-03-05""}",Datum korrigiert – Übertragungsfehler,' + "ab" * 32
    )
    record = next(csv.reader([lines[2]]))
    assert record[6:9] == ["", '{"day":14,"name":"Wöche 2"}', ""]
    assert lines[3:] == [""]


def test_csv_guards_every_text_cell_that_a_spreadsheet_would_evaluate():
    evil = entry(actor="=HYPERLINK(1)", record_id="-2+3", reason="@SUM(A1)", action="\tx", record_type="\rx")
    [record] = list(csv.reader(io.StringIO(audit_csv([evil]).decode())))[1:]
    assert record[:6] == ["1", "2026-11-27T09:30:00.000000Z", "'=HYPERLINK(1)", "'\tx", "'\rx", "'-2+3"]
    assert record[8] == "'@SUM(A1)"


def test_csv_of_no_entries_is_the_header_alone():
    assert audit_csv([]) == (HEADER + "\r\n").encode()


def test_pdf_is_byte_identical_for_the_same_inputs_whenever_it_is_rendered():
    rows = [entry(), entry(2, action="create", old=None, new={"visit": "V3"}, reason=None)]
    # Renders at different instants: anything taken from the clock (attachment or font dates) would show.
    with time_machine.travel("2027-01-01T00:00:00Z", tick=False):
        first = audit_pdf(rows, **META)
    with time_machine.travel("2031-06-15T12:34:56Z", tick=False):
        second = audit_pdf(rows, **META)
    assert first.startswith(b"%PDF-") and first == second
    assert audit_pdf(rows, **META | {"generated_at": "2026-11-28T10:15:00Z"}) != first


def test_pdf_shows_the_entries_their_changes_and_where_to_check_them():
    rows = [entry(), entry(2, action="create", record_id="101-001/V3", old=None, new={"visit": "V3"}, reason=None)]
    data = audit_pdf(rows, **META)
    text = pdf_text(data)
    for expected in (
        "Audit trail – study ABC-123",
        "record_type = visit",
        "actor = maria",
        "Generated at 2026-11-27T10:15:00.123456Z by admin",
        "1234 entries",
        ROOT,
        "trialcoord audit verify",
        "visit 101-001/V2",
        "actual: 2024-03-04 → 2024-03-05",
        "Datum korrigiert – Übertragungsfehler",
        "visit 101-001/V3",
        "visit: — → V3",
        "page 1 of 1",
    ):
        assert expected in text
    assert attachment(data) == audit_csv(rows)
    pdf = pikepdf.open(io.BytesIO(data))
    assert pdf.attachments["audit-trail.csv"].obj.AFRelationship == "/Data"
    assert pdf.docinfo.CreationDate == pdf.docinfo.ModDate == "D:20261127101500Z"
    assert float(pdf.pages[0].MediaBox[2]) > float(pdf.pages[0].MediaBox[3])  # landscape


def test_pdf_escapes_markup_in_entries():
    rows = [entry(actor="<b>x</b>", reason='<img src="x.png">')]
    text = pdf_text(audit_pdf(rows, **META | {"title": "<i>t</i>", "filters": {"actor": "<b>x</b>"}}))
    assert "<i>t</i>" in text and "actor = <b>x</b>" in text
    assert "<b>x</b> update" in text and '<img src="x.png">' in text


def test_pdf_of_no_entries_says_so():
    data = audit_pdf([], **META | {"filters": {}})
    text = pdf_text(data)
    assert "Filters: none (the whole trail)" in text and "No entries match the filters." in text
    assert len(pikepdf.open(io.BytesIO(data)).pages) == 1
    assert attachment(data) == audit_csv([])


@pytest.fixture(scope="module")
def long_trail():
    rows = [entry(n, record_id=f"101-{n:03d}/V2") for n in range(1, 301)]
    return rows, audit_pdf(rows, **META)


def test_a_long_trail_spans_pages_that_repeat_the_header_and_are_numbered(long_trail):
    rows, data = long_trail
    pages = len(pikepdf.open(io.BytesIO(data)).pages)
    text = pdf_text(data)
    assert pages > 5 and f"page 1 of {pages}" in text and f"page {pages} of {pages}" in text
    assert text.count("Sequence Recorded at Actor Action Record Changes Reason") == pages
    assert "visit 101-001/V2" in text and "visit 101-300/V2" in text
    assert attachment(data) == audit_csv(rows)
    assert json.loads(list(csv.reader(io.StringIO(attachment(data).decode())))[300][7]) == {"actual": "2024-03-05"}
