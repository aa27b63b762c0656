"""Make the base .docx files the renderer fills: run once, commit the script and its output.

    .venv/bin/python document_templates/make_docx_bases.py [NAME ...]

A base holds styles, page setup and placeholders. Placeholders are `{{name}}` for a value of the data,
`{{doc.title}}`, `{{doc.version_label}}`, `{{doc.short_hash}}`, `{{doc.created_at}}` for the rendering's
own values, `{{entries.key}}` in a table row that is repeated once per item of the `entries` list, and a
paragraph holding only `{{sections}}` that becomes the consent form's headings and paragraphs. Each
placeholder must sit inside one run, which is why they are written here rather than typed in Word.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Mm, Pt

HERE = Path(__file__).parent
SIGNATURE_LINES = ("Printed name", "Signature", "Date and time (DD-MMM-YYYY hh:mm)")


def _field(paragraph, instruction: str) -> None:
    """A simple field (PAGE, NUMPAGES) that Word computes when it lays out the document."""
    field = OxmlElement("w:fldSimple")
    field.set(qn("w:instr"), instruction)
    run = OxmlElement("w:r")
    text = OxmlElement("w:t")
    text.text = "1"
    run.append(text)
    field.append(run)
    paragraph._p.append(field)


def _document(landscape: bool) -> Document:
    doc = Document()
    normal = doc.styles["Normal"]
    normal.font.name, normal.font.size = "DejaVu Sans", Pt(10)
    section = doc.sections[0]
    section.orientation = WD_ORIENT.LANDSCAPE if landscape else WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = (Mm(297), Mm(210)) if landscape else (Mm(210), Mm(297))
    section.top_margin = section.bottom_margin = Mm(18)
    section.left_margin = section.right_margin = Mm(15)
    footer = section.footer.paragraphs[0]
    footer.style.font.size = Pt(7.5)
    footer.add_run("{{doc.title}} · version {{doc.version_label}} · {{doc.short_hash}} · page ")
    _field(footer, "PAGE")
    footer.add_run(" of ")
    _field(footer, "NUMPAGES")
    props = doc.core_properties
    props.author, props.comments, props.title = "trialcoord", "", ""
    # the renderer sets every date from created_at; a fixed date here keeps the base itself reproducible
    props.created = props.modified = props.last_printed = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return doc


def _signature_block(doc: Document, role: str, note: str = "") -> None:
    doc.add_heading(role, level=3)
    if note:
        doc.add_paragraph(note)
    table = doc.add_table(rows=len(SIGNATURE_LINES), cols=2)
    table.style = "Table Grid"
    for row, label in zip(table.rows, SIGNATURE_LINES):
        row.cells[0].text = label
        row.cells[0].width, row.cells[1].width = Mm(60), Mm(110)


def consent_form() -> Document:
    doc = _document(landscape=False)
    doc.add_paragraph("Informed consent form")
    doc.add_heading("{{study_title}}", level=0)
    doc.add_paragraph("Study {{study_code}} · consent version {{consent_version}} · language {{language}} · "
                      "protocol version {{protocol_version}}")
    doc.add_paragraph("{{sections}}")
    doc.add_heading("Signatures", level=1)
    doc.add_paragraph("Each person signs and dates this form personally. The participant receives a copy of "
                      "the signed form.")
    _signature_block(doc, "Participant")
    _signature_block(doc, "Legally authorised representative",
                     "Only if the participant cannot consent; state the relationship to the participant.")
    _signature_block(doc, "Impartial witness", "Only if the participant or representative cannot read: the "
                     "witness attests the form was read and explained.")
    _signature_block(doc, "Person obtaining consent")
    return doc


def delegation_log() -> Document:
    doc = _document(landscape=True)
    doc.add_paragraph("Delegation log (site signature sheet)")
    doc.add_heading("{{doc.title}}", level=0)
    doc.add_paragraph("Study {{study_code}} · site {{site}} · principal investigator {{investigator}}")
    headings = ("Staff", "Role", "Delegated tasks", "Start", "End", "Initials", "Signature", "PI sign-off")
    keys = ("staff", "role", "tasks", "start", "end", "initials", "", "pi_signoff")
    table = doc.add_table(rows=2, cols=len(headings))
    table.style = "Table Grid"
    for cell, heading in zip(table.rows[0].cells, headings):
        cell.text = heading
        cell.paragraphs[0].runs[0].bold = True
    for cell, key in zip(table.rows[1].cells, keys):
        cell.text = "{{entries.%s}}" % key if key else ""
    doc.add_heading("Principal investigator", level=1)
    doc.add_paragraph("I have delegated the tasks above to staff who are qualified by education, training and "
                      "experience to perform them.")
    _signature_block(doc, "Principal investigator")
    return doc


def _table(doc: Document, headings: tuple[str, ...], keys: tuple[str, ...], rows: str) -> None:
    """A header row and one placeholder row repeated once per item of `rows`."""
    table = doc.add_table(rows=2, cols=len(headings))
    table.style = "Table Grid"
    for cell, heading in zip(table.rows[0].cells, headings):
        cell.text = heading
        cell.paragraphs[0].runs[0].bold = True
    for cell, key in zip(table.rows[1].cells, keys):
        cell.text = "{{%s.%s}}" % (rows, key)


def deviation_log() -> Document:
    doc = _document(landscape=True)
    doc.add_paragraph("Protocol deviation log")
    doc.add_heading("{{doc.title}}", level=0)
    doc.add_paragraph("Study {{study_code}} · site {{site}} · as of {{as_of}}")
    _table(doc, ("Measure", "Count"), ("label", "value"), "summary")
    doc.add_paragraph("{{charts}}")  # the charts as pictures, or an empty paragraph keeping the tables apart
    _table(doc, ("ID", "Participant", "Visit", "Category", "Description", "Occurred", "Identified", "Classification",
                 "Status"),
           ("id", "participant", "visit", "category", "description", "occurred", "identified", "classification",
            "status"), "entries")
    return doc


def monitoring_visit_report() -> Document:
    doc = _document(landscape=True)
    doc.add_paragraph("Monitoring visit report")
    doc.add_heading("{{doc.title}}", level=0)
    doc.add_paragraph("Study {{study_code}} · site {{site}} · visit date {{visit_date}} · prepared by {{prepared_by}}")
    doc.add_heading("Site status", level=1)
    _table(doc, ("Measure", "Value"), ("label", "value"), "summary")
    doc.add_paragraph("{{charts}}")
    doc.add_heading("Open protocol deviations", level=1)
    _table(doc, ("ID", "Participant", "Visit", "Category", "Description", "Identified", "Age (days)",
                 "Classification", "Status"),
           ("id", "participant", "visit", "category", "description", "identified", "age_days", "classification",
            "status"), "entries")
    doc.add_heading("Corrective and preventive actions", level=1)
    _table(doc, ("ID", "Title", "State", "Owner", "Due", "Deviations"),
           ("id", "title", "state", "owner", "due_on", "deviations"), "capas")
    doc.add_heading("Monitor", level=1)
    _signature_block(doc, "Monitor")
    return doc


BASES = {"consent_form": consent_form, "delegation_log": delegation_log, "deviation_log": deviation_log,
         "monitoring_visit_report": monitoring_visit_report}

if __name__ == "__main__":
    import sys

    # Named bases only (all without arguments): saving one again changes its bytes, so leave the others be.
    for name in sys.argv[1:] or BASES:
        BASES[name]().save(HERE / f"{name}.docx")
        print(f"wrote {HERE / name}.docx")
