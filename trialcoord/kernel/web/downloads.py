"""Files the web answers with: their media types and Content-Disposition."""

from __future__ import annotations

from urllib.parse import quote

# Litestar adds "; charset=utf-8" to every text/ media type: naming the charset here too sent it twice.
CSV = "text/csv"
PDF = "application/pdf"


def attachment(file_name: str, inline: bool = False) -> str:
    """An ASCII name for every client, and the exact one (RFC 6266/5987) for those that read it; `inline`
    asks the browser to show the file (a preview) instead of saving it."""
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in file_name)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file_name, safe='')}"
