"""The binder's index PDF, in parts whose boundaries depend on the rows themselves, each rendered through the
render cache, so an unchanged binder (or an unchanged part of it) re-uses its index."""

from __future__ import annotations

import hashlib

from trialcoord.kernel.render.cache import RenderCache

IndexEntry = tuple[dict[str, str | None], str]  # an index row for the template, and when its version last changed

INDEX_PART = 32  # documents per index part, on average (content-defined boundaries)


def _index_parts(entries: list[IndexEntry]) -> list[list[IndexEntry]]:
    """The index in parts whose boundaries depend on the rows themselves (as rsync chunks files), so a new
    version changes the one part it falls in and every other part is a render-cache hit."""
    parts: list[list[IndexEntry]] = []
    current: list[IndexEntry] = []
    for entry, changed in entries:
        current.append((entry, changed))
        mark = f"{entry['unique_id']}/{entry['document']}/{entry['version']}".encode()
        if int.from_bytes(hashlib.sha256(mark).digest()[:4], "big") % INDEX_PART == 0:
            parts.append(current)
            current = []
    return parts + ([current] if current or not parts else [])


def index(study: str, site: str | None, entries: list[IndexEntry], cache: RenderCache | None) -> bytes:
    """The index PDF: each part dated by its own rows' newest change, rendered through the cache, joined."""
    from trialcoord.kernel.render.pdf_documents import render_pdf
    from trialcoord.kernel.render.signed_pdf import append_pages

    title = f"Binder index {study}" + (f" site {site}" if site else "")
    joined: bytes | None = None
    for part in _index_parts(entries):  # never empty: an empty index is one empty part
        as_of = max((changed for _, changed in part), default="2000-01-01T00:00:00.000000Z")
        data = {"study_code": study, "site_code": site or "all sites", "entries": [entry for entry, _ in part]}
        meta = {"created_at": as_of, "title": title, "version_label": as_of[:10]}
        pdf = cache.render("pdf", "binder_index", data, **meta) if cache else render_pdf("binder_index", data, **meta)
        joined = pdf if joined is None else append_pages(joined, pdf)
    if joined is None:
        raise AssertionError("the index has at least one part")
    return joined
