"""DOCX that read well: column widths from the text (a pure rule, then as the table grid and on every cell,
fixed), header rows repeated, charts as PNG pictures with alternative text. The files are checked as
WordprocessingML with lxml, not through python-docx, and once through LibreOffice, which lays the document
out to PDF: poppler's tools then read the text, the columns' positions and the pictures from that PDF."""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
import zlib

import pytest
from lxml import etree

from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.render.charts import chart_of_spec
from trialcoord.kernel.render.column_widths import HAND, column_widths, text_ems
from trialcoord.kernel.render.docx_documents import docx_with_signature_page, render_docx

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
NS = {
    "w": W,
    "wp": "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
}
META = dict(created_at="2026-11-27T09:30:00.000000Z", title="Protocol deviation log", version_label="v1")
HEADERS = ["ID", "Participant", "Visit", "Category", "Description", "Occurred", "Identified", "Classification"]
STORY = "Visit done 4 days out of window; the participant was travelling and the site rescheduled it."
CHARTS = [
    {
        "kind": "stacked",
        "title": "Deviations by month and category",
        "periods": ["2026-01", "2026-02", "2026-03"],
        "series": {"visit_missed": [1, 2, 3], "out_of_window": [2, 0, 1]},
        "y_label": "deviations",
    },
    {"kind": "bars", "title": "Deviations by rule", "items": [["visit_missed", 6], ["out_of_window", 3]]},
    {"kind": "histogram", "title": "Days from detection to closure", "values": [1, 5, 40], "bins": [[0, 8], [8, None]]},
]


def log_data(rows: int = 30, charts: list | None = None) -> dict:
    entries = [
        {
            "id": f"DV-{i:03}",
            "participant": f"101-{i:03}",
            "visit": "Week 4",
            "category": "visit_missed",
            "description": " ".join([STORY] * (1 + i % 3)),
            "occurred": "2026-03-01",
            "identified": "2026-03-02",
            "classification": "important",
            "status": "open",
        }
        for i in range(1, rows + 1)
    ]
    return {
        "study_code": "ABC-123",
        "site": "101",
        "as_of": "2026-06-01",
        "summary": [{"label": "Deviations", "value": rows}],
        "charts": CHARTS if charts is None else charts,
        "entries": entries,
    }


@pytest.fixture(scope="module")
def log() -> bytes:
    return render_docx("deviation_log", log_data(), **META)


def parts(docx: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(docx)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def body(docx: bytes):
    return etree.fromstring(parts(docx)["word/document.xml"])


def twips(element, path: str) -> int:
    return int(element.find(path, NS).get(f"{{{W}}}w"))


def page_text_width(root) -> int:
    """From the last section's properties: page width less the left and right margins (ECMA-376 17.6)."""
    sect = root.find(".//w:body/w:sectPr", NS)
    margins = sect.find("w:pgMar", NS)
    return int(sect.find("w:pgSz", NS).get(f"{{{W}}}w")) - sum(
        int(margins.get(f"{{{W}}}{s}")) for s in ("left", "right")
    )


def grid(table) -> list[int]:
    return [int(col.get(f"{{{W}}}w")) for col in table.findall("w:tblGrid/w:gridCol", NS)]


# --- the rule -----------------------------------------------------------------------------------------------


def test_ids_and_dates_stay_narrow_and_free_text_takes_the_rest():
    rows = [HEADERS] + [
        ["DV-1", "101-001", "Week 4", "visit_missed", STORY * 2, "2026-03-01", "2026-03-02", "minor"]
    ] * 3
    widths = column_widths(rows, 15138, header_rows=1)
    assert sum(widths) == 15138
    by = dict(zip(HEADERS, widths))
    assert by["ID"] < by["Participant"] < by["Description"]
    assert by["Description"] == max(widths) and by["Description"] > 3 * by["Occurred"]
    assert by["Occurred"] == by["Identified"]  # same text, same width
    # a date is never broken: its column holds it on one line (10 pt, 216 twips of cell margins; to a twip)
    assert by["Occurred"] >= int(text_ems("2026-03-01") * 200 + 216)
    # nor a short phrase, nor a bold header word
    assert by["Visit"] >= int(text_ems("Week 4") * 200 + 216)
    assert by["Classification"] >= int(text_ems("Classification") * 220 + 216)


def test_a_table_with_room_to_spare_fills_the_width_and_blanks_get_the_room():
    rows = [["Printed name", ""], ["Signature", ""], ["Date and time (DD-MMM-YYYY hh:mm)", ""]]
    label, blank = column_widths(rows, 10206, handwritten={1})
    assert label + blank == 10206 and blank > label >= text_ems("Date and time (DD-MMM-YYYY hh:mm)") * 200
    short = column_widths([["Measure", "Count"], ["Deviations", "40"]], 15138, header_rows=1)
    assert sum(short) == 15138 and short[0] > short[1]  # in proportion to the text
    assert column_widths([["a", ""]], 5000, handwritten={1})[1] >= HAND * 200  # room to write even when narrow


def test_when_not_even_the_words_fit_every_column_shrinks_in_proportion():
    widths = column_widths([["x" * 30] * 12], 9000)
    assert sum(widths) == 9000 and max(widths) - min(widths) <= 1


def test_a_ragged_or_empty_table_or_no_width_is_refused():
    for rows, total in (([["a", "b"], ["c"]], 100), ([], 100), ([["a"]], 0)):
        with pytest.raises(ValueError):
            column_widths(rows, total)


# --- the DOCX, read as XML ----------------------------------------------------------------------------------


def test_every_table_has_a_fixed_grid_that_fills_the_text_width_and_cells_that_agree(log):
    root = body(log)
    width = page_text_width(root)
    tables = root.findall(".//w:body/w:tbl", NS)
    assert len(tables) == 2
    for table in tables:
        assert table.find("w:tblPr/w:tblLayout", NS).get(f"{{{W}}}type") == "fixed"
        assert twips(table, "w:tblPr/w:tblW") == width == sum(grid(table))
        for row in table.findall("w:tr", NS):
            widths = [twips(tc, "w:tcPr/w:tcW") for tc in row.findall("w:tc", NS)]
            assert widths == grid(table)
            assert {tc.find("w:tcPr/w:tcW", NS).get(f"{{{W}}}type") for tc in row.findall("w:tc", NS)} == {"dxa"}
    entries = dict(zip(HEADERS, grid(tables[1])))
    assert entries["ID"] < entries["Description"] and entries["Identified"] < entries["Description"]


def test_the_header_row_repeats_on_each_page_and_only_it(log):
    for table in body(log).findall(".//w:body/w:tbl", NS):
        rows = table.findall("w:tr", NS)
        assert rows[0].find("w:trPr/w:tblHeader", NS) is not None
        assert all(row.find("w:trPr/w:tblHeader", NS) is None for row in rows[1:])


def test_each_chart_is_a_png_picture_described_by_its_words(log):
    files, root = parts(log), body(log)
    relationships = {
        rel.get("Id"): rel.get("Target")
        for rel in etree.fromstring(files["word/_rels/document.xml.rels"])
        if rel.get("Type").endswith("/image")
    }
    types = etree.fromstring(files["[Content_Types].xml"])
    assert any(d.get("Extension") == "png" and d.get("ContentType") == "image/png" for d in types)
    drawings = root.findall(".//w:drawing", NS)
    assert len(drawings) == len(CHARTS)
    for drawing, spec in zip(drawings, CHARTS):
        svg = ET.fromstring(chart_of_spec(spec))
        doc_pr = drawing.find("wp:inline/wp:docPr", NS)
        assert doc_pr.get("title") == spec["title"] == svg.find("{*}title").text
        assert doc_pr.get("descr") == svg.find("{*}desc").text
        png = files["word/" + relationships[drawing.find(".//a:blip", NS).get(f"{{{NS['r']}}}embed")]]
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        length, kind, width, height = struct.unpack(">I4sII", png[8:24])
        assert (
            kind == b"IHDR"
            and width == 2 * int(svg.get("width"))
            and zlib.crc32(png[12:29]) == int.from_bytes(png[29:33], "big")
        )
        extent = drawing.find("wp:inline/wp:extent", NS)
        assert abs(int(extent.get("cx")) / int(extent.get("cy")) - width / height) < 0.01  # not stretched
    assert "Deviations by period. 2026-01: 3 in all" in drawings[0].find(".//wp:docPr", NS).get("descr")
    assert "{{charts}}" not in files["word/document.xml"].decode()


def test_the_monitoring_visit_report_gets_its_charts_and_a_report_without_them_none():
    data = {
        "study_code": "ABC-123",
        "site": "101",
        "visit_date": "2026-06-01",
        "prepared_by": "Mona",
        "summary": [{"label": "Visits done / due", "value": "8 / 10"}],
        "charts": CHARTS[1:],
        "entries": [],
        "capas": [],
    }
    report = render_docx("monitoring_visit_report", data, **META)
    assert len(body(report).findall(".//w:drawing", NS)) == 2
    plain = render_docx("deviation_log", log_data(3, charts=[]), **META)
    assert (
        body(plain).findall(".//w:drawing", NS) == [] and "{{charts}}" not in parts(plain)["word/document.xml"].decode()
    )


def test_a_chart_that_cannot_be_drawn_is_named_as_in_the_pdf():
    with pytest.raises(InvalidInput) as raised:
        render_docx("deviation_log", log_data(1, charts=[{"kind": "pie", "title": "x"}]), **META)
    assert [p.field for p in raised.value.problems] == ["charts"]


def test_a_signature_column_to_write_in_is_wide():
    data = {
        "study_code": "ABC-123",
        "site": "101",
        "investigator": "Dr. Anna Schmidt",
        "entries": [
            {"staff": "Maria Lopez", "role": "Coordinator", "tasks": "Consent", "start": "2026-01-05", "initials": "ML"}
        ],
    }
    log = body(render_docx("delegation_log", data, **META))
    widths = dict(
        zip(("Staff", "Role", "Tasks", "Start", "End", "Initials", "Signature", "PI"), grid(log.find(".//w:tbl", NS)))
    )
    assert widths["Signature"] > 2 * widths["Initials"] and widths["Signature"] >= HAND * 200


def test_the_signature_page_table_fits_the_documents_own_page_with_borders(log):
    page = {
        "study_code": "ABC-123",
        "site_code": "101",
        "document": "Deviation log",
        "version": "1",
        "version_sha256": "ab" * 32,
        "signatures": [
            {
                "printed_name": "Dr. Anna Schmidt",
                "signer_id": "aschmidt",
                "meaning": "approval",
                "instant": "2026-11-27T09:30:00.000000Z",
                "local_time": "2026-11-27 10:30:00 CET (Europe/Berlin)",
                "key_id": "0123456789abcdef",
                "signature": "cd" * 64,
            }
        ],
    }
    root = body(docx_with_signature_page(log, page, created_at=META["created_at"]))
    table = root.findall(".//w:body/w:tbl", NS)[-1]
    assert sum(grid(table)) == page_text_width(root) and table.find("w:tr/w:trPr/w:tblHeader", NS) is not None
    assert table.find("w:tblPr/w:tblBorders/w:insideV", NS).get(f"{{{W}}}val") == "single"
    meaning, key = grid(table)[1], grid(table)[3]
    assert key > meaning


def test_the_same_data_gives_the_same_bytes_in_another_process(log):
    script = (
        "import sys; from tests.unit.test_docx_layout import log_data, META;"
        "from trialcoord.kernel.render.docx_documents import render_docx;"
        "sys.stdout.buffer.write(render_docx('deviation_log', log_data(), **META))"
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, timeout=120).stdout
    assert other == log == render_docx("deviation_log", log_data(), **META)


# --- LibreOffice ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def laid_out(tmp_path_factory, log):
    """The deviation log as LibreOffice lays it out (one conversion for the module, a few seconds)."""
    soffice = shutil.which("soffice")
    if soffice is None or shutil.which("pdftotext") is None:
        reason = "LibreOffice or poppler-utils is missing (apt-get install libreoffice-writer-nogui poppler-utils)"
        if os.environ.get("TRIALCOORD_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("libreoffice")
    (folder / "log.docx").write_bytes(log)
    done = subprocess.run(
        [
            soffice,
            f"-env:UserInstallation={(folder / 'profile').as_uri()}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(folder),
            str(folder / "log.docx"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0 and (folder / "log.pdf").exists(), done.stdout + done.stderr
    return folder / "log.pdf"


def poppler(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


def test_libreoffice_lays_out_every_row_and_repeats_the_header_on_each_page(laid_out):
    text = " ".join(poppler("pdftotext", str(laid_out), "-").split())
    assert all(f"DV-{i:03}" in text for i in range(1, 31)) and STORY in text
    pages = int(re.search(r"Pages:\s+(\d+)", poppler("pdfinfo", str(laid_out))).group(1))
    assert pages >= 3
    for page in range(2, pages + 1):  # the table runs over every page after the first
        words = poppler("pdftotext", "-f", str(page), "-l", str(page), str(laid_out), "-").split()
        assert {"Participant", "Classification", "Description"} <= set(words), page


def test_libreoffice_draws_the_columns_at_the_grid_widths(laid_out, log):
    """The header words' left edges on page 2 are the columns' edges (plus the cell margin): their spacing
    is the width LibreOffice gave each column, which must be the grid's."""
    bbox = poppler("pdftotext", "-bbox", "-f", "2", "-l", "2", str(laid_out), "-")
    lefts = {}
    for x, word in re.findall(r'<word xMin="([\d.]+)"[^>]*>([^<]+)</word>', bbox):
        lefts.setdefault(word, float(x))
    drawn = [lefts[b] - lefts[a] for a, b in zip(HEADERS, HEADERS[1:])]
    expected = [w / 20 for w in grid(body(log).findall(".//w:body/w:tbl", NS)[1])][: len(drawn)]
    assert drawn == pytest.approx(expected, abs=1.0)  # points


def test_libreoffice_shows_each_chart_picture(laid_out):
    images = poppler("pdfimages", "-list", str(laid_out)).splitlines()[2:]
    assert len(images) == len(CHARTS) and all(line.split()[3] == "1200" for line in images)
