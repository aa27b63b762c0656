"""The sponsor package's compliance report: a PDF/A-3b per site and for the study, with the package's datasets and
its own figures (report-figures.json) attached as associated files, so the report alone carries its data.

Summaries and charts only, each table capped (visits past the first rows, sites past the largest, grouped), so a
study of any size stays within `PAGE_BUDGET` pages; the listings are the datasets'. The same context, figures and
attachments give the same bytes: every date derives from the package's instant. Rendering runs off the event
loop. WeasyPrint lays out the pages only: the files are attached afterwards with pikepdf, each compressed once at
`ATTACHED_LEVEL` (WeasyPrint's pydyf compresses at zlib level 9, hard-coded, and copies and hashes each file
several times: most of the report's time for the ~120 MB of XPT of a large study), with what PDF/A-3b asks of an
associated file, listed once in the catalog's /AF and in a sorted name tree.
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from anyio import to_thread
from markupsafe import Markup

from trialcoord.exports import report_figures as gathering
from trialcoord.exports.rules import compliance
from trialcoord.exports.rules.scope import Privacy, Scope
from trialcoord.exports.rules.sdtm import Dataset
from trialcoord.kernel.render import charts, fonts
from trialcoord.kernel.render.pdf import instant, reproducible_pdf, stamp
from trialcoord.kernel.rules.audit_entries import canonical_json
from trialcoord.kernel.signing_keys import SignedCheckpoint

FIGURES_FILE = "report-figures.json"
PAGE_BUDGET = 40  # a study of 10,000 participants, 1,000,000 visits, 50,000 deviations, ~20 sites stays under
SITE_SECTIONS = 20  # the largest sites get a section each; the rest share one
SITE_ROWS = 45  # rows of the study's per-site tables; the rest are summed into one row
STUDY_VISIT_ROWS, SITE_VISIT_ROWS = 30, 14  # visits of the adherence tables
CHART_ITEMS, CATEGORY_ROWS, GAP_ROWS, CONSENT_ROWS = 24, 12, 8, 8
ATTACHED_LEVEL = 6  # zlib's default: XPT's padding compresses nearly as well as at 9, several times faster
_MIME_TYPES = mimetypes.MimeTypes()  # Python's own table only, as WeasyPrint's: not the machine's mime.types

Progress = Callable[[float, str], None]
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
_TEMPLATES.globals["fonts_css"] = fonts.css

deviations_per_site = compliance.deviations_per_site  # shared with `trialcoord verify`


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What the package knows that the study's records do not: its scope, title, instant, transfer, the DV
    changes since the previous transfer, the audit trail's signed checkpoint, whether arms are shown, and the
    rows withheld (reason -> count)."""

    scope: Scope
    title: str
    protocol: str  # the study's title as the report heads it, e.g. "DEMO-001 version 2.0"
    generated_at: str  # ISO 8601 UTC instant, the package's (reproducible bytes)
    transfer: int
    previous_transfer: int | None
    dv_changes: Mapping[str, int]  # {"created": n, "changed": n, "closed": n, "removed": n}
    checkpoint: SignedCheckpoint
    arms_shown: bool
    withheld: Mapping[str, int]


async def compliance_report(
    context: ReportContext,
    datasets: Sequence[Dataset],
    *,
    attachments: Sequence[tuple[str, bytes, str]],
    progress: Progress | None = None,
) -> bytes:
    """The report's PDF/A-3b: figures gathered as of the scope's day (deviations per site from `datasets`' DV
    and DM), `attachments` (name, bytes, description) attached as Data with report-figures.json after them."""
    figures = await gathering.gather(context.scope, datasets, arms_shown=context.arms_shown, progress=progress)
    return await render_report(context, figures, attachments=attachments, progress=progress)


async def render_report(
    context: ReportContext,
    figures: Mapping[str, Any],
    *,
    attachments: Sequence[tuple[str, bytes, str]],
    progress: Progress | None = None,
) -> bytes:
    """The PDF of figures already gathered (`report_figures.gather`'s shape): the CPU work, in a worker thread."""
    say = progress or (lambda _fraction, _message: None)
    document = figures_document(context, figures)
    files = [*attachments, (FIGURES_FILE, canonical_json(document), "The figures of this report, machine-readable")]
    html = report_html(context, document, files)
    say(0.55, "laying out the report")
    at = context.generated_at
    pdf = await to_thread.run_sync(
        lambda: single_associated_files(reproducible_pdf(html, source="compliance report", created_at=at), files, at)
    )
    say(1.0, "report rendered")
    return pdf


def figures_document(context: ReportContext, figures: Mapping[str, Any]) -> dict[str, Any]:
    """report-figures.json: the figures with the package's facts, each site's own count per site from DV/DM."""
    if context.arms_shown is not figures["arms_shown"]:
        raise ValueError("the figures were gathered for another blinding than the report's")
    return {
        **figures,
        "title": context.title,
        "protocol": context.protocol,
        "generated_at": context.generated_at,
        "transfer": context.transfer,
        "previous_transfer": context.previous_transfer,
        "dv_changes": dict(context.dv_changes),
        "withheld": dict(context.withheld),
        "checkpoint": {
            "size": context.checkpoint.size,
            "root": context.checkpoint.root,
            "issued_at": context.checkpoint.issued_at,
            "key_id": context.checkpoint.key_id,
            "signature": context.checkpoint.signature,
        },
    }


def report_figures(pdf: bytes) -> dict[str, Any]:
    """The figures attached to a compliance report (report-figures.json), as the verifier reads them back."""
    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as document:
        if FIGURES_FILE not in document.attachments:
            raise ValueError(f"the report carries no {FIGURES_FILE}")
        found: dict[str, Any] = json.loads(document.attachments[FIGURES_FILE].get_file().read_bytes())
        return found


def single_associated_files(pdf: bytes, files: Sequence[tuple[str, bytes, str]], created_at: str) -> bytes:
    """The PDF/A-3b `pdf` (which carries no file) with `files` (name, bytes, description) attached as PDF/A-3
    associated files: each file specification related as Data, listed once in the catalog's /AF in the order
    given, and under its name in the embedded files' name tree in key order (as PDF 32000 7.9.6 requires). Each
    file's dates are `created_at` (the package's instant), its stream compressed at `ATTACHED_LEVEL`; `pdf`
    unchanged when there is no file. Saved deterministically: the file identifier from the content."""
    import pikepdf

    if not files:
        return pdf
    at = pikepdf.String(instant(created_at).strftime("D:%Y%m%d%H%M%SZ"))
    with pikepdf.open(io.BytesIO(pdf)) as document:
        if "/AF" in document.Root or "/EmbeddedFiles" in document.Root.get("/Names", {}):
            raise ValueError("the PDF already carries files: attach them all here, once")
        specs = [_file_spec(document, name, content, text, at) for name, content, text in files]
        document.Root.AF = pikepdf.Array(specs)
        names = document.Root.get("/Names")
        if names is None:
            names = document.Root.Names = pikepdf.Dictionary()
        ordered = sorted(zip(files, specs), key=lambda pair: pair[0][0].encode())
        tree = pikepdf.Array([item for (name, _, _), spec in ordered for item in (pikepdf.String(name), spec)])
        names.EmbeddedFiles = document.make_indirect(pikepdf.Dictionary(Names=tree))
        out = io.BytesIO()
        document.save(out, deterministic_id=True, fix_metadata_version=False)
        return out.getvalue()


def _file_spec(document: Any, name: str, content: bytes, text: str, at: Any) -> Any:
    """One file's specification and embedded stream as WeasyPrint writes them (its keys and mime type), the
    stream compressed here once, so that saving copies it as it is."""
    import pikepdf

    stream = pikepdf.Stream(document, b"")
    stream.write(zlib.compress(content, ATTACHED_LEVEL), filter=pikepdf.Name.FlateDecode)
    stream.Type = pikepdf.Name.EmbeddedFile
    stream.Subtype = pikepdf.Name("/" + (_MIME_TYPES.guess_type(name, strict=False)[0] or "application/octet-stream"))
    stream.Params = pikepdf.Dictionary(
        CheckSum=pikepdf.String(hashlib.md5(content, usedforsecurity=False).digest()),
        Size=len(content),
        CreationDate=at,
        ModDate=at,
    )
    return document.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Filespec,
            F=pikepdf.String(name),
            UF=pikepdf.String(name),
            EF=pikepdf.Dictionary(F=stream),
            Desc=pikepdf.String(text),
            AFRelationship=pikepdf.Name.Data,
        )
    )


# The HTML ------------------------------------------------------------------------------------------------


def report_html(context: ReportContext, document: Mapping[str, Any], files: Sequence[tuple[str, bytes, str]]) -> str:
    sites = list(document["sites"])
    largest = sorted(sites, key=lambda s: (-s["participants"], s["site"]))[:SITE_SECTIONS]
    shown = [s for s in sites if s in largest]
    rest = [s for s in sites if s not in largest]
    sections = [_section(s["site"], s, document["arms_shown"]) for s in shown]
    if rest:
        summed = gathering.study_totals(rest, document["arms_shown"], closure={})
        name = f"Other sites ({len(rest)}): " + ", ".join(s["site"] for s in rest)
        sections.append(_section(name, summed, document["arms_shown"]))
    totals = document["study_totals"]
    return _TEMPLATES.get_template("compliance_report.html").render(
        context=context,
        safe_harbor=context.scope.privacy is Privacy.SAFE_HARBOR,
        doc=document,
        stamp=stamp(context.generated_at),
        files=[(name, len(content), hashlib.sha256(content).hexdigest(), text) for name, content, text in files],
        site_codes=[s["site"] for s in sites],
        site_rows=_site_rows(sites, document["deviations"]["per_site"]),
        study=_section("The study", totals, document["arms_shown"], visit_rows=STUDY_VISIT_ROWS),
        study_charts=_study_charts(document, sites),
        sections=sections,
        grouped=len(rest),
        caps={
            "sites": SITE_SECTIONS,
            "site_rows": SITE_ROWS,
            "visits": STUDY_VISIT_ROWS,
            "site_visits": SITE_VISIT_ROWS,
        },
    )


def _site_rows(sites: Sequence[Mapping[str, Any]], per_dataset: Mapping[str, int]) -> list[dict[str, Any]]:
    """One row per site (the first `SITE_ROWS - 1`, then the rest summed): the figures a sponsor compares."""
    rows = [
        {
            "site": s["site"],
            "participants": s["participants"],
            "active": s["active"],
            "ended": s["ended"],
            "due": s["visits"]["due"],
            "on_time": s["visits"]["on_time"],
            "early": s["visits"]["early"],
            "late": s["visits"]["late"],
            "missed": s["visits"]["missed"],
            "deviations": per_dataset.get(s["site"], 0),
            "open": s["deviation_states"]["open"],
            "reconsent": s["consent"]["reconsent"],
            "current": s["consent"]["current"],
            "binder_missing": s["binder"]["missing"],
            "binder_expired": s["binder"]["expired"],
        }
        for s in sites
    ]
    pairs = compliance.capped([(r["site"], {k: v for k, v in r.items() if k != "site"}) for r in rows], SITE_ROWS)
    return [{"site": site, **values, "rate": _rate(values)} for site, values in pairs]


def _rate(values: Mapping[str, int]) -> str:
    return _percent(compliance.on_time_rate(values))


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _section(name: str, figures: Mapping[str, Any], arms_shown: bool, *, visit_rows: int = SITE_VISIT_ROWS) -> dict:
    """What one section (a site, the sites grouped, or the study) shows, capped to its page."""
    states = figures["deviation_states"]
    categories = [(c, per) for c, per in states["by_category"].items()]
    classes = sorted({k for _, per in categories for k in per})
    visits = compliance.capped([(label, dict(c)) for label, c in figures["by_visit"]], visit_rows, "other visits")
    consent = figures["consent"]
    return {
        "name": name,
        "participants": figures["participants"],
        "active": figures["active"],
        "ended": figures["ended"],
        "arms": sorted(figures.get("arms", {}).items()) if arms_shown else None,
        "visits": figures["visits"],
        "on_time_rate": _percent(figures["visits"].get("on_time_rate")),
        "completion_rate": _percent(figures["visits"].get("completion_rate")),
        "by_visit": [(label, c, _rate(c)) for label, c in visits],
        "classes": classes,
        "categories": compliance.capped(categories, CATEGORY_ROWS, "other categories"),
        "by_state": sorted(states["by_state"].items()),
        "open": states["open"],
        "closure": figures.get("closure") or {},
        "consent_versions": consent.get("versions", [])[:CONSENT_ROWS],
        "consent": consent,
        "binder": figures["binder"],
        "gaps": figures["binder"].get("gaps", [])[:GAP_ROWS],
        "more_gaps": max(len(figures["binder"].get("gaps", [])) - GAP_ROWS, 0),
        "chart": _svg(
            charts.bars(
                "Deviations by category",
                _items([(c, sum(per.values())) for c, per in categories], 10),
            )
        ),
    }


def _study_charts(document: Mapping[str, Any], sites: Sequence[Mapping[str, Any]]) -> list[Markup]:
    trend = document["trend"]
    totals = document["study_totals"]
    return [
        _svg(
            charts.stacked_bars(
                f"Deviations by {trend['unit']} and category",
                list(trend["periods"]),
                {k: list(v) for k, v in trend["series"].items()},
                y_label="deviations",
            )
        ),
        _svg(
            charts.bars(
                _first("Deviations by site (DV)", len(sites)), _items(document["deviations"]["per_site"].items())
            )
        ),
        _svg(
            charts.bars(
                "Deviations by classification",
                _items((k.replace("_", " "), n) for k, n in totals["deviation_states"]["by_classification"].items()),
            )
        ),
        _svg(
            charts.bars(
                "Days from detection to closure",
                [(label, count) for label, count in document["closure_days"]],
                horizontal=False,
            )
        ),
        _svg(
            charts.bars(
                _first("Visits on time by site", len(sites), "lowest"),
                _lowest(
                    [
                        (s["site"], round(100 * s["visits"]["on_time_rate"], 1))
                        for s in sites
                        if s["visits"].get("on_time_rate") is not None
                    ]
                ),
                unit="%",
            )
        ),
    ]


def _items(pairs: Iterable[tuple[str, float]], limit: int = CHART_ITEMS) -> list[tuple[str, float]]:
    """The `limit` largest bars, most first (the tables hold every value; a summed bar would flatten the rest)."""
    return sorted(pairs, key=lambda p: (-p[1], p[0]))[:limit]


def _first(title: str, count: int, which: str = "largest", limit: int = CHART_ITEMS) -> str:
    return title if count <= limit else f"{title} ({limit} {which} of {count})"


def _lowest(pairs: Iterable[tuple[str, float]], limit: int = CHART_ITEMS) -> list[tuple[str, float]]:
    """The `limit` lowest rates, lowest first: the sites a sponsor looks at."""
    return sorted(pairs, key=lambda p: (p[1], p[0]))[:limit]


def _svg(svg: str) -> Markup:
    return Markup(svg)  # charts.py escapes every text it draws
