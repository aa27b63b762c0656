"""What the deviation reports share: the sites a report covers, the deviations as they stood on its day,
rendering a template as PDF/A or DOCX (through the binder's render cache), and a download audited as an
export."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import date
from typing import Any, TypedDict

from anyio import to_thread

from trialcoord.deviations.records import Deviation
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.problems import NotFound
from trialcoord.kernel.render.cache import RenderCache
from trialcoord.scheduling.sites import list_sites


class RenderMeta(TypedDict):
    """The renderers' keyword arguments that date and title a document (`render_pdf(..., **meta)`)."""

    created_at: str
    title: str
    version_label: str


async def require_site(study: str, site: str) -> None:
    await require_sites(study, [site])


async def require_sites(study: str, sites: Collection[str]) -> list[str]:
    """The study's sites among `sites`, in the study's order; NotFound naming a site the study lacks."""
    known = [row.code for row in await list_sites(study)]
    for site in sites:
        if site not in known:
            raise NotFound(f"study {study} has no site {site}")
    wanted = set(sites)
    return [code for code in known if code in wanted]


def rows_as_of(listed: tuple[list[Deviation], int], as_of: date) -> list[Deviation]:
    """The deviations detected on or before `as_of`, each open if it was then (closed after it: still open)."""
    rows, _ = listed
    day = as_of.isoformat()
    return [
        replace(r, open=True) if not r.open and r.closed_at and r.closed_at[:10] > day else r
        for r in rows
        if r.detected_at[:10] <= day
    ]


def render_meta(as_of: date, title: str, label: str) -> RenderMeta:
    return {"created_at": f"{as_of.isoformat()}T00:00:00.000000Z", "title": title, "version_label": label}


async def render(
    kind: str,
    template: str,
    data: Mapping[str, Any],
    as_of: date,
    title: str,
    label: str,
    cache: RenderCache | None = None,
) -> bytes:
    """The report's bytes, through the installation's render cache when one is given."""
    from trialcoord.kernel.render.docx_documents import render_docx
    from trialcoord.kernel.render.pdf_documents import render_pdf

    meta = render_meta(as_of, title, label)
    if cache is not None:
        return await to_thread.run_sync(lambda: cache.render(kind, template, data, **meta))
    renderer = render_pdf if kind == "pdf" else render_docx
    return await to_thread.run_sync(lambda: renderer(template, data, **meta))


async def audit_export(actor: str, record_type: str, record_id: str, values: dict[str, Any]) -> None:
    await audit_log.record_alone(actor, Change("export", record_type, record_id, None, values))


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
