"""The templates of `document_templates/`: the kinds each renders, its TMF unique ID, and the data it needs.

Documents from the project's templates (`document_templates/`): PDF/A-3b via WeasyPrint (`pdf_documents.py`),
DOCX via python-docx (`docx_documents.py`).

Pure apart from reading the templates: data in, bytes out, and the same inputs give the same bytes, so a
rendering can be cached (RenderCache) and compared by hash. Every date derives from `created_at`.
Data must be JSON values: its canonical JSON is what a PDF carries as `data.json` and what the cache keys on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trialcoord.kernel.bundled import folder
from trialcoord.kernel.problems import InvalidInput, Problem

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


def template_named(name: str, kind: str) -> Template:
    """The template `name` that renders `kind`; InvalidInput naming the known ones otherwise."""
    known = sorted(n for n, t in TEMPLATES.items() if kind in t.kinds)
    if name not in known:
        raise InvalidInput(
            [Problem(f"no {kind.upper()} template {name!r}; known: {', '.join(known)}", field="template")]
        )
    return TEMPLATES[name]
