"""Reproducible PDF/A-3b from HTML: the same HTML, instant and attachments give the same bytes.

Shared by every PDF trialcoord renders (audit reports, documents). WeasyPrint is already deterministic
apart from dates, so the work here is to make every date derive from the given instant, not the clock.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime


def instant(text: str) -> datetime:
    """A UTC instant to the second (PDF dates have no finer resolution); naive text is taken as UTC."""
    at = datetime.fromisoformat(text)
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)


def stamp(text: str) -> str:
    """The instant as the templates' `dcterms.created`/`modified` meta content, from which WeasyPrint dates the PDF."""
    return instant(text).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pin_font_dates(_document, pdf) -> None:
    """Give each embedded font its own creation date as modification date.

    Without libharfbuzz-subset WeasyPrint subsets fonts with fontTools, which stamps every subset with the
    current second: two renders a second apart would differ in those bytes alone.
    """
    from fontTools.ttLib import TTFont

    for obj in pdf.objects:
        if getattr(obj, "extra", None) and "Length1" in obj.extra:  # an embedded TrueType font program
            font = TTFont(io.BytesIO(b"".join(obj.stream)), recalcTimestamp=False, recalcBBoxes=False)
            font["head"].modified = font["head"].created
            out = io.BytesIO()
            font.save(out)
            obj.stream, obj.extra["Length1"] = [out.getvalue()], len(out.getvalue())


def reproducible_pdf(
    html: str, *, base_url: str | None = None, created_at: str, attachments: Sequence[tuple[str, bytes, str]] = ()
) -> bytes:
    """PDF/A-3b of `html`; each attachment is (name, bytes, description), related to the document as Data.

    The HTML must carry `dcterms.created`/`dcterms.modified` meta tags with `stamp(created_at)`: WeasyPrint
    takes the document dates from them.
    """
    # Imported here: loading Pango costs the CLI and the CSV paths time they never need it for.
    from weasyprint import HTML, Attachment

    at = instant(created_at)
    # Attachment dates default to now(); pin them like every other date in the file.
    files = [
        Attachment(
            file_obj=io.BytesIO(content),
            name=name,
            relationship="Data",
            description=description,
            created=at,
            modified=at,
        )
        for name, content, description in attachments
    ]
    # PDF/A sets the file identifier to a hash of the content, so it is reproducible too.
    return HTML(string=html, base_url=base_url).write_pdf(
        pdf_variant="pdf/a-3b", attachments=files, finisher=_pin_font_dates
    )
