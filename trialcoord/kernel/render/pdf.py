"""Reproducible PDF/A-3b from HTML: the same HTML, instant and attachments give the same bytes.

Shared by every PDF trialcoord renders (audit reports, documents). WeasyPrint is already deterministic
apart from dates, so the work here is to make every date derive from the given instant, not the clock.
The HTML's text is set in the shipped fonts (`fonts.py`, included as `fonts.css()`); a PDF with a character
they cannot draw is refused (`glyphs.py`), never made with empty boxes.
"""

from __future__ import annotations

import importlib
import io
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from trialcoord.kernel.render.glyphs import MissingGlyphs, missing_characters


def instant(text: str) -> datetime:
    """A UTC instant to the second (PDF dates have no finer resolution); naive text is taken as UTC."""
    at = datetime.fromisoformat(text)
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)


def stamp(text: str) -> str:
    """The instant as the templates' `dcterms.created`/`modified` meta content, from which WeasyPrint dates the PDF."""
    return instant(text).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pin_font_dates(_document, pdf) -> None:
    """Give each embedded font its own creation date as modification date.

    WeasyPrint saves the instances of variable fonts (Noto Sans) with fontTools, and subsets with fontTools
    when libharfbuzz-subset is missing: either stamps the font with the current second, so two renders a
    second apart would differ in those bytes alone. TrueType programs carry `Length1`; OpenType/CFF ones
    (Noto Sans CJK) `Subtype /OpenType`.
    """
    from fontTools.ttLib import TTFont

    for obj in pdf.objects:
        extra = getattr(obj, "extra", None)
        if not extra or ("Length1" not in extra and extra.get("Subtype") != "/OpenType"):
            continue
        font = TTFont(io.BytesIO(b"".join(obj.stream)), recalcTimestamp=False, recalcBBoxes=False)
        if font["head"].modified == font["head"].created:
            continue  # nothing stamped it: keep the bytes as they are
        font["head"].modified = font["head"].created
        out = io.BytesIO()
        font.save(out)
        obj.stream = [out.getvalue()]
        if "Length1" in extra:
            extra["Length1"] = len(out.getvalue())


_THREAD = threading.local()


def _font_config():
    """This thread's WeasyPrint font configuration, kept across renders: a new one copies every @font-face file
    (33 MB with the CJK font's two weights) into a temporary folder and has fontconfig scan it, on each render.
    One per thread, since a Pango font map is not safe to share between threads."""
    if getattr(_THREAD, "font_config", None) is None:
        # by name: the module is untyped, and mypy's overrides for WeasyPrint cover its top level only
        _THREAD.font_config = importlib.import_module("weasyprint.text.fonts").FontConfiguration()
    return _THREAD.font_config


def reproducible_pdf(
    html: str,
    *,
    source: str,
    base_url: str | None = None,
    created_at: str,
    attachments: Sequence[tuple[str, bytes, str]] = (),
) -> bytes:
    """PDF/A-3b of `html`; each attachment is (name, bytes, description), related to the document as Data.

    The HTML must carry `dcterms.created`/`dcterms.modified` meta tags with `stamp(created_at)`: WeasyPrint
    takes the document dates from them. MissingGlyphs naming `source` (what was rendered, e.g. "consent_form
    template") when the shipped fonts cannot draw a character of it.
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
    pdf = HTML(string=html, base_url=base_url).write_pdf(
        pdf_variant="pdf/a-3b", attachments=files, finisher=_pin_font_dates, font_config=_font_config()
    )
    if missing := missing_characters(pdf):
        raise MissingGlyphs(missing, source)
    return pdf
