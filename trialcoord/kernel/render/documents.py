"""Documents from the project's templates (`document_templates/`): PDF/A-3b via WeasyPrint, DOCX via python-docx.

Pure apart from reading the templates: data in, bytes out, and the same inputs give the same bytes, so a
rendering can be cached (RenderCache) and compared by hash. Every date derives from `created_at`.
Data must be JSON values: its canonical JSON is what a PDF carries as `data.json` and what the cache keys on.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import io
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup

from trialcoord.kernel.bundled import folder
from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.render.pdf import instant, reproducible_pdf, stamp

TEMPLATE_DIR = folder("document_templates")


@dataclass(frozen=True)
class Template:
    kinds: tuple[str, ...]  # "pdf" (<name>.html) and/or "docx" (<name>.docx)
    unique_id: str | None  # TMF Reference Model artifact unique ID; the binder files the document under it
    fields: tuple[str, ...]  # keys the data must have; "key?" is optional
    rows: Mapping[str, tuple[str, ...]]  # list fields: the keys each item must have; "key?" optional, "key[]" a list


_SITE_LOG = ("study_code", "site", "entries")
TEMPLATES: dict[str, Template] = {
    "consent_form": Template(
        ("pdf", "docx"),
        "040",
        ("study_code", "study_title", "consent_version", "language", "protocol_version", "sections", "site?"),
        {"sections": ("heading", "paragraphs[]")},
    ),
    "delegation_log": Template(
        ("pdf", "docx"),
        "101",
        (*_SITE_LOG, "investigator"),
        {"entries": ("staff", "role", "tasks", "start", "end?", "initials", "pi_signoff?")},
    ),
    "training_log": Template(
        ("pdf",),
        "104",
        _SITE_LOG,
        {"entries": ("staff", "role", "training", "date", "trainer", "material_version?", "method?")},
    ),
    "deviation_log": Template(
        ("pdf", "docx"),
        "110",
        (*_SITE_LOG, "as_of?", "summary?", "charts?"),
        {
            "entries": (
                "participant",
                "visit",
                "category",
                "description",
                "identified",
                "classification",
                "status",
                "id?",
                "occurred?",
            ),
            "summary": ("label", "value"),
            "charts": ("kind", "title"),
        },
    ),
    "monitoring_visit_report": Template(
        ("pdf", "docx"),
        "107",
        ("study_code", "site", "visit_date", "prepared_by", "summary", "entries", "capas", "charts?"),
        {
            "summary": ("label", "value"),
            "entries": (
                "id",
                "participant",
                "visit",
                "category",
                "description",
                "identified",
                "age_days",
                "classification",
                "status",
            ),
            "capas": ("id", "title", "state", "owner", "due_on", "deviations"),
            "charts": ("kind", "title"),
        },
    ),
    "site_summary": Template(
        ("pdf",),
        None,
        ("study_code", "as_of", "sites", "total", "reconsent", "documents", "charts?"),
        {
            "sites": (
                "site",
                "participants",
                "active",
                "ended",
                "visits_due",
                "visits_done",
                "completion_rate",
                "on_time_rate",
                "open_deviations",
                "ages",
                "reconsent",
                "expiring",
            ),
            "reconsent": ("subject_id", "site", "signed_version", "required_version", "required_since"),
            "documents": ("site", "document", "version", "state", "expires_on"),
            "charts": ("kind", "title"),
        },
    ),
    "amendment_impact": Template(
        ("pdf",),
        None,
        (
            "study_code",
            "version",
            "effective",
            "as_of",
            "site",
            "totals",
            "sites",
            "more_sites",
            "differences",
            "more_differences",
            "skipped",
        ),
        {
            "sites": (
                "site",
                "participants",
                "affected",
                "visits_moving",
                "visits_appearing",
                "visits_disappearing",
                "deviations_resolved",
                "deviations_created",
                "reconsent_required",
            ),
            "differences": ("version", "line"),
        },
    ),
    "binder_cover": Template(
        ("pdf",),
        None,
        ("study_code", "study_title", "site_code", "site_name", "investigator", "sponsor", "protocol_version?"),
        {},
    ),
    "signature_page": Template(
        ("pdf",),
        None,
        ("study_code", "site_code", "document", "version", "version_sha256", "signatures"),
        {"signatures": ("printed_name", "signer_id", "meaning", "instant", "local_time", "key_id", "signature")},
    ),
    "binder_checklist": Template(
        ("pdf",),
        None,
        ("study_code", "site", "as_of", "counts", "items"),
        {"items": ("state", "artifact", "for", "document", "expires_on")},
    ),
    "binder_index": Template(
        ("pdf",),
        None,
        ("study_code", "site_code", "entries"),
        {"entries": ("zone", "section", "artifact", "unique_id", "document", "version", "status", "effective")},
    ),
}

_JINJA = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def draw_chart(spec: Mapping) -> Markup:
    """A chart of the data as inline SVG, drawn by charts.py (which escapes every text): data that reaches a
    template never becomes markup itself, whoever supplied it. Kinds: stacked (periods, series), bars
    (items of [label, value]), histogram (values, bins of [lo, hi or null])."""
    from trialcoord.kernel.render import charts

    try:
        kind, title = spec["kind"], str(spec["title"])
        if kind == "stacked":
            svg = charts.stacked_bars(
                title,
                [str(p) for p in spec["periods"]],
                {str(k): list(v) for k, v in spec["series"].items()},
                y_label=str(spec.get("y_label") or ""),
            )
        elif kind == "bars":
            svg = charts.bars(
                title, [(str(label), value) for label, value in spec["items"]], unit=str(spec.get("unit") or "")
            )
        elif kind == "histogram":
            bins = [(lo, math.inf if hi is None else hi) for lo, hi in spec["bins"]] if spec.get("bins") else None
            svg = charts.histogram(title, list(spec["values"]), bins, unit=str(spec.get("unit") or "days"))
        else:
            raise ValueError(f"unknown kind {kind!r}; one of stacked, bars, histogram")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
        raise InvalidInput([Problem(f"cannot be drawn: {error}", field="charts")]) from None
    return Markup(svg)


_JINJA.globals["chart"] = draw_chart
_UNDEFINED = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'|no element '?([^']+?)'?$")
_TOKEN = re.compile(r"\{\{([a-z_]+)(?:\.([a-z_]+))?\}\}")


def canonical_json(data: Mapping) -> bytes:
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as error:  # a date, a set, a circular reference: not JSON
        raise InvalidInput([Problem(f"must be JSON values only: {error}", field="data")]) from None


def _template(name: str, kind: str) -> Template:
    known = sorted(n for n, t in TEMPLATES.items() if kind in t.kinds)
    if name not in known:
        raise InvalidInput(
            [Problem(f"no {kind.upper()} template {name!r}; known: {', '.join(known)}", field="template")]
        )
    return TEMPLATES[name]


def _check(template: Template, data: Mapping) -> None:
    """Every missing required key at once, each named by its path, before a template trips over the first."""
    problems = [
        Problem("is required", field=key) for key in template.fields if not key.endswith("?") and key not in data
    ]
    for key, item_keys in template.rows.items():
        items = data.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
            problems.append(Problem("must be a list of objects", field=key))
            continue
        for n, item in enumerate(items):
            for spec in item_keys:
                name = spec.rstrip("?[]")
                if name not in item:
                    if not spec.endswith("?"):
                        problems.append(Problem("is required", field=f"{key}[{n}].{name}"))
                elif spec.endswith("[]") and not isinstance(item[name], list):  # a string would iterate by letter
                    problems.append(Problem("must be a list", field=f"{key}[{n}].{name}"))
    if problems:
        raise InvalidInput(problems)


def _prepare(kind: str, template: str, data: Mapping, created_at: str, title: str, version_label: str) -> dict:
    spec = _template(template, kind)
    if not isinstance(data, Mapping):
        raise InvalidInput([Problem("must be an object", field="data")])
    try:
        instant(created_at)
    except (TypeError, ValueError):
        raise InvalidInput([Problem(f"is not an ISO 8601 instant: {created_at!r}", field="created_at")]) from None
    _check(spec, data)
    canonical = canonical_json(data)
    # The footer shows where this rendering came from: a reader can hash the attached data.json and compare.
    doc = {
        "title": title,
        "version_label": version_label,
        "created_at": created_at,
        "stamp": stamp(created_at),
        "short_hash": "data sha256:" + hashlib.sha256(canonical).hexdigest()[:12],
    }
    return {"doc": doc, "canonical": canonical}


def render_pdf(template: str, data: Mapping, *, created_at: str, title: str, version_label: str) -> bytes:
    prepared = _prepare("pdf", template, data, created_at, title, version_label)
    try:
        html = _JINJA.get_template(f"{template}.html").render({**data, "doc": prepared["doc"]})
    except jinja2.UndefinedError as error:  # a key the schema does not list: still the data's fault
        found = _UNDEFINED.search(str(error))
        name = next(filter(None, found.groups())) if found else "data"
        raise InvalidInput([Problem(f"is required ({error})", field=name)]) from None
    return reproducible_pdf(
        html,
        created_at=created_at,
        base_url=str(TEMPLATE_DIR),
        attachments=[
            ("data.json", prepared["canonical"], "The data this document was rendered from, as canonical JSON")
        ],
    )


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


def _fill_document(document, data: Mapping, doc: Mapping) -> None:
    from docx.table import _Row

    values = {**data, "doc": doc}
    for table in document.tables:  # rows with {{list.key}} repeat once per item of that list
        for row in list(table.rows):
            lists = {m.group(1) for m in _TOKEN.finditer(row._tr.xml) if m.group(2) and m.group(1) != "doc"}
            for key in lists:
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
    for section in document.sections:
        for part in (section.header, section.footer):
            for paragraph in _paragraphs(part):
                _fill(paragraph, values)
    for paragraph in _paragraphs(document):
        _fill(paragraph, values)


def render_docx(template: str, data: Mapping, *, created_at: str, title: str, version_label: str) -> bytes:
    from docx import Document  # loaded only by the callers that render DOCX

    prepared = _prepare("docx", template, data, created_at, title, version_label)
    document = Document(str(TEMPLATE_DIR / f"{template}.docx"))
    absent = {key.rstrip("?"): "" for key in TEMPLATES[template].fields if key.endswith("?")}  # optional: blank
    try:
        _fill_document(document, {**absent, **data}, prepared["doc"])
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


def docx_with_signature_page(base: bytes, page: Mapping, *, created_at: str) -> bytes:
    """A DOCX version with the signature page (the `signature_page` template's data) appended after a page
    break: the manifestation of its signatures in the Word file itself (11.50). Byte-stable like render_docx."""
    from docx import Document
    from docx.enum.text import WD_BREAK

    _check(TEMPLATES["signature_page"], page)
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


class RenderCache:
    """Renderings on disk under the SHA-256 of everything that shapes their bytes; least recently used go first."""

    def __init__(self, directory: Path, max_bytes: int = 512 * 1024 * 1024):
        self.directory, self.max_bytes = Path(directory), max_bytes

    def key(self, kind: str, template: str, data: Mapping, *, created_at: str, title: str, version_label: str) -> str:
        _template(template, kind)
        sources = sorted(TEMPLATE_DIR.glob("_*")) + [TEMPLATE_DIR / f"{template}.{'html' if kind == 'pdf' else kind}"]
        # the charts a template draws, this renderer and the PDF writer shape its bytes too
        sources += [Path(__file__).with_name(name) for name in ("charts.py", "documents.py", "pdf.py")]
        files = hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).digest() for p in sources)).hexdigest()
        # the library's version too: an upgrade may lay out the same input differently
        library = importlib.metadata.version("weasyprint" if kind == "pdf" else "python-docx")
        parts = [kind, library, template, files, canonical_json(data).decode(), created_at, title, version_label]
        return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()

    def render(
        self, kind: str, template: str, data: Mapping, *, created_at: str, title: str, version_label: str
    ) -> bytes:
        meta = dict(created_at=created_at, title=title, version_label=version_label)
        path = self.directory / f"{self.key(kind, template, data, **meta)}.{kind}"
        if path.exists():
            os.utime(path)  # a hit counts as a use for eviction
            return path.read_bytes()
        renderer = render_pdf if kind == "pdf" else render_docx  # looked up now, so tests can count calls
        result = renderer(template, data, **meta)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Atomic: a concurrent reader sees the whole file or none, never a half-written one.
        fd, temp = tempfile.mkstemp(dir=self.directory, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(result)
        os.replace(temp, path)
        self._evict()
        return result

    def _evict(self) -> None:
        entries = sorted((p.stat().st_mtime, p) for p in self.directory.iterdir() if not p.name.endswith(".part"))
        total = sum(p.stat().st_size for _, p in entries)
        for _, path in entries:
            if total <= self.max_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
