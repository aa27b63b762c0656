"""Security headers on every answer (docs/security.md), as a `before_send` hook: litestar runs it for every
response the app sends, those of routes, static files, its own 404s and every error handler alike.

Pages load only the app's own scripts and style sheets (static/); nothing inline, so an injected <script> or
style attribute does nothing. The one frame is a document's inline preview on its version page: such an answer
(Content-Disposition: inline) may be framed by the app itself, everything else by no one. A header a route set
itself is kept."""

from __future__ import annotations

from litestar.types import Message, Scope

PAGE_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",  # session.js: "stay signed in" with fetch()
        "frame-src 'self'",  # the version page's preview of a document
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
STATIC = "/static/"
PREVIEW_POLICY = "default-src 'none'; frame-ancestors 'self'"  # a stored file shown inside the version page
PERMISSIONS = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "usb",
        "browsing-topics",
    )
)
HSTS = "max-age=31536000"  # a year; no includeSubDomains: other hosts of the domain are not the app's to decide
COMMON = {
    b"x-content-type-options": b"nosniff",
    # No Referer at all: addresses carry search terms, participant IDs and (calendar feeds) secrets.
    b"referrer-policy": b"no-referrer",
    b"permissions-policy": PERMISSIONS.encode(),
    b"cross-origin-opener-policy": b"same-origin",
}


async def add_security_headers(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or [])
    present = {name.lower() for name, _ in headers}
    disposition = next((value for name, value in headers if name.lower() == b"content-disposition"), b"")
    # litestar serves static files "inline" too: they are never shown in a frame.
    preview = disposition.lstrip().lower().startswith(b"inline") and not scope["path"].startswith(STATIC)
    wanted = {
        **COMMON,
        b"content-security-policy": (PREVIEW_POLICY if preview else PAGE_POLICY).encode(),
        b"x-frame-options": b"SAMEORIGIN" if preview else b"DENY",
    }
    if scope.get("scheme") == "https":  # served over TLS, directly or by a trusted proxy (X-Forwarded-Proto)
        wanted[b"strict-transport-security"] = HSTS.encode()
    headers.extend((name, value) for name, value in wanted.items() if name not in present)
    message["headers"] = headers
