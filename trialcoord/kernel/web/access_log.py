"""The access log (docs/security.md): one line per request, whatever its outcome, refusals included.

    2026-12-08T09:14:03.120Z 10.0.0.7 GET /studies/TST-1/search 200 cora 41.7ms

instant (UTC), client address (after `serve`'s proxy trust), method, path, status, user ID (or -), duration.
Never the query string (search terms, names, dates may be personal data) and never a calendar feed's token
(the secret part of its address): `/feeds/***/`. It wraps the app's whole handler, so litestar's own 404s
and every error handler's answer are logged too."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from io import TextIOWrapper
from logging.handlers import RotatingFileHandler
from urllib.parse import quote

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from trialcoord.kernel.config import Settings

_FEED_TOKEN = re.compile(r"/feeds/[^/]+")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"  # what stays readable; everything else (spaces, newlines) percent-encoded


class _PrivateRotatingFile(RotatingFileHandler):
    """Its files readable by the server's account only: the log names users and addresses."""

    def _open(self) -> TextIOWrapper:
        os.makedirs(os.path.dirname(self.baseFilename), mode=0o700, exist_ok=True)  # at the first line, not before
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(descriptor, "a", encoding=self.encoding, errors=self.errors)  # noqa: SIM115 - the handler closes it


class AccessLog:
    """An ASGI wrapper around the app's handler, writing to the log the settings name."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.handler = _handler(settings)
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.log = logging.Logger("trialcoord.access")  # the app's own, outside the logging tree: one per app
        self.log.propagate = False
        self.log.addHandler(self.handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the handler fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.log.info(line(scope, status, (time.perf_counter() - started) * 1000))

    def close(self) -> None:
        self.handler.close()


def line(scope: Scope, status: int, milliseconds: float) -> str:
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    client = scope.get("client")
    address = client[0] if client else "-"
    path = quote(_FEED_TOKEN.sub("/feeds/***", scope["path"]), safe=_PATH_SAFE)
    return f"{at} {address} {scope.get('method', '-')} {path} {status} {_user(scope)} {milliseconds:.1f}ms"


def _user(scope: Scope) -> str:
    access = scope.get("state", {}).get("access")  # the guard's finding (kernel/web/guard.py), set before a refusal
    viewer = getattr(access, "viewer", None)
    return viewer.user_id if viewer is not None else "-"


def _handler(settings: Settings) -> logging.Handler:
    if settings.access_log is None:
        return logging.StreamHandler(sys.stderr)
    return _PrivateRotatingFile(
        settings.access_log,
        maxBytes=settings.access_log_max_kb * 1024,
        backupCount=settings.access_log_backups,
        encoding="utf-8",
        delay=True,  # opened at the first request
    )
