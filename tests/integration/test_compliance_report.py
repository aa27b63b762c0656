"""The sponsor package's compliance report on the demo study, on both engines: PDF/A-3b with its fonts embedded,
the datasets attached byte for byte with the report's figures, each once in /AF; deviations per site equal to
what DV and DM say; no personal value of the demo anywhere in it; no arm for the blinded study; safe-harbor
says so on page 1 and keeps no date of a participant's event; the same inputs give the same bytes. A study the
size of issue 14's benchmark stays under 40 pages (its figures fed in directly)."""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from datetime import date, timedelta

import pikepdf
import pytest

from trialcoord.demo import demo
from trialcoord.deviations import queue
from trialcoord.exports import report_figures
from trialcoord.exports.report import (
    FIGURES_FILE,
    PAGE_BUDGET,
    SITE_SECTIONS,
    ReportContext,
    compliance_report,
    deviations_per_site,
    figures_document,
    render_report,
    report_html,
    single_associated_files,
)
from trialcoord.exports.report import (
    report_figures as figures_of,
)
from trialcoord.exports.rules.scope import Privacy, Scope
from trialcoord.exports.rules.sdtm import Variable, dataset
from trialcoord.exports.transport import csv_bytes, xpt_bytes
from trialcoord.kernel import audit_log
from trialcoord.kernel.render.fonts import css as fonts_css
from trialcoord.kernel.render.pdf import instant, reproducible_pdf
from trialcoord.kernel.signing_keys import SignedCheckpoint, generate_key
from trialcoord.scheduling import participants, visits

pytestmark = pytest.mark.anyio
TODAY = date.today()  # the demo is dated from it; its protocol versions from fixed days
AT = f"{TODAY.isoformat()}T23:00:00.000000Z"
STUDY = "DEMO-001"


async def demo_datasets():
    """DM and DV of the demo study, as the package would carry them (enough for the report: its subjects, their
    sites, one DV row per deviation of a participant)."""
    people = await participants.list_participants(STUDY)
    dm = dataset(
        "DM",
        "Demographics",
        [
            Variable("STUDYID", "Study Identifier"),
            Variable("USUBJID", "Unique Subject Identifier"),
            Variable("SITEID", "Study Site Identifier"),
        ],
        [{"STUDYID": STUDY, "USUBJID": f"{STUDY}-{p.subject_id}", "SITEID": p.site} for p in people],
    )
    rows, _ = await queue.listing(STUDY)
    dv = dataset(
        "DV",
        "Protocol Deviations",
        [
            Variable("STUDYID", "Study Identifier"),
            Variable("USUBJID", "Unique Subject Identifier"),
            Variable("DVTERM", "Protocol Deviation Term"),
        ],
        [
            {"STUDYID": STUDY, "USUBJID": f"{STUDY}-{r.participant}", "DVTERM": r.dvdecod or r.category}
            for r in rows
            if r.participant
        ],
    )
    return dm, dv, Counter(r.site for r in rows if r.participant)


@pytest.fixture
async def loaded(db):
    assert await demo.load_demo(TODAY) is True


async def render(privacy=Privacy.CODED, arms_shown=False, progress=None):
    """The demo's report as of TODAY: (pdf, a function rendering it again from the same inputs, its context,
    its attachments, (DM, DV, deviations of participants per site))."""
    dm, dv, expected = await demo_datasets()
    at = instant(AT)
    attachments = [
        ("dm.xpt", xpt_bytes(dm, at), "DM as SAS transport v5"),
        ("dm.csv", csv_bytes(dm), "DM as CSV"),
        ("dv.xpt", xpt_bytes(dv, at), "DV as SAS transport v5"),
        ("dv.csv", csv_bytes(dv), "DV as CSV"),
    ]
    context = ReportContext(
        scope=Scope(STUDY, TODAY, privacy=privacy),
        title=STUDY,
        protocol="DEMO-001 version 2.0",
        generated_at=AT,
        transfer=2,
        previous_transfer=1,
        dv_changes={"created": 3, "changed": 1, "closed": 0},
        checkpoint=await audit_log.checkpoint(generate_key()),
        arms_shown=arms_shown,
        withheld={"deviations without a participant": 0},
    )

    async def again(progress=None) -> bytes:
        return await compliance_report(context, [dm, dv], attachments=attachments, progress=progress)

    return await again(progress), again, context, attachments, (dm, dv, expected)


def drawn_text(data: bytes, pages: slice = slice(None)) -> str:
    """The text of the pages (and of the form XObjects WeasyPrint draws inline SVG into), through each font's
    ToUnicode map (as in test_deviation_reports)."""
    chunks: list[str] = []

    def walk(content, resources) -> None:
        maps = {}
        for name, font in (resources.get("/Font") or {}).items():
            cmap = font.ToUnicode.read_bytes().decode()
            pairs = re.findall(r"<([0-9a-f]+)>\s*<([0-9a-f]+)>", cmap.split("endcodespacerange")[1])
            maps[name] = {bytes.fromhex(code): bytes.fromhex(text).decode("utf-16-be") for code, text in pairs}
        glyphs: dict = {}
        for operands, operator in pikepdf.parse_content_stream(content):
            if str(operator) == "Tf":
                glyphs = maps.get(str(operands[0]), {})
            elif str(operator) == "TJ":
                raw = b"".join(bytes(item) for item in operands[0] if isinstance(item, pikepdf.String))
                chunks.append("".join(glyphs.get(raw[i : i + 2], "") for i in range(0, len(raw), 2)))
        for form in (resources.get("/XObject") or {}).values():
            if form.get("/Subtype") == "/Form":
                walk(form, form.get("/Resources") or resources)

    with pikepdf.open(io.BytesIO(data)) as pdf:
        for page in list(pdf.pages)[pages]:
            walk(page, page.Resources)
    return " ".join(" ".join(chunks).split())


def compact(text: str) -> str:
    """Without whitespace: a bold word and an SVG's letters come as runs of their own."""
    return "".join(text.split())


def decompressed(data: bytes) -> bytes:
    """Every object's bytes with every stream decoded (attachments included), and the file itself."""
    parts = [data]
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for obj in pdf.objects:
            if isinstance(obj, pikepdf.Stream):
                parts.append(obj.read_bytes())
            elif isinstance(obj, pikepdf.Dictionary | pikepdf.Array):
                parts.append(obj.unparse())
    return b"\n".join(parts)


def fonts(resources, found: list) -> list:
    for font in (resources.get("/Font") or {}).values():
        found.append(font)
    for form in (resources.get("/XObject") or {}).values():
        if form.get("/Subtype") == "/Form" and form.get("/Resources") is not None:
            fonts(form.Resources, found)
    return found


def embedded(font) -> bool:
    descendants = font.get("/DescendantFonts")
    described = descendants[0] if descendants else font
    descriptor = described.get("/FontDescriptor")
    return descriptor is not None and any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3"))


async def test_the_demo_report_is_pdfa3b_carrying_its_datasets_and_figures_and_nothing_personal(loaded):
    steps = []
    pdf, again, context, attachments, (dm, dv, expected) = await render(progress=lambda f, m: steps.append((f, m)))
    with pikepdf.open(io.BytesIO(pdf)) as document:
        meta = document.open_metadata()
        assert (meta["pdfaid:part"], meta["pdfaid:conformance"]) == ("3", "B")
        used = [font for page in document.pages for font in fonts(page.Resources, [])]
        assert used and all(embedded(font) for font in used)
        # each attachment exactly once in the catalog's /AF, and in the name tree, with the bytes handed in
        specs = list(document.Root.AF)
        assert len({spec.objgen for spec in specs}) == len(specs) == len(attachments) + 1
        assert [str(spec.F) for spec in specs] == [name for name, _, _ in attachments] + [FIGURES_FILE]
        assert all(str(spec.AFRelationship) == "/Data" for spec in specs)
        names = list(document.Root.Names.EmbeddedFiles.Names)
        assert [str(n) for n in names[0::2]] == sorted(str(spec.F) for spec in specs)
        assert [spec.objgen for spec in names[1::2]] == [s.objgen for s in sorted(specs, key=lambda s: str(s.F))]
        for name, content, _ in attachments:
            assert document.attachments[name].get_file().read_bytes() == content
        # each file as PDF/A-3 asks (and WeasyPrint wrote them): names, description, mime type, dates the
        # package's instant, size and MD5; compressed once, so the XPT's padding takes little room
        pdf_date = f"D:{instant(AT):%Y%m%d%H%M%S}Z"
        described = [*((n, c, d) for n, c, d in attachments), (FIGURES_FILE, None, "The figures of this report")]
        mime = {"xpt": "/application/octet-stream", "csv": "/text/csv", "json": "/application/json"}
        for spec, (name, content, description) in zip(specs, described):
            stream = spec.EF.F
            content = content if content is not None else stream.read_bytes()
            assert (str(spec.Type), str(spec.F), str(spec.UF)) == ("/Filespec", name, name)
            assert str(spec.Desc).startswith(description)
            assert (str(stream.Type), str(stream.Subtype)) == ("/EmbeddedFile", mime[name.rsplit(".", 1)[1]])
            assert str(stream.Params.ModDate) == str(stream.Params.CreationDate) == pdf_date
            assert int(stream.Params.Size) == len(content)
            assert bytes(stream.Params.CheckSum) == hashlib.md5(content).digest()
            assert stream.Filter == pikepdf.Name.FlateDecode and len(stream.read_raw_bytes()) < len(content)
        assert document.check_pdf_syntax() == []
    figures = figures_of(pdf)
    dm_rows = [dict(zip(dm.names, row)) for row in dm.rows]
    dv_rows = [dict(zip(dv.names, row)) for row in dv.rows]
    assert (
        figures["deviations"]["per_site"]
        == deviations_per_site(dv_rows, dm_rows)
        == {"101": expected["101"], "102": expected["102"]}
    )
    assert figures["deviations"]["study"] == len(dv.rows) > 0
    assert (figures["privacy"], figures["transfer"], figures["previous_transfer"]) == ("coded", 2, 1)
    assert figures["checkpoint"]["root"] == context.checkpoint.root and figures["checkpoint"]["size"] >= 1
    assert [s["site"] for s in figures["sites"]] == ["101", "102"]
    assert figures["study_totals"]["participants"] == 5
    # blinded: no per-arm count was even gathered, and none is drawn
    assert "arms" not in figures["study_totals"] and all("arms" not in s for s in figures["sites"])
    text = drawn_text(pdf)
    assert "Participantsbyarm" not in "".join(text.split()) and "Placebo" not in text
    first = compact(drawn_text(pdf, slice(0, 1)))
    assert "notshown:thestudyisblinded" in first and "coded:subjectIDsonly" in first
    assert context.checkpoint.root in first and context.checkpoint.key_id in first
    # nothing personal, in the drawn text or in any byte once decompressed
    everything = decompressed(pdf)
    assert [v for v in demo.DEMO_PERSONAL_VALUES if v.encode() in everything or v in text] == []
    assert [v for v in demo.DEMO_PERSONAL_VALUES if v.encode("utf-16-be") in everything] == []
    # progress: rising, to the end
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 4
    # the same inputs, the same bytes
    assert await again() == pdf


async def test_safe_harbor_says_so_on_page_one_and_keeps_no_day_of_a_participants_event(loaded):
    pdf, _, context, _, _ = await render(privacy=Privacy.SAFE_HARBOR)
    first = compact(drawn_text(pdf, slice(0, 1)))
    assert "safe-harbor:" in first and "everydatereducedtoitsyear" in first
    figures = figures_of(pdf)
    assert figures["privacy"] == "safe-harbor" and figures["trend"]["unit"] == "year"
    assert all(re.fullmatch(r"\d{4}|earlier", p) for p in figures["trend"]["periods"])
    # the only full dates drawn are the package's own: the as-of day, the instant, the checkpoint's issue
    allowed = {TODAY.isoformat(), AT[:10], context.checkpoint.issued_at[:10]}
    assert set(re.findall(r"\d{4}-\d\d-\d\d", drawn_text(pdf))) <= allowed
    assert "2025-0" not in "".join(figures["trend"]["periods"])


async def test_arms_are_counted_only_when_shown(loaded):
    pdf, *_ = await render(arms_shown=True)
    figures = figures_of(pdf)
    assert sum(figures["study_totals"]["arms"].values()) == figures["study_totals"]["participants"] == 5
    assert set(figures["study_totals"]["arms"]) <= {"A", "P", "not assigned"}
    assert "Participantsbyarm" in "".join(drawn_text(pdf).split())


async def test_a_blinded_report_counts_no_visit_some_arms_only_have(loaded):
    """DEMO-001's PK visit is arm A's only: its count per site would be the number of arm-A participants there."""
    await visits.record_visit(STUDY, "101-001", "PK", TODAY - timedelta(days=4), reason="sampled early", today=TODAY)
    blinded = figures_of((await render(arms_shown=False))[0])
    shown = figures_of((await render(arms_shown=True))[0])

    def visit_codes(figures: dict) -> set[str]:
        return {code for site in figures["sites"] for code, _ in site["by_visit"]}

    assert "PK" in visit_codes(shown) and "PK" not in visit_codes(blinded)
    assert "PK" not in {code for code, _ in blinded["study_totals"]["by_visit"]}
    site, open_site = blinded["sites"][0], shown["sites"][0]
    pk = dict(open_site["by_visit"])["PK"]
    for state in ("on_time", "early", "late", "missed"):  # the totals leave it out too
        assert site["visits"][state] == open_site["visits"][state] - pk[state]
        assert site["visits"][state] == sum(counts[state] for _, counts in site["by_visit"])
    assert site["visits"]["due"] == open_site["visits"]["due"] - sum(pk.values())


def big_figures(sites: int, visits: int, categories: int = 10) -> dict:
    """A study larger than issue 14's benchmark, as `report_figures.gather` would give it: `sites` sites of
    500 participants and 50,000 visits each, `visits` visit codes, 2,500 deviations a site."""
    per_site = []
    for i in range(sites):
        per_site.append(
            {
                "site": f"{100 + i}",
                "participants": 500 - i,
                "active": 400,
                "ended": 100 - i,
                "visits": {
                    "due": 50_000,
                    "done": 48_000,
                    "on_time": 40_000,
                    "early": 3_000,
                    "late": 5_000,
                    "missed": 2_000,
                    "on_time_rate": 0.8333,
                    "completion_rate": 0.96,
                },
                "by_visit": [
                    [f"V{v}", {"on_time": 500 + v, "early": 20, "late": 30, "missed": 7}] for v in range(visits)
                ],
                "deviations": 2_500,
                "deviation_states": {
                    "open": 300,
                    "by_state": {"closed": 1_500, "detected": 700, "site_explained": 300},
                    "by_classification": {"important": 1_000, "non_important": 1_500},
                    "by_category": {
                        f"category_{c}": {"important": 100, "non_important": 150} for c in range(categories)
                    },
                },
                "closure": {"closed": 1_500, "median_days": 12, "mean_days": 15.5, "max_days": 200},
                "consent": {
                    "versions": [["1.0", "en", 300], ["2.0", "en", 200]],
                    "participants": 500 - i,
                    "current": 450,
                    "unknown": 5,
                    "reconsent": 45,
                },
                "binder": {
                    "present": 15,
                    "missing": 3,
                    "expiring": 1,
                    "expired": 1,
                    "gaps": [[f"05.02.{g:02d} Artifact {g}", "missing", 1] for g in range(14)],
                },
            }
        )
    months = [f"{2021 + m // 12}-{m % 12 + 1:02d}" for m in range(36)]
    return {
        "study": "BIG-1",
        "as_of": "2024-06-01",
        "privacy": "coded",
        "arms_shown": False,
        "sites": per_site,
        "deviations": {"per_site": {s["site"]: 2_500 for s in per_site}, "study": 2_500 * sites},
        "trend": {
            "periods": ["earlier", *months],
            "series": {f"category_{c}": [40] * 37 for c in range(categories)},
            "unit": "month",
        },
        "closure_days": [["0-7", 10_000], ["8-30", 20_000], ["31-60", 5_000], ["61-90", 1_000], ["91+", 500]],
        "study_totals": report_figures.study_totals(
            per_site, False, closure={"closed": 45_000, "median_days": 12, "mean_days": 15.5, "max_days": 300}
        ),
    }


async def test_a_study_of_the_benchmarks_size_stays_under_the_page_budget():
    """30 sites (the benchmark's ~20 and more), 100 visit codes, 75,000 deviations: one section for each of the
    20 largest sites, one for the other 10, and every table capped; well under 40 pages."""
    checkpoint = SignedCheckpoint(1_000_000, "ab" * 32, "2024-06-01T12:00:00.000000Z", "cd" * 16, "ef" * 64)
    context = ReportContext(
        Scope("BIG-1", date(2024, 6, 1)),
        "BIG-1",
        "BIG-1 version 3.0",
        AT,
        7,
        6,
        {"created": 50, "changed": 20, "closed": 10},
        checkpoint,
        False,
        {},
    )
    figures = big_figures(sites=30, visits=100)
    html = report_html(context, figures_document(context, figures), [])
    assert "Other sites (10): 120, 121" in html and "other visits (71)" in html  # grouped, not dropped
    assert html.count('<h2 class="page">Site ') == SITE_SECTIONS + 1
    pdf = await render_report(context, figures, attachments=[("dv.csv", b"x" * 1000, "DV")])
    with pikepdf.open(io.BytesIO(pdf)) as document:
        assert len(document.pages) < PAGE_BUDGET
    assert figures_of(pdf)["deviations"] == {"per_site": figures["deviations"]["per_site"], "study": 75_000}


def test_files_are_attached_once_to_a_pdf_that_carries_none():
    """Nothing to attach: the PDF as it was; a PDF that already carries files is refused, not given a second /AF."""
    pdf = reproducible_pdf(f"<style>{fonts_css()}</style><p>x</p>", source="test page", created_at=AT)
    assert single_associated_files(pdf, [], AT) == pdf
    attached = single_associated_files(pdf, [("a.csv", b"a,b\n", "A")], AT)
    with pytest.raises(ValueError, match="already carries files"):
        single_associated_files(attached, [("b.csv", b"b\n", "B")], AT)
