"""What a render job's status tells whoever follows it, and how its progress advances as the worker reports
WeasyPrint's steps."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

State = Literal["queued", "running", "done", "failed"]

# Progress is the share of the render time that has passed when WeasyPrint starts each step, timed on logs of
# 150 to 700 rows: parsing ~3%, applying CSS ~15%, building boxes ~8%, layout ~40% (the pages laid out so far
# against the estimate), drawing the PDF ~20%, then metadata and fonts. It moves only when WeasyPrint reports
# a step or a page, never on a timer; it never goes back, and it is 1.0 only once the bytes are there.
_PHASES = {
    0: (0.01, "Rendering started"),
    1: (0.02, "Reading the document"),
    2: (0.03, "Reading the stylesheet"),
    3: (0.05, "Applying the stylesheet"),
    4: (0.20, "Building the page structure"),
    5: (0.28, "Laying out pages"),
    6: (0.68, "Drawing the pages into the PDF"),
    7: (0.86, "Adding the PDF metadata and fonts"),
}
_LAYOUT_END = 0.66


@dataclass(frozen=True)
class JobStatus:
    id: str
    owner: str
    kind: str
    template: str
    title: str
    state: State
    progress: float  # 0 queued .. 1.0 done; see _PHASES for what it measures
    pages_estimated: int
    pages: int | None  # pages laid out so far (PDF), the page count once done; None for DOCX
    message: str  # what is happening, for a person
    created_at: datetime  # when the job was submitted (not the document's created_at)
    finished_at: datetime | None
    sha256: str | None  # of the result, once done
    size: int | None
    error: str | None  # once failed: a sentence for the person who asked, never a traceback


def advanced(status: JobStatus, step: int, page: int | None) -> JobStatus:
    """The status after the worker reported `step` (and, laying out, `page`); progress never goes back."""
    progress, message = _PHASES.get(step, (status.progress, status.message))
    pages = status.pages
    if status.kind == "docx":
        progress, message = 0.05, "Filling the Word template"  # python-docx reports nothing until it is done
    elif step == 5 and page is not None:
        pages = max(pages or 0, page)
        expected = status.pages_estimated
        progress += (_LAYOUT_END - progress) * min(page / expected, 1.0)
        message = (
            f"Laid out page {page} of about {expected}"
            if page <= expected
            else f"Laid out page {page} (about {expected} were expected)"
        )
    elif step == 5:
        message = "Laying out the pages again: page references changed"
    elif step == 6 and pages:
        message = f"Drawing {pages} pages into the PDF"
    if progress < status.progress:
        return status
    return replace(status, state="running", progress=progress, message=message, pages=pages)
