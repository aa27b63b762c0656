"""Every PDF trialcoord renders draws Latin, Greek, Cyrillic, Japanese and Arabic text from the shipped Noto fonts,
checked with tools of their own: poppler's pdffonts (each font embedded, each a shipped one) and pdftotext (the
text comes back), and fontTools reading the embedded font programs (each character has a glyph with an outline).
A character no shipped font has is refused, naming it and the field, never drawn as an empty box."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import queue
import re
import subprocess
import sys
import textwrap
import unicodedata
from collections import Counter
from datetime import date

import pikepdf
import pytest
from fontTools.pens.boundsPen import BoundsPen
from fontTools.ttLib import TTFont

from tests.conftest import add_user, signed_in
from tests.integration.test_amendments import DEMO
from tests.integration.test_amendments import demo as demo  # the fixture, for the web test
from tests.integration.test_compliance_report import big_figures
from tests.unit.test_audit_report import META as AUDIT_META
from tests.unit.test_audit_report import entry
from tests.unit.test_document_rendering import DATA, META
from trialcoord.audit.report import audit_pdf
from trialcoord.exports.report import ReportContext, render_report
from trialcoord.exports.rules.scope import Scope
from trialcoord.kernel.problems import InvalidInput, NotConfigured
from trialcoord.kernel.render import fonts, job_worker
from trialcoord.kernel.render.job_worker import render_in_worker
from trialcoord.kernel.render.pdf_documents import render_pdf
from trialcoord.kernel.render.templates import TEMPLATES
from trialcoord.kernel.signing_keys import SignedCheckpoint

SAMPLE = "Latin Ελληνικά Кириллица 日本語の同意書 مرحبا بالعالم"
HIEROGLYPH = "\U00013000"  # EGYPTIAN HIEROGLYPH A001: in none of the shipped fonts (checked below)
# Each template's field that shows the sample, where pdftotext finds it in one piece.
FIELD = {
    "consent_form": "study_title",
    "delegation_log": "investigator",
    "training_log": "site",
    "deviation_log": "site",
    "monitoring_visit_report": "prepared_by",
    "site_summary": "study_code",
    "amendment_impact": "study_code",
    "binder_cover": "study_title",
    "signature_page": "document",
    "binder_checklist": "study_code",
    "binder_index": "study_code",
}


def _compliance_report(text: str) -> bytes:
    checkpoint = SignedCheckpoint(10, "ab" * 32, "2024-06-01T12:00:00.000000Z", "cd" * 16, "ef" * 64)
    context = ReportContext(
        Scope("S-1", date(2024, 6, 1)), text, text, "2024-06-01T23:00:00.000000Z", 1, None, {}, checkpoint, False, {}
    )
    return asyncio.run(render_report(context, big_figures(sites=1, visits=2, categories=1), attachments=[]))


@pytest.fixture(scope="module")
def pdfs() -> dict[str, bytes]:
    """Each PDF the product renders, once, with the sample in a field it shows."""
    rendered = {name: render_pdf(name, {**DATA[name], FIELD[name]: SAMPLE}, **META) for name in TEMPLATES}
    rendered["audit trail report"] = audit_pdf([entry(reason=SAMPLE)], **AUDIT_META)
    rendered["compliance report"] = _compliance_report(SAMPLE)
    return rendered


def _squash(text: str) -> str:
    """Text without whitespace and bidi controls: pdftotext splits Arabic words at joins, and marks RTL runs."""
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c) != "Cf")


def _embedded_programs(pdf: bytes) -> dict[str, TTFont]:
    programs = {}
    with pikepdf.open(io.BytesIO(pdf)) as document:
        for obj in document.objects:
            if isinstance(obj, pikepdf.Dictionary) and obj.get("/Type") == "/FontDescriptor":
                program = obj.get("/FontFile2") or obj.get("/FontFile3")
                programs[str(obj.FontName)] = TTFont(io.BytesIO(program.read_bytes()))
    return programs


def _draws(font: TTFont, char: str) -> bool:
    name = font.getBestCmap().get(ord(char))
    if name is None or name == ".notdef":
        return False
    pen = BoundsPen(font.getGlyphSet())
    font.getGlyphSet()[name].draw(pen)
    return pen.bounds is not None  # an outline, not an empty glyph


def _drawn_by_font(pdf: bytes) -> dict[str, set[int]]:
    """The glyph ids each font draws on the pages (2-byte codes of Identity-H), by the font's FontName."""
    drawn: dict[str, set[int]] = {}
    with pikepdf.open(io.BytesIO(pdf)) as document:
        for page in document.pages:
            names = {str(k): str(f.DescendantFonts[0].FontDescriptor.FontName) for k, f in page.Resources.Font.items()}
            current = None
            for operands, operator in pikepdf.parse_content_stream(page):
                if str(operator) == "Tf":
                    current = names[str(operands[0])]
                elif str(operator) in ("Tj", "TJ"):
                    for item in operands[0] if str(operator) == "TJ" else operands:
                        if isinstance(item, pikepdf.String):
                            raw = bytes(item)
                            drawn.setdefault(current, set()).update(
                                int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)
                            )
    return drawn


@pytest.mark.parametrize("name", [*TEMPLATES, "audit trail report", "compliance report"])
def test_every_pdf_embeds_only_the_shipped_fonts_and_draws_every_script(pdfs, name, tmp_path):
    path = tmp_path / "out.pdf"
    path.write_bytes(pdfs[name])
    listing = subprocess.run(["pdffonts", path], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in listing.splitlines()[2:]]
    assert rows and all(row[-5] == "yes" for row in rows), listing  # emb column: every font embedded
    families = {re.sub(r"^[A-Z]{6}\+", "", row[0]) for row in rows}
    assert all(family.startswith("TC-Noto-Sans") for family in families), listing
    for script in ("TC-Noto-Sans-Arabic", "TC-Noto-Sans-CJK"):  # regular or bold, as the field is set
        assert any(family.startswith(script) for family in families), listing

    text = subprocess.run(["pdftotext", "-raw", path, "-"], capture_output=True, text=True, check=True).stdout
    squashed = _squash(text)
    for word in SAMPLE.split():  # pdftotext -raw gives Arabic in visual order: its letters must all be there
        arabic = unicodedata.bidirectional(word[0]) == "AL"
        assert (Counter(word) <= Counter(squashed)) if arabic else (word in squashed), (word, text)

    # The subsets keep a cmap for the characters drawn in their nominal glyph: all but Arabic, which is drawn in
    # contextual forms (checked by the glyphs drawn, below).
    programs = _embedded_programs(pdfs[name])
    undrawn = [
        c
        for c in SAMPLE
        if not c.isspace() and unicodedata.bidirectional(c) != "AL" and not any(_draws(f, c) for f in programs.values())
    ]
    assert undrawn == []
    # Every glyph the pages draw exists in its embedded font (not .notdef, not past its last glyph) and has an
    # outline, spaces apart.
    for font_name, ids in _drawn_by_font(pdfs[name]).items():
        font = programs[font_name]
        glyphs, blank = font.getGlyphSet(), {name for c, name in font.getBestCmap().items() if chr(c).isspace()}
        for gid in ids:
            assert 0 < gid < font["maxp"].numGlyphs, (font_name, gid)
            glyph = font.getGlyphName(gid)
            pen = BoundsPen(glyphs)
            glyphs[glyph].draw(pen)
            assert pen.bounds is not None or glyph in blank, (font_name, glyph)


def test_variable_fonts_are_embedded_as_static_instances_and_bold_is_bold(pdfs):
    """WeasyPrint instances the variable Noto fonts at the weight used: the headings' Bold is a 700 instance
    (fontTools reads the embedded programs), never the variable font nor a regular one. Japanese has no bold."""
    for name, pdf in pdfs.items():
        programs = _embedded_programs(pdf)
        assert not [n for n, font in programs.items() if "fvar" in font], name
        bold = {n: font["OS/2"].usWeightClass for n, font in programs.items() if n.endswith("-Bold") and "CJK" not in n}
        assert bold and set(bold.values()) == {700}, (name, bold)


def _japanese_form(char: str) -> tuple[int, int]:
    """The glyph ids of `char` in the shipped CJK font: its default (Traditional Chinese) form, and the one the
    font's `locl` feature for Japanese (hani script, JAN language system) substitutes, read with fontTools."""
    font = TTFont(fonts.path(fonts.FACES[-1]), lazy=True)
    default = font.getBestCmap()[ord(char)]
    gsub = font["GSUB"].table
    script = next(s.Script for s in gsub.ScriptList.ScriptRecord if s.ScriptTag == "hani")
    japanese = next(r.LangSys for r in script.LangSysRecord if r.LangSysTag == "JAN ")
    for index in japanese.FeatureIndex:
        record = gsub.FeatureList.FeatureRecord[index]
        if record.FeatureTag != "locl":
            continue
        for lookup in (gsub.LookupList.Lookup[i] for i in record.Feature.LookupListIndex):
            for table in lookup.SubTable:
                mapping = getattr(getattr(table, "ExtSubTable", table), "mapping", {})
                if default in mapping:
                    return font.getGlyphID(default), font.getGlyphID(mapping[default])
    raise AssertionError(f"no Japanese form of {char}")


def _drawn_glyph_ids(pdf: bytes) -> set[int]:
    with pikepdf.open(io.BytesIO(pdf)) as document:
        content = b"".join(page.Contents.read_bytes() for page in document.pages)
    return {int(run[i : i + 4], 16) for run in re.findall(rb"<([0-9a-f]+)>", content) for i in range(0, len(run), 4)}


def test_japanese_text_takes_the_japanese_forms_of_the_cjk_font():
    """The consent form in lang="ja" draws 直 in its Japanese form (the font's `locl`), in zh-Hant the other one:
    the embedded subsets keep the original glyph ids, so the ids drawn are the shipped font's."""
    chinese_form, japanese_form = _japanese_form("直")
    assert chinese_form != japanese_form
    data = {**DATA["consent_form"], "study_title": "直"}
    japanese, chinese = (render_pdf("consent_form", {**data, "language": lang}, **META) for lang in ("ja", "zh-Hant"))
    assert japanese_form in _drawn_glyph_ids(japanese) and chinese_form not in _drawn_glyph_ids(japanese)
    assert chinese_form in _drawn_glyph_ids(chinese)


def _title_x(pdf: bytes, word: str, tmp_path) -> float:
    (tmp_path / "x.pdf").write_bytes(pdf)
    html = subprocess.run(["pdftotext", "-bbox", tmp_path / "x.pdf", "-"], capture_output=True, text=True).stdout
    return float(re.search(rf'<word xMin="([0-9.]+)"[^>]*>{word}</word>', html).group(1))


def test_an_arabic_consent_form_is_laid_out_right_to_left(tmp_path):
    """lang="ar" gives dir="rtl": the title starts at the right margin (pdftotext's word boxes), not the left."""
    data = {**DATA["consent_form"], "study_title": "Consentement"}
    arabic = _title_x(render_pdf("consent_form", {**data, "language": "ar"}, **META), "Consentement", tmp_path)
    english = _title_x(render_pdf("consent_form", {**data, "language": "en"}, **META), "Consentement", tmp_path)
    assert english < 60 < 400 < arabic  # A4 is 595 pt wide, with 15 mm (43 pt) margins
    assert fonts.direction("ar-EG") == "rtl" and fonts.direction("ja") == "ltr"


def test_no_shipped_font_has_the_refused_character():
    for face in fonts.FACES:
        with TTFont(fonts.path(face), lazy=True) as font:
            assert ord(HIEROGLYPH) not in font.getBestCmap()


def test_a_character_no_shipped_font_has_is_refused_naming_it_and_its_field():
    data = {**DATA["consent_form"], "sections": [{"heading": "Ok", "paragraphs": ["fine", f"bad {HIEROGLYPH}"]}]}
    with pytest.raises(InvalidInput) as refused:
        render_pdf("consent_form", data, **META)
    [problem] = refused.value.problems
    assert problem.field == "sections[0].paragraphs[1]"
    assert "U+13000" in problem.message and HIEROGLYPH in problem.message and "consent_form" in problem.message


def test_the_reports_refuse_it_too_naming_the_report():
    with pytest.raises(InvalidInput, match=r"U\+13000.*audit trail report"):
        audit_pdf([entry(reason=f"x {HIEROGLYPH}")], **AUDIT_META)
    with pytest.raises(InvalidInput, match=r"U\+13000.*compliance report"):
        _compliance_report(f"S-1 {HIEROGLYPH}")


def test_a_render_job_reports_the_refusal_as_invalid_input_not_as_a_failure(monkeypatch):
    """The web's render jobs show "invalid" outcomes as the data's fault, with the message; never a 500."""
    monkeypatch.setattr(job_worker, "_worker_queue", queue.SimpleQueue())
    data = {**DATA["signature_page"], "document": f"ICF {HIEROGLYPH}"}
    outcome, message, trace = render_in_worker("job", "pdf", "signature_page", data, dict(META), None)
    assert (outcome, trace) == ("invalid", None)
    assert message.startswith("document: ") and "U+13000" in message


def test_a_font_that_is_not_shipped_is_refused_even_when_it_has_the_glyph(tmp_path):
    """A system or template font would make the PDF depend on the machine: its characters count as missing."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    from trialcoord.kernel.render.pdf import reproducible_pdf

    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder([".notdef", "x"])
    builder.setupCharacterMap({ord("x"): "x"})
    pen = TTGlyphPen(None)
    pen.moveTo((0, 0)), pen.lineTo((0, 500)), pen.lineTo((500, 500)), pen.closePath()
    builder.setupGlyf({".notdef": pen.glyph(), "x": pen.glyph()})
    builder.setupHorizontalMetrics({".notdef": (500, 0), "x": (500, 0)})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Other", "styleName": "Regular"})
    builder.setupOS2(), builder.setupPost()
    builder.save(tmp_path / "other.ttf")
    html = f'<style>@font-face {{ font-family: Other; src: url("{(tmp_path / "other.ttf").as_uri()}") }}</style>'
    with pytest.raises(InvalidInput, match=r"U\+0078 'x'.*test page"):
        reproducible_pdf(
            f'{html}<p style="font-family: Other">x</p>', source="test page", created_at=META["created_at"]
        )


def test_rendering_needs_no_system_font(tmp_path):
    """With fontconfig given an empty configuration (no font folder at all), the Japanese consent form renders to
    the same bytes as with the machine's fonts: nothing in it comes from them."""
    (tmp_path / "fonts.conf").write_text('<?xml version="1.0"?><fontconfig><cachedir>cache</cachedir></fontconfig>')
    script = textwrap.dedent(
        f"""
        import sys
        from tests.unit.test_document_rendering import DATA, META
        from trialcoord.kernel.render.pdf_documents import render_pdf
        data = {{**DATA["consent_form"], "language": "ja", "study_title": {SAMPLE!r}}}
        sys.stdout.buffer.write(render_pdf("consent_form", data, **META))
        """
    )
    env = {**os.environ, "FONTCONFIG_FILE": str(tmp_path / "fonts.conf"), "FONTCONFIG_PATH": str(tmp_path)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    isolated = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env, cwd=root, check=True).stdout
    here = render_pdf("consent_form", {**DATA["consent_form"], "language": "ja", "study_title": SAMPLE}, **META)
    assert isolated == here


def test_the_same_japanese_form_gives_the_same_bytes_a_second_apart():
    """The CJK font is embedded as OpenType/CFF (FontFile3): its dates must follow created_at like the others'."""
    import time_machine

    data = {**DATA["consent_form"], "language": "ja", "study_title": SAMPLE}
    with time_machine.travel("2030-01-01T00:00:00Z", tick=False):
        first = render_pdf("consent_form", data, **META)
    with time_machine.travel("2031-06-01T12:34:56Z", tick=False):
        second = render_pdf("consent_form", data, **META)
    assert first == second


def test_a_font_package_that_is_not_installed_is_named_with_its_install_command():
    face = dataclasses.replace(fonts.FACES[0], module="no_such_font_package")
    with pytest.raises(NotConfigured, match=r"fontpkg-noto-sans is not installed \(pip install fontpkg-noto-sans\)"):
        fonts.path(face)


async def test_the_web_answers_a_pdf_with_a_character_no_font_has_as_bad_input(demo, anonymous):
    """An impact PDF of a protocol whose new visit is named with a hieroglyph: 4xx naming it and the field."""
    await add_user("mona", ("monitor", demo, None))
    mona = await signed_in(anonymous, "mona")
    text = (DEMO / "2.0.yaml").read_text(encoding="utf-8").replace('version: "2.0"', 'version: "2.1"')
    text = text.replace("Week 16 (off-treatment", f"Week 16 {HIEROGLYPH} (")
    response = await mona.post(
        f"/api/studies/{demo}/protocol-impact",
        params={"format": "pdf", "effective": "2026-11-01"},
        content=text.encode(),
        headers={"content-type": "application/yaml"},
    )
    assert response.status_code in (400, 422), response.text
    assert "U+13000" in response.text and "differences[" in response.text and "amendment_impact" in response.text
