"""What the OpenAPI document says of access and of files, derived from what the routes already declare.

- Security: an operation the guard lets through only signed in (its rule, `guard.rule_of`, is not public) requires
  one of the credentials the guard reads there (`guard.credentials`): the bearer token, and on a GET of the API
  the pages' session cookie too. A public operation has no `security`.
- Files: the success answer of a route that answers files lists each media type it answers (`files(...)` in the
  route's decorator, else the route's own `media_type` when it is not JSON, HTML or plain text), each a binary
  string.

`DocumentedRoutes` sets both on every route handler as the app registers it, so a route added later is
documented by the same rules; litestar builds the document from the handlers at its first request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from trialcoord.kernel.web.guard import BEARER, COOKIE, CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, credentials, rule_of

# The schemes' names in the document, by the guard's names of the credentials.
SCHEME_NAMES = {BEARER: "bearerToken", COOKIE: "sessionCookie"}
SECURITY_SCHEMES = Components(
    security_schemes={
        SCHEME_NAMES[BEARER]: SecurityScheme(
            type="http",
            scheme="bearer",
            description=(
                "`Authorization: Bearer <token>`. A program's token comes from `trialcoord user token USER --days N`"
                " (valid N days whatever the activity); `POST /api/sign-in` answers a token that lapses after the"
                " inactivity timeout. A missing, unknown, expired or lapsed token is answered 401 with"
                " `WWW-Authenticate: Bearer`. Signing out, a new password or a disabled account ends it."
            ),
        ),
        SCHEME_NAMES[COOKIE]: SecurityScheme(
            type="apiKey",
            name=SESSION_COOKIE,
            security_scheme_in="cookie",
            description=(
                "The pages' session cookie, set by signing in on the pages. The API takes it on GET only, so a"
                " page can link a download; it never authenticates a write of the API, so the API asks no CSRF"
                " token. The pages' forms, the only writes a cookie authenticates, send the session's CSRF token"
                f" in the `{CSRF_FIELD}` form field or the `{CSRF_HEADER}` header (403 without it)."
            ),
        ),
    }
)


def security_of(handler: HTTPRouteHandler, path: str) -> list[SecurityRequirement] | None:
    """The credentials the operation requires (any one of them), or None when the guard lets anyone in; a
    handler of several methods gets what every one of them accepts. A calendar feed's credential is the secret
    in its path, which no OpenAPI security scheme can name: it declares none, like a public route."""
    methods = sorted(handler.http_methods - {"OPTIONS"})
    if all((rule_of(handler, path, method) or {}).get("rule") in ("public", "feed") for method in methods):
        return None
    accepted = [credentials(path, method) for method in methods]
    return [{SCHEME_NAMES[kind]: []} for kind in accepted[0] if all(kind in each for each in accepted)]


NOT_FILES = frozenset({"text/html", "text/plain"})  # pages and short messages: never a download


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


@dataclass
class FileAnswers(Operation):
    """An operation whose success answer is a file of one of `media_types`, beside any JSON it answers: each
    a binary string (`format: binary` for the generators of OpenAPI 3.0, `contentMediaType` for 3.1)."""

    media_types: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        post_init = getattr(super(), "__post_init__", None)
        if post_init is not None:  # a base that documents the request body (scheduling/schemas.py)
            post_init()
        if not self.responses:
            return
        success = next(iter(self.responses.values()))  # litestar puts the route's own status first
        if not isinstance(success, OpenAPIResponse):  # a Reference: litestar writes responses inline
            return
        content = {kind: shown for kind, shown in (success.content or {}).items() if is_json(kind)}
        for kind in self.media_types:
            schema = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, content_media_type=kind)
            content[kind] = OpenAPIMediaType(schema=schema)
        success.content = content


def files(*media_types: str, base: type[Operation] = Operation) -> type[Operation]:
    """The `operation_class` of a route answering a file of one of `media_types` (the first its default)."""
    return dataclass(type(f"{base.__name__}Files", (FileAnswers, base), {"media_types": tuple(media_types)}))


class DocumentedRoutes(ReceiveRoutePlugin):
    """Sets each route handler's `security` and, for a file answer, its `operation_class` (module docstring)."""

    def receive_route(self, route: BaseRoute) -> None:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                _document(handler, route.path)


def _document(handler: HTTPRouteHandler, path: str) -> None:
    handler.security = security_of(handler, path)
    declared = handler.operation_class
    kind = str(getattr(handler.media_type, "value", handler.media_type))  # "": litestar's JSON for a Response
    if kind and not is_json(kind) and kind not in NOT_FILES and not issubclass(declared, FileAnswers):
        handler.operation_class = files(kind, base=declared)
