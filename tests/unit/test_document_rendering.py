"""Documents from the project's templates: PDF/A-3b carrying their data, byte-stable DOCX, a cache, clear errors."""

import dataclasses
import hashlib
import importlib.metadata
import io
import json
import shutil
import zipfile

import docx
import pikepdf
import pytest
import time_machine

from tests.unit.test_audit_report import pdf_text
from trialcoord.documents.rules.tmf import artifact
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.render.cache import RenderCache
from trialcoord.kernel.render.document_data import canonical_json
from trialcoord.kernel.render.docx_documents import render_docx
from trialcoord.kernel.render.pdf_documents import render_pdf
from trialcoord.kernel.render.templates import TEMPLATE_DIR, TEMPLATES

AT = "2026-11-27T09:30:00.000000Z"
META = dict(created_at=AT, title="Site 101 document", version_label="v2.1")
SECTIONS = [
    {"heading": "Why is this study being done?", "paragraphs": ["To learn whether X helps.", "It may not."]},
    {"heading": "What happens to my data?", "paragraphs": ["It is pseudonymised – Daten bleiben hier."]},
]
DATA = {
    "consent_form": {
        "study_code": "ABC-123",
        "study_title": "A study of <b>things</b>",
        "consent_version": "3.0",
        "language": "de",
        "protocol_version": "4.1",
        "site": "101 Berlin",
        "sections": SECTIONS,
    },
    "delegation_log": {
        "study_code": "ABC-123",
        "site": "101 Berlin",
        "investigator": "Dr. Anna Schmidt",
        "entries": [
            {
                "staff": "Maria Lopez",
                "role": "Study coordinator",
                "tasks": ["Consent", "CRF"],
                "start": "2026-01-05",
                "initials": "ML",
                "pi_signoff": "AS 2026-01-05",
            },
            {
                "staff": "Tom Berg",
                "role": "Sub-investigator",
                "tasks": "Eligibility",
                "start": "2026-02-01",
                "end": "2026-10-31",
                "initials": "TB",
            },
        ],
    },
    "training_log": {
        "study_code": "ABC-123",
        "site": "101 Berlin",
        "entries": [
            {
                "staff": "Maria Lopez",
                "role": "Study coordinator",
                "training": "Protocol v4.1",
                "date": "2026-01-04",
                "trainer": "Dr. Anna Schmidt",
                "method": "in person",
            }
        ],
    },
    "deviation_log": {
        "study_code": "ABC-123",
        "site": "101 Berlin",
        "entries": [
            {
                "id": "DV-007",
                "participant": "101-003",
                "visit": "V3",
                "category": "Visit schedule",
                "description": "Visit 4 days out of window",
                "identified": "2026-03-02",
                "classification": "Non-important",
                "status": "closed",
            }
        ],
    },
    "binder_cover": {
        "study_code": "ABC-123",
        "study_title": "A study of things",
        "site_code": "101",
        "site_name": "Charité Berlin",
        "investigator": "Dr. Anna Schmidt",
        "sponsor": "Acme Pharma",
    },
    "binder_index": {
        "study_code": "ABC-123",
        "site_code": "101",
        "entries": [
            {
                "zone": "05",
                "section": "02",
                "artifact": "18",
                "unique_id": "101",
                "document": "Delegation log",
                "version": "2",
                "status": "draft",
                "effective": None,
            }
        ],
    },
    "binder_checklist": {
        "study_code": "ABC-123",
        "site": "101",
        "as_of": "2026-11-27",
        "counts": {"missing": 1, "expired": 0, "expiring": 1},
        "items": [
            {
                "state": "missing",
                "artifact": "05.02.08 Form FDA 1572",
                "for": "site",
                "document": None,
                "expires_on": None,
            },
            {
                "state": "expiring",
                "artifact": "05.02.07 Staff qualification",
                "for": "ivan",
                "document": "Licence 2026",
                "expires_on": "2027-01-10",
            },
        ],
    },
    "monitoring_visit_report": {
        "study_code": "ABC-123",
        "site": "101 Berlin",
        "visit_date": "2026-11-27",
        "prepared_by": "Mona Monitor (mona)",
        "summary": [{"label": "Visits done / due", "value": "8 / 10"}],
        "entries": [
            {
                "id": "7",
                "participant": "101-003",
                "visit": "V3",
                "category": "visit schedule",
                "description": "4 days late",
                "identified": "2026-03-02",
                "age_days": 12,
                "classification": "non important",
                "status": "detected",
            }
        ],
        "capas": [
            {"id": 1, "title": "Reminder calls", "state": "open", "owner": "cora", "due_on": None, "deviations": "7"}
        ],
        "charts": [{"kind": "bars", "title": "Deviations by rule", "items": [["visit_late", 1]]}],
    },
    "site_summary": {
        "study_code": "ABC-123",
        "as_of": "2026-11-27",
        "reconsent": [],
        "documents": [],
        "total": {"participants": 3, "active": 2, "ended": 1},
        "sites": [
            {
                "site": "101",
                "participants": 3,
                "active": 2,
                "ended": 1,
                "visits_due": 10,
                "visits_done": 8,
                "completion_rate": "80.0%",
                "on_time_rate": "75.0%",
                "open_deviations": 1,
                "ages": {"0-30": 1, "31-60": 0, "61-90": 0, ">90": 0},
                "reconsent": 0,
                "expiring": 0,
            }
        ],
    },
    "amendment_impact": {
        "study_code": "ABC-123",
        "version": "2.0",
        "effective": "2026-12-01",
        "as_of": "2026-11-27",
        "site": "all sites",
        "skipped": 1,
        "more_sites": 0,
        "more_differences": 0,
        "totals": {
            "participants": 3,
            "affected": 2,
            "visits_moving": 1,
            "visits_appearing": 2,
            "visits_disappearing": 0,
            "deviations_resolved": 1,
            "deviations_created": 0,
            "reconsent_required": 2,
            "reconsent_unknown": 0,
        },
        "sites": [
            {
                "site": "101",
                "participants": 3,
                "affected": 2,
                "visits_moving": 1,
                "visits_appearing": 2,
                "visits_disappearing": 0,
                "deviations_resolved": 1,
                "deviations_created": 0,
                "reconsent_required": 2,
            }
        ],
        "differences": [{"version": "1.0", "line": "V7 Week 16 – added, 4w from V6"}],
    },
    "signature_page": {
        "study_code": "ABC-123",
        "site_code": "101",
        "document": "ICF English",
        "version": "2.0",
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
    },
}
DOCX = ("consent_form", "delegation_log", "deviation_log", "monitoring_visit_report")


@pytest.fixture(scope="module")
def renders():
    """Each template rendered once (about 0.1 s a page), at a wall-clock time unrelated to created_at."""
    with time_machine.travel("2027-01-01T00:00:00Z", tick=False):
        pdfs = {name: render_pdf(name, DATA[name], **META) for name in TEMPLATES}
        docxs = {name: render_docx(name, DATA[name], **META) for name in DOCX}
    return pdfs, docxs


def test_templates_name_their_kinds_and_tmf_artifacts():
    assert {name: (t.kinds, t.unique_id) for name, t in TEMPLATES.items()} == {
        "consent_form": (("pdf", "docx"), "040"),
        "delegation_log": (("pdf", "docx"), "101"),
        "training_log": (("pdf",), "104"),
        "deviation_log": (("pdf", "docx"), "110"),
        "monitoring_visit_report": (("pdf", "docx"), "107"),
        "site_summary": (("pdf",), None),
        "binder_cover": (("pdf",), None),
        "binder_index": (("pdf",), None),
        "signature_page": (("pdf",), None),
        "binder_checklist": (("pdf",), None),
        "amendment_impact": (("pdf",), None),
    }
    assert set(DATA) == set(TEMPLATES)
    # the binder files each rendering under the domain's artifact table: the two must agree
    numbers = {t.unique_id: artifact(t.unique_id).number for t in TEMPLATES.values() if t.unique_id}
    assert numbers == {"040": "02.02.03", "101": "05.02.18", "104": "05.03.03", "107": "05.04.03", "110": "05.04.06"}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_pdf_is_pdfa3b_dated_from_created_at_and_carries_its_data(renders, name):
    data = renders[0][name]
    assert data.startswith(b"%PDF-")
    with pikepdf.open(io.BytesIO(data)) as pdf:  # objects read from a Pdf need it alive
        meta = pdf.open_metadata()
        assert (meta["pdfaid:part"], meta["pdfaid:conformance"]) == ("3", "B")
        attached = pdf.attachments["data.json"]
        assert attached.obj.AFRelationship == "/Data"
        assert attached.get_file().read_bytes() == canonical_json(DATA[name])
        assert pdf.docinfo.CreationDate == pdf.docinfo.ModDate == "D:20261127093000Z"
        assert pdf.docinfo.Title == "Site 101 document"
        assert round(min(pdf.pages[0].MediaBox[2:])) == 595 and round(max(pdf.pages[0].MediaBox[2:])) == 842  # A4
    short = "data sha256:" + hashlib.sha256(canonical_json(DATA[name])).hexdigest()[:12]
    assert f"Site 101 document · version v2.1 · {short} page 1 of 1" in pdf_text(data)


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": "Ü", "a": [1, None]}) == '{"a":[1,null],"b":"Ü"}'.encode()


def test_consent_form_shows_study_sections_and_all_four_signature_blocks(renders):
    text = pdf_text(renders[0]["consent_form"])
    for expected in (
        "Study ABC-123",
        "Consent version 3.0",
        "Language de",
        "Protocol version 4.1",
        "Site 101 Berlin",
        "Why is this study being done? To learn whether X helps. It may not.",
        "What happens to my data? It is pseudonymised – Daten bleiben hier.",
    ):
        assert expected in text
    lines = "Printed name Signature Date and time (DD-MMM-YYYY hh:mm)"
    for role in ("Participant", "Legally authorised representative", "Impartial witness", "Person obtaining consent"):
        assert role in text
    assert text.count(lines) == 4


def test_logs_binder_cover_and_index_show_their_rows(renders):
    pdfs = renders[0]
    assert (
        "1 Maria Lopez Study coordinator Consent, CRF 2026-01-05 ML AS 2026-01-05 "
        "2 Tom Berg Sub-investigator Eligibility 2026-02-01 2026-10-31 TB"
    ) in pdf_text(pdfs["delegation_log"])
    assert "Principal investigator Dr. Anna Schmidt" in pdf_text(pdfs["delegation_log"])
    assert "Maria Lopez Study coordinator Protocol v4.1 2026-01-04 Dr. Anna Schmidt (in person)" in pdf_text(
        pdfs["training_log"]
    )
    assert "DV-007 101-003 V3 Visit schedule Visit 4 days out of window 2026-03-02 Non-important closed" in pdf_text(
        pdfs["deviation_log"]
    )
    assert "Site 101 – Charité Berlin" in pdf_text(pdfs["binder_cover"])
    assert "05.02.18 101 Delegation log 2 draft" in pdf_text(pdfs["binder_index"])
    assert "missing 05.02.08 Form FDA 1572 site" in pdf_text(pdfs["binder_checklist"])
    assert "expiring 05.02.07 Staff qualification ivan Licence 2026 2027-01-10" in pdf_text(pdfs["binder_checklist"])
    page = pdf_text(pdfs["signature_page"]).replace("Europe/ Berlin", "Europe/Berlin")  # wrapped at the slash
    assert "Dr. Anna Schmidt (aschmidt) approval 2026-11-27 10:30:00 CET (Europe/Berlin)" in page
    assert "ab" * 32 in page.replace(" ", "")


def test_a_docx_gets_its_signature_page_appended_byte_stably(renders):
    from trialcoord.kernel.render.docx_documents import docx_with_signature_page

    base = renders[1]["consent_form"]
    once = docx_with_signature_page(base, DATA["signature_page"], created_at="2026-11-27T09:30:00.000000Z")
    assert once == docx_with_signature_page(base, DATA["signature_page"], created_at="2026-11-27T09:30:00.000000Z")
    with zipfile.ZipFile(io.BytesIO(once)) as archive:
        body = archive.read("word/document.xml").decode()
    assert "Signature page" in body and "ab" * 32 in body and "CET (Europe/Berlin)" in body


def test_markup_in_data_is_text_not_markup(renders):
    assert "A study of <b>things</b>" in pdf_text(renders[0]["consent_form"])


def test_pdf_and_docx_are_byte_identical_whenever_rendered(renders):
    pdfs, docxs = renders
    # Seconds, hours and years from the first render: any date taken from the clock would show.
    with time_machine.travel("2031-06-15T12:34:57Z", tick=False):
        assert render_pdf("consent_form", DATA["consent_form"], **META) == pdfs["consent_form"]
        assert render_pdf("delegation_log", DATA["delegation_log"], **META) == pdfs["delegation_log"]
        for name in DOCX:
            assert render_docx(name, DATA[name], **META) == docxs[name]
    later = META | {"created_at": "2026-11-27T09:30:02Z"}
    assert render_docx("delegation_log", DATA["delegation_log"], **later) != docxs["delegation_log"]


def test_docx_holds_the_filled_values_and_fixed_dates(renders):
    consent = docx.Document(io.BytesIO(renders[1]["consent_form"]))
    text = [p.text for p in consent.paragraphs]
    assert "A study of <b>things</b>" in text and "Why is this study being done?" in text
    assert "It is pseudonymised – Daten bleiben hier." in text and "{{sections}}" not in text
    assert "Study ABC-123 · consent version 3.0 · language de · protocol version 4.1" in text
    assert len(consent.tables) == 4  # the four signature blocks
    assert consent.sections[0].footer.paragraphs[0].text.startswith("Site 101 document · version v2.1 · data sha256:")
    log = docx.Document(io.BytesIO(renders[1]["delegation_log"]))
    assert [[c.text for c in row.cells] for row in log.tables[0].rows][1:] == [
        ["Maria Lopez", "Study coordinator", "Consent, CRF", "2026-01-05", "", "ML", "", "AS 2026-01-05"],
        ["Tom Berg", "Sub-investigator", "Eligibility", "2026-02-01", "2026-10-31", "TB", "", ""],
    ]
    props = log.core_properties
    assert props.created == props.modified == props.last_printed
    assert props.created.isoformat() == "2026-11-27T09:30:00+00:00"
    assert props.revision == 1 and props.title == "Site 101 document"
    with zipfile.ZipFile(io.BytesIO(renders[1]["delegation_log"])) as archive:
        assert b"lastModifiedBy" not in archive.read("docProps/core.xml")
        assert {info.date_time for info in archive.infolist()} == {(2026, 11, 27, 9, 30, 0)}


def problems(call) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as raised:
        call()
    return [(p.field, p.message) for p in raised.value.problems]


def test_an_unknown_template_is_named_with_the_known_ones():
    [(field, message)] = problems(lambda: render_pdf("consent", {}, **META))
    assert field == "template" and "consent_form" in message and "binder_index" in message
    [(field, message)] = problems(lambda: render_docx("training_log", DATA["training_log"], **META))
    assert field == "template" and message.endswith(
        "known: consent_form, delegation_log, deviation_log, monitoring_visit_report"
    )


def test_every_missing_field_is_named_by_its_path():
    consent = {k: v for k, v in DATA["consent_form"].items() if k not in ("study_code", "language")}
    consent["sections"] = [{"heading": "No paragraphs"}]
    expected = {"study_code", "language", "sections[0].paragraphs"}
    assert {field for field, _ in problems(lambda: render_pdf("consent_form", consent, **META))} == expected
    assert {field for field, _ in problems(lambda: render_docx("consent_form", consent, **META))} == expected
    log = DATA["delegation_log"] | {"entries": "Maria"}
    assert problems(lambda: render_pdf("delegation_log", log, **META)) == [("entries", "must be a list of objects")]
    consent = DATA["consent_form"] | {"sections": [{"heading": "One", "paragraphs": "not a list"}]}
    assert problems(lambda: render_pdf("consent_form", consent, **META)) == [
        ("sections[0].paragraphs", "must be a list")
    ]


def test_a_name_the_template_uses_beyond_its_schema_is_still_named(monkeypatch):
    cover = TEMPLATES["binder_cover"]
    monkeypatch.setitem(
        TEMPLATES, "binder_cover", dataclasses.replace(cover, fields=tuple(f for f in cover.fields if f != "sponsor"))
    )
    data = {k: v for k, v in DATA["binder_cover"].items() if k != "sponsor"}
    [(field, _)] = problems(lambda: render_pdf("binder_cover", data, **META))
    assert field == "sponsor"


def test_data_that_is_not_json_and_a_bad_instant_are_named():
    [(field, _)] = problems(lambda: render_pdf("binder_cover", DATA["binder_cover"] | {"sponsor": {1, 2}}, **META))
    assert field == "data"
    [(field, _)] = problems(
        lambda: render_docx("delegation_log", DATA["delegation_log"], **META | {"created_at": "yesterday"})
    )
    assert field == "created_at"


def test_the_cache_renders_once_per_input_and_writes_atomically(tmp_path, monkeypatch):
    calls = []
    real = render_docx
    monkeypatch.setattr(
        "trialcoord.kernel.render.cache.render_docx", lambda *a, **k: calls.append(a[0]) or real(*a, **k)
    )
    cache = RenderCache(tmp_path / "cache")
    first = cache.render("docx", "delegation_log", DATA["delegation_log"], **META)
    second = cache.render("docx", "delegation_log", json.loads(json.dumps(DATA["delegation_log"])), **META)
    assert first == second and calls == ["delegation_log"]
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".docx"]  # no temp file left behind
    cache.render("docx", "delegation_log", DATA["delegation_log"], **META | {"version_label": "v2.2"})
    assert len(calls) == 2


def test_every_input_that_shapes_the_bytes_changes_the_key(tmp_path, monkeypatch):
    cache = RenderCache(tmp_path)
    key = lambda kind="pdf", name="delegation_log", data=DATA["delegation_log"], **meta: cache.key(  # noqa: E731
        kind, name, data, **META | meta
    )
    keys = {
        key(),
        key(kind="docx"),
        key(data=DATA["delegation_log"] | {"site": "102"}),
        key(created_at="2026-11-27T09:30:01Z"),
        key(title="Other"),
        key(version_label="v3"),
    }
    assert len(keys) == 6 and key() == key(data=dict(reversed(DATA["delegation_log"].items())))
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, copy)
    monkeypatch.setattr("trialcoord.kernel.render.cache.TEMPLATE_DIR", copy)
    assert key() in keys
    (copy / "_document.css").write_text((copy / "_document.css").read_text() + "\n/* changed */\n")
    assert key() not in keys
    before, version = key(), importlib.metadata.version
    monkeypatch.setattr(
        "importlib.metadata.version", lambda name: "9.9" if name == "fontpkg-noto-sans" else version(name)
    )
    assert key() != before  # a font upgrade may change the glyphs and the layout


def test_the_cache_drops_the_least_recently_used_beyond_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr("trialcoord.kernel.render.cache.render_pdf", lambda name, data, **meta: b"%PDF-" + b"x" * 1000)
    cache = RenderCache(tmp_path, max_bytes=2500)
    for label in ("a", "b", "c"):
        cache.render("pdf", "binder_cover", DATA["binder_cover"], **META | {"version_label": label})
    assert len(list(tmp_path.iterdir())) == 2
